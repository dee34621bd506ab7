package groups

import (
	"encoding/json"
	"fmt"
	"hash/maphash"
	"time"

	"github.com/annalsdb/annals"
)

// This file holds the group's dispatch: which consumer gets an entry, and how entries move
// between queued, in flight, delayed, parking and settled. Every function here runs with the
// group's mu held.

func (g *group) pinned() bool { return g.mu.set.Strategy != RoundRobin }

// pinOf returns the key that pins ev under s: its stream, or for [PinnedByKey] the string
// value of the top-level metadata field s.PinKey (the stream when it has none).
func (g *group) pinOf(s *Settings, ev *annals.RecordedEvent) string {
	switch s.Strategy {
	case PinnedByStream:
		return ev.Stream
	case PinnedByKey:
		var fields map[string]json.RawMessage
		if json.Unmarshal(ev.Metadata, &fields) == nil {
			var v string
			if raw, ok := fields[s.PinKey]; ok && json.Unmarshal(raw, &v) == nil {
				return "k:" + v
			}
		}
		return ev.Stream
	}
	return ""
}

// ownerLocked returns the consumer a pinned key goes to: the one with the highest
// rendezvous hash of key and consumer, so that a join or a leave moves only the keys it must.
func (g *group) ownerLocked(key string) *consumer {
	var best *consumer
	var bestH uint64
	h := maphash.String(g.seed, key)
	for _, c := range g.mu.consumers {
		if v := mix64(h ^ c.hash); best == nil || v > bestH {
			best, bestH = c, v
		}
	}
	return best
}

// mix64 is the finalizer of splitmix64.
func mix64(x uint64) uint64 {
	x ^= x >> 30
	x *= 0xbf58476d1ce4e5b9
	x ^= x >> 27
	x *= 0x94d049bb133111eb
	return x ^ x>>31
}

// enqueueLocked queues e for delivery and delivers what can be.
func (g *group) enqueueLocked(e *entry) {
	e.state = stQueued
	if !g.pinned() {
		g.mu.shared.push(e)
		g.dispatchSharedLocked()
		return
	}
	c := g.ownerLocked(e.pin)
	if c == nil {
		g.mu.shared.push(e)
		return
	}
	c.queue.push(e)
	g.dispatchPinnedLocked(c)
}

// dispatchConsumerLocked delivers what can be delivered now that c (possibly gone) has room.
func (g *group) dispatchConsumerLocked(c *consumer) {
	if !g.pinned() {
		g.dispatchSharedLocked()
		return
	}
	if c != nil && c.err == nil {
		g.dispatchPinnedLocked(c)
	}
}

// dispatchSharedLocked hands the entries of the shared queue to the consumers in turn, each
// to the next consumer with room in its window (round robin).
func (g *group) dispatchSharedLocked() {
	if !g.mu.active {
		return
	}
	cs := g.mu.consumers
	for g.mu.shared.len() > 0 && len(cs) > 0 {
		delivered := false
		for i := range cs {
			c := cs[(g.mu.rr+i)%len(cs)]
			if !c.hasRoomLocked() {
				continue
			}
			for j, e := range g.mu.shared.items {
				if _, dup := c.inflight[e.ev.ID]; dup {
					continue // the same id in flight to c: another consumer takes it
				}
				g.mu.shared.removeAt(j)
				g.deliverLocked(c, e)
				delivered = true
				break
			}
			if delivered {
				g.mu.rr = (g.mu.rr + i + 1) % len(cs)
				break
			}
		}
		if !delivered {
			return
		}
	}
}

// dispatchPinnedLocked delivers c's queue while c has room, in order per key: an entry whose
// key is still in flight to another consumer (after a rebalance) waits, and so do the later
// entries of its key, while other keys go on.
func (g *group) dispatchPinnedLocked(c *consumer) {
	if !g.mu.active {
		return
	}
	var blocked map[string]bool
	for i := 0; i < c.queue.len() && c.hasRoomLocked(); {
		e := c.queue.items[i]
		if blocked[e.pin] {
			i++
			continue
		}
		_, dup := c.inflight[e.ev.ID]
		if kl := g.mu.keys[e.pin]; dup || (kl != nil && kl.cons != c) {
			if blocked == nil {
				blocked = make(map[string]bool)
			}
			blocked[e.pin] = true
			i++
			continue
		}
		c.queue.removeAt(i)
		g.deliverLocked(c, e)
	}
}

