package groups

import (
	"context"
	"errors"
	"fmt"

	"github.com/annalsdb/annals"
)

// This file replays parked events. ReplayParked counts the parked events it gives back and
// raises the group's replay target and budget; the group's loop then reads them from the
// parked stream as room frees up (at most Buffer replayed events unsettled at once) and queues
// them before the events of the log.

// eligible tells whether the parked event p is one to replay: of the group's creation, and not
// one the log delivers again in this run (see [redundant]). It returns the original.
func (g *group) eligible(def *Definition, loaded *groupState, p *annals.RecordedEvent) (annals.RecordedEvent, parkedRecord, bool) {
	ev, rec, err := unparked(p)
	if err != nil {
		g.logger().Error("group: skipping a parked event that does not decode", "err", err)
		return ev, rec, false
	}
	return ev, rec, rec.Created == g.created && !redundant(def, loaded, p.Revision, &ev)
}

// original reads the original of a parked copy whose data was omitted from its place in the
// log. When it is no longer there (deleted, truncated) the replay delivers the copy without
// data, and says so in the log.
func (g *group) original(ctx context.Context, ev annals.RecordedEvent) (annals.RecordedEvent, error) {
	for e, err := range g.m.store.ReadStream(ctx, ev.Stream, &annals.ReadOptions{From: ev.Revision, Limit: 1}) {
		if errors.Is(err, annals.ErrStreamNotFound) || errors.Is(err, annals.ErrStreamDeleted) {
			break
		}
		if err != nil {
			return ev, err
		}
		if e.Revision == ev.Revision && e.ID == ev.ID {
			return e, nil
		}
	}
	g.logger().Warn("group: the original of a parked event is gone; replaying it without its data",
		"id", ev.ID, "stream", ev.Stream, "revision", ev.Revision)
	return ev, nil
}

// replayParked gives back up to limit (0: all) parked events not given back yet, and returns
// how many.
func (g *group) replayParked(ctx context.Context, limit int) (int, error) {
	g.replayMu.Lock()
	defer g.replayMu.Unlock()
	if err := g.waitActive(ctx); err != nil {
		return 0, err
	}
	g.mu.Lock()
	from := max(g.mu.replays.next, g.mu.replayTarget)
	def, loaded, activation := g.mu.def, g.mu.loaded, g.mu.activations
	g.mu.Unlock()
	n, end := 0, from
	for p, err := range g.m.store.ReadStream(ctx, ParkedStream(g.name), &annals.ReadOptions{From: from}) {
		if errors.Is(err, annals.ErrStreamNotFound) {
			break
		}
		if err != nil {
			return 0, fmt.Errorf("groups: read %s: %w", ParkedStream(g.name), err)
		}
		end = p.Revision + 1
		if _, _, ok := g.eligible(&def, &loaded, &p); ok {
			if n++; n == limit {
				break
			}
		}
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	if _, err := g.activeLocked(); err != nil {
		return 0, err
	}
	if g.mu.activations != activation {
		return 0, fmt.Errorf("groups: group %q: this manager lost the group's lease and took it again during the replay; replay again", g.name)
	}
	g.mu.replayTarget = max(g.mu.replayTarget, end)
	g.mu.replayBudget += n
	g.mu.parked -= min(g.mu.parked, uint64(n))
	signal(g.wake)
	return n, nil
}

// feedNeededLocked tells whether the loop has parked events to read for a replay, and room
// for them.
func (g *group) feedNeededLocked() bool {
	return g.mu.replayBudget > 0 && g.mu.replays.next < g.mu.replayTarget &&
		g.mu.replays.unsettled() < g.mu.set.Buffer
}

// feed reads parked events of the replay (as many as there is room and budget for) and
// queues them.
func (g *group) feed(ctx context.Context) error {
	g.mu.Lock()
	from, target := g.mu.replays.next, g.mu.replayTarget
	want := min(g.mu.replayBudget, g.mu.set.Buffer-g.mu.replays.unsettled())
	def, loaded := g.mu.def, g.mu.loaded
	g.mu.Unlock()
	var got []*entry
	next := from
	for p, err := range g.m.store.ReadStream(ctx, ParkedStream(g.name), &annals.ReadOptions{From: from, Until: target}) {
		if errors.Is(err, annals.ErrStreamNotFound) {
			next = target
			break
		}
		if err != nil {
			return fmt.Errorf("read %s: %w", ParkedStream(g.name), err)
		}
		next = p.Revision + 1
		if ev, rec, ok := g.eligible(&def, &loaded, &p); ok {
			if rec.Omitted {
				if ev, err = g.original(ctx, ev); err != nil {
					return fmt.Errorf("read the original of parked event %d: %w", p.Revision, err)
				}
			}
			got = append(got, &entry{ev: ev, key: p.Revision, replay: true, heapIdx: -1})
			if len(got) == want {
				break
			}
		}
	}
	if len(got) < want {
		next = target // read to the target
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.mu.ended != nil || g.mu.replays.next != from {
		return nil
	}
	for _, e := range got {
		e.pin = g.pinOf(&g.mu.set, &e.ev)
		g.mu.replays.add(e)
		g.enqueueLocked(e)
	}
	g.mu.replays.next = max(g.mu.replays.next, next)
	g.mu.replayBudget -= len(got)
	if g.mu.replayBudget <= 0 {
		g.mu.replayBudget = 0
		g.mu.replayTarget = g.mu.replays.next
	}
	return nil
}
