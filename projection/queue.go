package projection

import (
	"context"
	"sync"

	"github.com/annalsdb/annals"
)

// feed runs a subscription on a goroutine of its own and hands its events to the caller in
// batches: whatever has arrived since the last batch, at most max events. While the caller is
// busy applying a batch the reader fills the next one (up to max events, then it waits), so a
// catch-up runs in full batches, while live events go out one by one as soon as they arrive.
type feed struct {
	max   int
	ready chan struct{} // signalled when events or the end arrive in an empty queue
	space chan struct{} // signalled when the consumer takes from a full queue
	stop  context.CancelFunc
	done  chan struct{} // closed when the reader goroutine has returned
	mu    struct {
		sync.Mutex
		evs []annals.RecordedEvent
		err error // the subscription's end; reported once the queue is drained
	}
}

// startFeed subscribes to the log from position from with filter and starts the reader. The
// caller owns the reader: it must call close, which stops it and waits for it.
func startFeed(ctx context.Context, events annals.Subscriber, from uint64, filter *annals.Filter, max int) *feed {
	ctx, stop := context.WithCancel(ctx)
	f := &feed{max: max, ready: make(chan struct{}, 1), space: make(chan struct{}, 1), stop: stop, done: make(chan struct{})}
	f.mu.evs = make([]annals.RecordedEvent, 0, max)
	go f.read(ctx, events, &annals.SubscribeOptions{From: from, Filter: filter})
	return f
}

func (f *feed) read(ctx context.Context, events annals.Subscriber, opts *annals.SubscribeOptions) {
	defer close(f.done)
	for ev, err := range events.SubscribeAll(ctx, opts) {
		if err != nil {
			f.finish(err)
			return
		}
		if !f.push(ctx, ev) {
			f.finish(ctx.Err())
			return
		}
	}
	f.finish(ctx.Err())
}

func (f *feed) push(ctx context.Context, ev annals.RecordedEvent) bool {
	for {
		f.mu.Lock()
		if n := len(f.mu.evs); n < f.max {
			f.mu.evs = append(f.mu.evs, ev)
			f.mu.Unlock()
			if n == 0 {
				signal(f.ready)
			}
			return true
		}
		f.mu.Unlock()
		select {
		case <-f.space:
		case <-ctx.Done():
			return false
		}
	}
}

func (f *feed) finish(err error) {
	f.mu.Lock()
	if f.mu.err == nil {
		f.mu.err = err
	}
	f.mu.Unlock()
	signal(f.ready)
}

// next returns the events that arrived since the last call (at least one, at most max),
// waiting for one when there are none. It reuses buf, the slice the previous call returned,
// so the caller must be done with it. It returns the subscription's error once every event
// before it was returned, or ctx's error.
func (f *feed) next(ctx context.Context, buf []annals.RecordedEvent) ([]annals.RecordedEvent, error) {
	for {
		f.mu.Lock()
		if n := len(f.mu.evs); n > 0 {
			batch := f.mu.evs
			if cap(buf) < f.max {
				buf = make([]annals.RecordedEvent, 0, f.max)
			}
			f.mu.evs = buf[:0]
			f.mu.Unlock()
			if n == f.max {
				signal(f.space)
			}
			return batch, nil
		}
		err := f.mu.err
		f.mu.Unlock()
		if err != nil {
			return nil, err
		}
		select {
		case <-f.ready:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
}

// close stops the reader and waits for it to return.
func (f *feed) close() {
	f.stop()
	<-f.done
}

func signal(c chan struct{}) {
	select {
	case c <- struct{}{}:
	default:
	}
}
