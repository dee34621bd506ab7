package bridge

import (
	"sync"

	"github.com/annalsdb/annals"
)

// DefaultDedupSize is the number of ids a [Dedup] of size 0 remembers.
const DefaultDedupSize = 100_000

// Dedup remembers the last ids it was shown, so that a consumer of an at-least-once bus drops
// a message it already handled: a relay that restarts publishes again the tail it had not
// checkpointed, under the same event ids. It holds at most its size of ids (16 bytes each and
// bookkeeping), forgetting the oldest first (in the order they were first shown: showing an id
// again does not make it younger). It is safe for concurrent use.
type Dedup struct {
	mu struct {
		sync.Mutex
		// ring holds the remembered ids in the order they were first shown; it grows up to
		// size, then next is where the next one goes, overwriting the oldest.
		ring []annals.UUID
		next int
		set  map[annals.UUID]struct{}
	}
	size int
}

// NewDedup returns a Dedup that remembers up to size ids (0 or less means
// [DefaultDedupSize]). Its memory grows with the ids it is shown, up to that bound.
func NewDedup(size int) *Dedup {
	if size <= 0 {
		size = DefaultDedupSize
	}
	d := &Dedup{size: size}
	d.mu.set = make(map[annals.UUID]struct{}, min(size, 1024))
	return d
}

// Seen reports whether id was seen before (among the last ids remembered), and remembers it.
// The zero id is no id: it is never seen and never remembered.
func (d *Dedup) Seen(id annals.UUID) bool {
	if id.IsZero() {
		return false
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if _, ok := d.mu.set[id]; ok {
		return true
	}
	d.mu.set[id] = struct{}{}
	if len(d.mu.ring) < d.size {
		d.mu.ring = append(d.mu.ring, id)
		return false
	}
	delete(d.mu.set, d.mu.ring[d.mu.next])
	d.mu.ring[d.mu.next] = id
	d.mu.next = (d.mu.next + 1) % d.size
	return false
}
