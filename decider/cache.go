package decider

import (
	"container/list"
	"sync"
)

// aggregate is a stream's folded state and what the handler needs to go on from it.
type aggregate[S any] struct {
	stream   string
	state    S
	exists   bool
	revision uint64 // last revision folded in, when exists
	next     uint64 // next revision to read
	position uint64
	keys     keyWindow
	// Events and bytes of events folded in since the snapshot it was loaded from or saved as.
	sinceSnap  uint64
	sinceBytes int
}

// stateCache is an LRU of aggregates. An aggregate is taken out while a command uses it (so
// that no two goroutines share a state, which Evolve may modify) and put back afterwards.
// A nil *stateCache caches nothing.
type stateCache[S any] struct {
	max int
	mu  struct {
		sync.Mutex
		byStream map[string]*list.Element // of *aggregate[S]
		lru      list.List                // front = most recently used
	}
}

func newStateCache[S any](size int) *stateCache[S] {
	if size <= 0 {
		return nil
	}
	c := &stateCache[S]{max: size}
	c.mu.byStream = make(map[string]*list.Element, size)
	return c
}

// take removes and returns the cached aggregate of stream, or nil.
func (c *stateCache[S]) take(stream string) *aggregate[S] {
	if c == nil {
		return nil
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	el, ok := c.mu.byStream[stream]
	if !ok {
		return nil
	}
	delete(c.mu.byStream, stream)
	return c.mu.lru.Remove(el).(*aggregate[S])
}

// put caches a, unless a newer state of the same stream was put meanwhile.
func (c *stateCache[S]) put(a *aggregate[S]) {
	if c == nil {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if el, ok := c.mu.byStream[a.stream]; ok {
		if old := el.Value.(*aggregate[S]); old.next >= a.next {
			c.mu.lru.MoveToFront(el)
			return
		}
		el.Value = a
		c.mu.lru.MoveToFront(el)
		return
	}
	c.mu.byStream[a.stream] = c.mu.lru.PushFront(a)
	for c.mu.lru.Len() > c.max {
		last := c.mu.lru.Back()
		delete(c.mu.byStream, last.Value.(*aggregate[S]).stream)
		c.mu.lru.Remove(last)
	}
}

// keyWindow remembers the last max idempotency keys of a stream.
type keyWindow struct {
	max   int
	order []string // oldest first
	recs  map[string]IdempotencyRecord
}

func newKeyWindow(max int, from []IdempotencyRecord) keyWindow {
	w := keyWindow{max: max}
	for _, r := range from {
		w.record(r.Key, r.First, r.Last, r.Position)
	}
	return w
}

func (w *keyWindow) get(key string) (IdempotencyRecord, bool) {
	r, ok := w.recs[key]
	return r, ok
}

// record notes that the event at rev (position pos) carries key: a later event of the same
// command extends its record, an older record of the key is replaced.
func (w *keyWindow) record(key string, first, last, pos uint64) {
	if w.recs == nil {
		w.recs = make(map[string]IdempotencyRecord)
	}
	if r, ok := w.recs[key]; ok {
		if r.Last+1 == first {
			r.Last, r.Position = last, pos
			w.recs[key] = r
			return
		}
		for i, k := range w.order {
			if k == key {
				w.order = append(w.order[:i], w.order[i+1:]...)
				break
			}
		}
	}
	w.recs[key] = IdempotencyRecord{Key: key, First: first, Last: last, Position: pos}
	w.order = append(w.order, key)
	if len(w.order) > w.max {
		delete(w.recs, w.order[0])
		w.order = w.order[1:]
	}
}

func (w *keyWindow) records() []IdempotencyRecord {
	if len(w.order) == 0 {
		return nil
	}
	out := make([]IdempotencyRecord, len(w.order))
	for i, k := range w.order {
		out[i] = w.recs[k]
	}
	return out
}
