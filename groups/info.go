package groups

import (
	"context"
	"errors"
	"fmt"
)

// update applies new settings to the running group: the new strategy spreads the queued
// events again, a larger buffer lets the reader go on, the other settings apply to what
// happens next (a delivery made before keeps its message timeout).
func (g *group) update(s Settings) {
	g.mu.Lock()
	defer g.mu.Unlock()
	old := g.mu.set
	g.mu.def.Settings = s
	g.mu.set = s.WithDefaults()
	if old.Strategy != g.mu.set.Strategy || old.PinKey != g.mu.set.PinKey {
		for _, q := range g.queuesLocked() {
			for _, e := range q.items {
				e.pin = g.pinOf(&g.mu.set, &e.ev)
			}
		}
		g.rebalanceLocked()
	}
	signal(g.room)
	signal(g.wake)
}

// queuesLocked returns every queue of the group.
func (g *group) queuesLocked() []*queue {
	qs := []*queue{&g.mu.shared}
	for _, c := range g.mu.consumers {
		qs = append(qs, &c.queue)
	}
	return qs
}

// info returns the group's figures. Lag is counted from the checkpoint the group would write
// now (the first event not settled), to the end of what it follows. On a standby (another
// manager holds the group's lease) the checkpoint and the parked events are read from the
// store.
func (g *group) info(ctx context.Context) (Info, error) {
	g.mu.Lock()
	set, def, active := g.mu.set, g.mu.def, g.mu.active
	g.mu.Unlock()
	end, err := endOf(ctx, g.m.store, &set)
	if err != nil {
		return Info{}, fmt.Errorf("groups: find the end of %s: %w", set.Stream, err)
	}
	var stored groupState
	if !active {
		if stored, err = loadState(ctx, g.m.store, def, true); err != nil {
			return Info{}, fmt.Errorf("groups: group %q: %w", g.name, err)
		}
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.mu.active != active && g.mu.ended == nil {
		// It became active, or stopped being so, meanwhile: read again.
		g.mu.Unlock()
		defer g.mu.Lock()
		return g.info(ctx)
	}
	if g.mu.ended != nil && errors.Is(g.mu.ended, ErrGroupDeleted) {
		return Info{}, fmt.Errorf("%w: %q", ErrGroupNotFound, g.name)
	}
	info := Info{
		Definition:  g.mu.def,
		Checkpoint:  g.mu.written,
		Parked:      g.mu.parked,
		Delivered:   g.mu.delivered,
		Acked:       g.mu.acked,
		Retries:     g.mu.retries,
		ParkedTotal: g.mu.parkedTotal,
		Skipped:     g.mu.skipped,
		Consumers:   make([]ConsumerInfo, 0, len(g.mu.consumers)),
		Active:      g.mu.active,
		Holder:      g.holderLocked(),
	}
	cp := g.mu.log.first()
	if !g.mu.active {
		cp = stored.start(&def)
		info.Checkpoint, info.Parked = cp, stored.parkedPending
	}
	if end > cp {
		info.Lag = end - cp
	}
	for _, c := range g.mu.consumers {
		ci := c.infoLocked()
		info.InFlight += ci.InFlight
		info.Consumers = append(info.Consumers, ci)
	}
	if g.mu.active {
		info.Buffered = g.mu.log.unsettled() + g.mu.replays.unsettled() - info.InFlight
	}
	return info, nil
}
