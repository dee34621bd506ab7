package groups

import (
	"context"
	"errors"
	"fmt"

	"github.com/annalsdb/annals"
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
// now (the first event not settled), to the end of what it follows.
func (g *group) info(ctx context.Context) (Info, error) {
	g.mu.Lock()
	set := g.mu.set
	g.mu.Unlock()
	end, err := endOf(ctx, g.m.store, &set)
	if err != nil {
		return Info{}, fmt.Errorf("groups: find the end of %s: %w", set.Stream, err)
	}
	g.mu.Lock()
	defer g.mu.Unlock()
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
	}
	if cp := g.mu.log.first(); end > cp {
		info.Lag = end - cp
	}
	for _, c := range g.mu.consumers {
		ci := c.infoLocked()
		info.InFlight += ci.InFlight
		info.Consumers = append(info.Consumers, ci)
	}
	info.Buffered = g.mu.log.unsettled() + g.mu.replays.unsettled() - info.InFlight
	return info, nil
}

// replayParked reads up to limit (0: as many as fit) parked events of the group's creation
// from its parked stream, after those given back already, and queues them for delivery. At
// most Buffer replayed events are unsettled at once.
func (g *group) replayParked(ctx context.Context, limit int) (int, error) {
	g.replayMu.Lock()
	defer g.replayMu.Unlock()
	g.mu.Lock()
	from := g.mu.replays.next
	room := g.mu.set.Buffer - g.mu.replays.unsettled()
	def := g.mu.def
	g.mu.Unlock()
	if limit == 0 || limit > room {
		limit = room
	}
	if limit <= 0 {
		return 0, nil
	}
	var got []*entry
	skippedTo := from
	for p, err := range g.m.store.ReadStream(ctx, ParkedStream(g.name), &annals.ReadOptions{From: from}) {
		if errors.Is(err, annals.ErrStreamNotFound) {
			break
		}
		if err != nil {
			return 0, fmt.Errorf("groups: read %s: %w", ParkedStream(g.name), err)
		}
		ev, created, err := unparked(&p)
		if err != nil || created != g.created || redundant(&def, &g.loaded, p.Revision, &ev) {
			if err != nil {
				g.logger().Error("group: skipping a parked event that does not decode", "err", err)
			}
			skippedTo = p.Revision + 1
			continue
		}
		got = append(got, &entry{ev: ev, key: p.Revision, replay: true, heapIdx: -1})
		if len(got) == limit {
			break
		}
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.mu.ended != nil {
		return 0, g.mu.ended
	}
	for _, e := range got {
		e.pin = g.pinOf(&g.mu.set, &e.ev)
		g.mu.replays.add(e)
		g.enqueueLocked(e)
	}
	if len(got) == 0 && skippedTo > g.mu.replays.next {
		g.mu.replays.next = skippedTo
		signal(g.wake)
	} else if len(got) > 0 {
		g.mu.replays.next = max(g.mu.replays.next, got[len(got)-1].key+1)
	}
	g.mu.parked -= min(g.mu.parked, uint64(len(got)))
	return len(got), nil
}
