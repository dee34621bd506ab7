package groups

import (
	"container/heap"
	"sort"
	"time"

	"github.com/annalsdb/annals"
)

// entryState is where an event read by a group stands.
type entryState uint8

const (
	stQueued   entryState = iota // waiting for a consumer
	stInFlight                   // delivered to a consumer, not settled
	stDelayed                    // nacked with a delay, waiting for its time
	stParking                    // being appended to the parked stream
	stSettled                    // acked, skipped or parked
	stTaken                      // taken back from its consumer, about to get another state
)

// entry is one event a group read (from the log, or from its parked stream for a replay) and
// has not settled. Its fields are guarded by its group's mu.
type entry struct {
	ev     annals.RecordedEvent
	key    uint64 // position ($all) or revision (stream); for a replay, the parked revision
	replay bool
	pin    string // the key of a pinned strategy
	state  entryState

	retries int
	cons    *consumer   // the consumer it is in flight to
	seq     uint64      // counts deliveries; tells stale mailbox slots
	due     time.Time   // in flight: the message timeout; delayed: when to queue it again
	heapIdx int         // index in the group's timers, -1 when not there
	reason  string      // why it is parked
	parkID  annals.UUID // the id of its parked copy, the same on every attempt to write it
}

// before orders entries for delivery: replays first (they were given back by an operator and
// come before new events), then by their place in the log.
func (e *entry) before(o *entry) bool {
	if e.replay != o.replay {
		return e.replay
	}
	return e.key < o.key
}

// queue holds entries waiting for delivery, in [entry.before] order. New events arrive in log
// order and are appended; entries given back are inserted in their place.
type queue struct{ items []*entry }

func (q *queue) len() int { return len(q.items) }

func (q *queue) push(e *entry) {
	n := len(q.items)
	if n == 0 || !e.before(q.items[n-1]) {
		q.items = append(q.items, e)
		return
	}
	i := sort.Search(n, func(i int) bool { return e.before(q.items[i]) })
	q.items = append(q.items, nil)
	copy(q.items[i+1:], q.items[i:])
	q.items[i] = e
}

func (q *queue) removeAt(i int) *entry {
	e := q.items[i]
	if i == 0 {
		q.items[0] = nil
		q.items = q.items[1:]
		return e
	}
	copy(q.items[i:], q.items[i+1:])
	q.items[len(q.items)-1] = nil
	q.items = q.items[:len(q.items)-1]
	return e
}

// takeAll empties q and returns what it held.
func (q *queue) takeAll() []*entry {
	items := q.items
	q.items = nil
	return items
}

// timers is a min-heap of the entries in flight (due at their message timeout) and delayed
// (due when their retry delay ends): one heap and one timer per group, not one per event.
type timers []*entry

func (t timers) Len() int           { return len(t) }
func (t timers) Less(i, j int) bool { return t[i].due.Before(t[j].due) }
func (t timers) Swap(i, j int) {
	t[i], t[j] = t[j], t[i]
	t[i].heapIdx = i
	t[j].heapIdx = j
}
func (t *timers) Push(x any) {
	e := x.(*entry)
	e.heapIdx = len(*t)
	*t = append(*t, e)
}
func (t *timers) Pop() any {
	old := *t
	e := old[len(old)-1]
	old[len(old)-1] = nil
	*t = old[:len(old)-1]
	e.heapIdx = -1
	return e
}

func (t *timers) add(e *entry, due time.Time) {
	e.due = due
	heap.Push(t, e)
}

func (t *timers) remove(e *entry) {
	if e.heapIdx >= 0 {
		heap.Remove(t, e.heapIdx)
	}
}

// tracker keeps the entries of one kind (log or replay) in key order until they are settled,
// to tell the first key not settled. Settled entries leave it from the front, or in a
// compaction once they are the majority, so it holds at most about twice the unsettled ones.
type tracker struct {
	items   []*entry
	settled int
	next    uint64 // the key after the last entry added
}

func (t *tracker) add(e *entry) {
	t.items = append(t.items, e)
	t.next = e.key + 1
}

// settle records that one of its entries was settled.
func (t *tracker) settle() {
	t.settled++
	for len(t.items) > 0 && t.items[0].state == stSettled {
		t.items[0] = nil
		t.items = t.items[1:]
		t.settled--
	}
	if t.settled > 64 && t.settled > len(t.items)/2 {
		kept := make([]*entry, 0, len(t.items)-t.settled)
		for _, e := range t.items {
			if e.state != stSettled {
				kept = append(kept, e)
			}
		}
		t.items, t.settled = kept, 0
	}
}

// unsettled counts the entries not settled.
func (t *tracker) unsettled() int { return len(t.items) - t.settled }

// first returns the key of the first entry not settled, or next when all are.
func (t *tracker) first() uint64 {
	if len(t.items) > 0 {
		return t.items[0].key
	}
	return t.next
}