// deliverLocked puts e in flight to c.
func (g *group) deliverLocked(c *consumer, e *entry) {
	if e.state != stQueued {
		panic(fmt.Sprintf("groups: delivering an entry in state %d (key %d)", e.state, e.key))
	}
	e.state = stInFlight
	e.cons = c
	e.seq++
	c.inflight[e.ev.ID] = e
	c.mailbox = append(c.mailbox, slot{e, e.seq})
	if len(c.mailbox) > 2*c.window+16 {
		c.compactMailboxLocked()
	}
	g.mu.timers.add(e, time.Now().Add(g.mu.set.MessageTimeout))
	if e.heapIdx == 0 {
		signal(g.wake)
	}
	if g.pinned() {
		kl := g.mu.keys[e.pin]
		if kl == nil {
			kl = &keyLoad{cons: c}
			g.mu.keys[e.pin] = kl
		}
		kl.n++
	}
	c.delivered++
	g.mu.delivered++
	signal(c.notify)
}

// takeBackLocked takes e, in flight, from its consumer; e is then in no state until the
// caller gives it one. When that frees a pinned key, the consumer its key now goes to gets
// to deliver.
func (g *group) takeBackLocked(e *entry) {
	c := e.cons
	delete(c.inflight, e.ev.ID)
	g.mu.timers.remove(e)
	e.cons = nil
	e.state = stTaken
	if kl := g.mu.keys[e.pin]; kl != nil && kl.cons == c {
		if kl.n--; kl.n == 0 {
			delete(g.mu.keys, e.pin)
			if o := g.ownerLocked(e.pin); o != nil && o != c {
				g.dispatchPinnedLocked(o)
			}
		}
	}
}

// retryLocked gives e back for another delivery after delay, counting a retry, or parks it
// past the group's MaxRetries.
func (g *group) retryLocked(e *entry, delay time.Duration, reason string) {
	e.retries++
	g.mu.retries++
	if max := g.mu.set.MaxRetries; max < 0 || e.retries > max {
		g.parkLocked(e, reason+"; retried more than maxRetries")
		return
	}
	if delay > 0 {
		e.state = stDelayed
		g.mu.timers.add(e, time.Now().Add(delay))
		if e.heapIdx == 0 {
			signal(g.wake)
		}
		return
	}
	g.enqueueLocked(e)
}

// parkLocked hands e to the loop, which appends it to the parked stream and then settles it.
func (g *group) parkLocked(e *entry, reason string) {
	e.state = stParking
	e.reason = reason
	e.parkID = annals.NewUUID()
	g.mu.parking = append(g.mu.parking, e)
	signal(g.wake)
}

// settleLocked settles e, which is in no state (taken back) or parking.
func (g *group) settleLocked(e *entry) {
	if e.state != stTaken && e.state != stParking {
		panic(fmt.Sprintf("groups: settling an entry in state %d (key %d)", e.state, e.key))
	}
	e.state = stSettled
	e.ev = annals.RecordedEvent{} // the tracker may hold it a while: free the bytes
	if !g.mu.cpArmed {
		signal(g.wake) // the loop sleeps without a checkpoint to write: it has one now
	}
	if e.replay {
		g.mu.replays.settle()
		if g.mu.replayBudget > 0 {
			signal(g.wake) // room to feed more replays
		}
		return
	}
	g.mu.dirty = true
	full := g.mu.log.unsettled() >= g.mu.set.Buffer
	g.mu.log.settle()
	if full {
		signal(g.room)
	}
}

// rebalanceLocked moves the queued entries of a pinned group to the consumers their keys go
// to now, after a join or a leave, and delivers what can be.
func (g *group) rebalanceLocked() {
	all := g.mu.shared.takeAll()
	for _, c := range g.mu.consumers {
		all = append(all, c.queue.takeAll()...)
	}
	if !g.pinned() {
		for _, e := range all {
			g.mu.shared.push(e)
		}
		g.dispatchSharedLocked()
		return
	}
	for _, e := range all {
		if c := g.ownerLocked(e.pin); c != nil {
			c.queue.push(e)
		} else {
			g.mu.shared.push(e)
		}
	}
	for _, c := range g.mu.consumers {
		g.dispatchPinnedLocked(c)
	}
}
