package relay

import (
	"context"
	"sync"
)

// Bounds of what a spell's reader encodes ahead of its publisher: a few hundred messages, a
// megabyte at most (a single larger message still passes, alone).
const (
	aheadMaxN     = 512
	aheadMaxBytes = 1 << 20
)

// item is what a spell's reader hands to its publisher, in log order: an event to publish
// (f), an event to skip (f nil, at position), or the end of the reading (err).
type item struct {
	f        *flight
	position uint64
	err      error
}

// ahead is the bounded queue between a spell's reader, which follows the log and encodes,
// and its publisher, which publishes in the queue's order. Its methods are safe for concurrent
// use by one putter and one taker.
type ahead struct {
	// ready and space have room for one signal each: items were put; items were taken.
	ready, space chan struct{}
	mu           struct {
		sync.Mutex
		items []item
		bytes int
	}
}

func newAhead() *ahead {
	a := &ahead{ready: make(chan struct{}, 1), space: make(chan struct{}, 1)}
	a.mu.items = make([]item, 0, aheadMaxN)
	return a
}

// put appends it, of size bytes, waiting while the queue is full. It returns ctx's cause when
// ctx is done first.
func (a *ahead) put(ctx context.Context, it item, size int) error {
	for {
		a.mu.Lock()
		n := len(a.mu.items)
		if n == 0 || n < aheadMaxN && a.mu.bytes+size <= aheadMaxBytes {
			a.mu.items = append(a.mu.items, it)
			a.mu.bytes += size
			a.mu.Unlock()
			if n == 0 {
				signal(a.ready)
			}
			return nil
		}
		a.mu.Unlock()
		select {
		case <-a.space:
		case <-ctx.Done():
			return context.Cause(ctx)
		}
	}
}

// take waits until the queue holds items, then returns them all, and keeps spare (the items
// its last call returned, done with; nil at first) cleared as the queue's array. It returns
// ctx's cause when ctx is done first.
func (a *ahead) take(ctx context.Context, spare []item) ([]item, error) {
	for {
		a.mu.Lock()
		if len(a.mu.items) > 0 {
			items := a.mu.items
			clear(spare)
			if spare == nil {
				spare = make([]item, 0, aheadMaxN)
			}
			a.mu.items, a.mu.bytes = spare[:0], 0
			a.mu.Unlock()
			signal(a.space)
			return items, nil
		}
		a.mu.Unlock()
		select {
		case <-a.ready:
		case <-ctx.Done():
			return nil, context.Cause(ctx)
		}
	}
}
