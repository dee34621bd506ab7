package server

import (
	"context"
	"errors"
	"sort"
	"sync"
	"sync/atomic"

	"github.com/annalsdb/annals"
)

// The bounds of the hub's ring: the last hubRingEvents events it received, at most
// hubRingBytes bytes of them (as [eventBytes] counts them). One ring serves every subscription
// of $all, so it is sized for the lag that a subscriber on a busy server may run up between
// two writes, not for the memory of each subscriber.
const (
	hubRingEvents = 8192
	hubRingBytes  = 64 << 20
)

// catchUpSpan bounds the positions that one storage read of a subscription of $all covers, so
// that a filter that matches little still lets the subscription send its keep-alives and look
// at the hub between reads.
const catchUpSpan = 1 << 16

// hub follows $all once for all the subscriptions of $all of the server (Subscribe and SSE,
// filtered or not), so that the store runs one subscription however many clients follow the
// log. It keeps the last events it received in a ring that the subscribers read, each at its
// own pace, with its own filter, sending all that waits for it in one message (one write).
// The hub never waits for a subscriber: a subscriber that falls more than the ring behind
// finds its next event gone, goes back to reading from storage from the position after the
// last event it delivered (or passed over: its filter did not match), and attaches again once
// it reaches the ring, with no gap and no duplicate. So the memory of the subscriptions of
// $all is the ring (shared: hubRingEvents events, at most hubRingBytes) plus one batch per
// subscriber (maxBatchEvents events, maxBatchBytes bytes), whatever their number and pace.
//
// The hub builds on the store's own SubscribeAll, unfiltered, from the head of the log: the
// ring holds exactly what that subscription delivers, in its order, including events whose
// position committed late. A read of storage below the ring's first position is exact because
// the store delivered everything below it.
//
// The hub starts with the first subscription of $all and stops when the last one leaves (that
// one waits for its goroutine); a failure of the store's subscription ends the subscriptions
// attached to it with that error, after the events before it, and the next subscription starts
// a new run. Its methods are safe for concurrent use.
type hub struct {
	store annals.Store
	// closing is the server's: it ends every run when the server closes.
	closing context.Context
	// size bounds the events of a run's ring: hubRingEvents (tests make it smaller).
	size int

	// attached counts the subscriptions that deliver from a ring now; fallbacks the times a
	// subscriber fell behind the ring and went back to storage.
	attached  atomic.Int64
	fallbacks atomic.Uint64

	mu struct {
		sync.Mutex
		run *hubRun // the run new subscriptions join; nil when none runs or it failed
		// lastDone is the done channel of the latest run started: a new run waits for it, so
		// that the store runs at most one subscription of $all even while a run stops and
		// another starts.
		lastDone <-chan struct{}
	}
}

// hubRun is one run of the hub's store subscription, from when a first subscription of $all
// starts to when the last leaves.
type hubRun struct {
	cancel context.CancelFunc
	done   chan struct{} // closed when the run's goroutine has returned
	users  int           // guarded by hub.mu

	mu struct {
		sync.Mutex
		// ring holds the events of sequence numbers [oldest, total): event n is ring[n%len(ring)].
		ring          []annals.RecordedEvent
		oldest, total uint64
		bytes         int
		// started is set once the run knows where it starts; from then on the ring holds every
		// event of the log from position from to the last it received.
		started bool
		from    uint64
		// err ends the run: the store's subscription failed (or the run was stopped).
		err error
		// changed is closed and replaced when an event arrives or err is set.
		changed chan struct{}
	}
}

func newHub(store annals.Store, closing context.Context) *hub {
	return &hub{store: store, closing: closing, size: hubRingEvents}
}

// acquire joins the current run, or starts one; the caller must release it.
func (h *hub) acquire() *hubRun {
	h.mu.Lock()
	defer h.mu.Unlock()
	r := h.mu.run
	if r == nil {
		ctx, cancel := context.WithCancel(h.closing)
		r = &hubRun{cancel: cancel, done: make(chan struct{})}
		r.mu.ring = make([]annals.RecordedEvent, h.size)
		r.mu.changed = make(chan struct{})
		go h.follow(ctx, r, h.mu.lastDone)
		h.mu.run, h.mu.lastDone = r, r.done
	}
	r.users++
	return r
}

// release leaves r; the last user stops it and waits for its goroutine.
func (h *hub) release(r *hubRun) {
	h.mu.Lock()
	r.users--
	last := r.users == 0
	if last && h.mu.run == r {
		h.mu.run = nil
	}
	h.mu.Unlock()
	if last {
		r.cancel()
		<-r.done
	}
}

// follow runs r once prev (when not nil) is closed: it reads the head of the log, then follows
// the store's SubscribeAll from the position after it into r's ring, until ctx ends or the
// store's subscription fails.
func (h *hub) follow(ctx context.Context, r *hubRun, prev <-chan struct{}) {
	defer close(r.done)
	err := func() error {
		if prev != nil {
			select {
			case <-prev:
			case <-ctx.Done():
				return ctx.Err()
			}
		}
		var head uint64
		for e, err := range h.store.ReadAll(ctx, &annals.ReadOptions{Backwards: true, From: annals.End, Limit: 1}) {
			if err != nil {
				return err
			}
			head = e.Position
		}
		r.start(head + 1)
		for e, err := range h.store.SubscribeAll(ctx, &annals.SubscribeOptions{From: head + 1}) {
			if err != nil {
				return err
			}
			r.publish(e)
		}
		return errors.New("the store's subscription of $all ended without an error")
	}()
	if ctx.Err() != nil {
		err = ctx.Err()
	}
	h.mu.Lock()
	if h.mu.run == r {
		h.mu.run = nil
	}
	h.mu.Unlock()
	r.fail(err)
}

func (r *hubRun) start(from uint64) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.mu.started, r.mu.from = true, from
	r.changedLocked()
}

// publish adds e to the ring, dropping the oldest events beyond its bounds.
func (r *hubRun) publish(e annals.RecordedEvent) {
	r.mu.Lock()
	defer r.mu.Unlock()
	ring := r.mu.ring
	size := eventBytes(&e)
	for r.mu.oldest < r.mu.total && (r.mu.total-r.mu.oldest == uint64(len(ring)) || r.mu.bytes+size > hubRingBytes) {
		old := &ring[r.mu.oldest%uint64(len(ring))]
		r.mu.from = old.Position + 1
		r.mu.bytes -= eventBytes(old)
		*old = annals.RecordedEvent{}
		r.mu.oldest++
	}
	ring[r.mu.total%uint64(len(ring))] = e
	r.mu.total++
	r.mu.bytes += size
	r.changedLocked()
}

func (r *hubRun) fail(err error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.mu.err = err
	r.changedLocked()
}

func (r *hubRun) changedLocked() {
	close(r.mu.changed)
	r.mu.changed = make(chan struct{})
}

// attach moves f's cursor to the first event of the ring at f.next or after, and reports
// whether it could: the ring holds every event from f.next on. When it could not, it returns
// what f must wait for (the run has not started), read from storage (the positions below the
// ring's), or return (the run's error).
func (r *hubRun) attach(f *hubFollower) (ok bool, v hubView) {
	r.mu.Lock()
	defer r.mu.Unlock()
	v = hubView{started: r.mu.started, from: r.mu.from, err: r.mu.err, changed: r.mu.changed}
	if !v.started || v.err != nil || f.next < v.from {
		return false, v
	}
	ring := r.mu.ring
	f.cursor = r.mu.oldest + uint64(sort.Search(int(r.mu.total-r.mu.oldest), func(i int) bool {
		return ring[(r.mu.oldest+uint64(i))%uint64(len(ring))].Position >= f.next
	}))
	return true, v
}

// hubView is what a subscriber that could not attach learns of a run.
type hubView struct {
	// started reports whether the run knows where it starts; from is then the first position
	// of the ring's span.
	started bool
	from    uint64
	err     error
	changed <-chan struct{}
}

// take looks at the events of the ring from f's cursor on, up to the bounds of a batch, and
// appends those at f.next or after that match f's filter to f.batch, moving the cursor and
// f.next past every event it looked at. lost reports that the ring no longer holds the event
// at the cursor: f fell behind. When f has looked at every event of the ring, wait is closed
// by the next one and err is the error that ended the run (nil while it runs).
func (r *hubRun) take(f *hubFollower) (lost bool, wait <-chan struct{}, err error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if f.cursor < r.mu.oldest {
		return true, nil, nil
	}
	ring := r.mu.ring
	size := 0
	for ; f.cursor < r.mu.total && len(f.batch) < maxBatchEvents && size < maxBatchBytes; f.cursor++ {
		e := &ring[f.cursor%uint64(len(ring))]
		if e.Position < f.next {
			continue
		}
		if f.filter.Match(e.Stream, e.Type) {
			f.batch = append(f.batch, *e)
			size += eventBytes(e)
		}
		f.next = e.Position + 1
	}
	if len(f.batch) == 0 {
		return false, r.mu.changed, r.mu.err
	}
	return false, nil, nil
}

// hubFollower is one subscription of $all that the hub serves.
type hubFollower struct {
	*subscriber
	s      *Server
	run    *hubRun
	filter *annals.Filter
	// next is the position after the last event delivered or passed over; cursor the
	// sequence number of the next event of the ring to look at, while attached.
	next   uint64
	cursor uint64
	batch  []annals.RecordedEvent
}

// followAll runs a subscription of $all from the given start through the hub: it reads from
// storage until it reaches the ring, then delivers from the ring until it falls behind it,
// and so on until the subscription ends. See [Server.follow].
func (s *Server) followAll(ctx context.Context, t target, from uint64, sub *subscriber) error {
	run := s.hub.acquire()
	defer s.hub.release(run)
	f := &hubFollower{subscriber: sub, s: s, run: run, filter: t.filter, next: from}
	for {
		if err := f.catchUp(ctx); err != nil {
			return err
		}
		s.hub.attached.Add(1)
		f.rs.attached.Store(true)
		err := f.live(ctx)
		f.rs.attached.Store(false)
		s.hub.attached.Add(-1)
		if err != nil {
			return err
		}
		f.rs.fallbacks.Add(1)
		s.hub.fallbacks.Add(1)
	}
}

// catchUp reads from storage, at most catchUpSpan positions at a time, until the ring holds
// every event from f.next on, and attaches f there.
func (f *hubFollower) catchUp(ctx context.Context) error {
	for {
		ok, v := f.run.attach(f)
		switch {
		case ok:
			return nil
		case v.err != nil:
			return v.err
		case !v.started:
			if err := f.wait(ctx, v.changed); err != nil {
				return err
			}
			continue
		}
		until := min(v.from, f.next+catchUpSpan)
		opts := &annals.ReadOptions{From: f.next, Until: until, Filter: f.filter}
		if err := sendRead(f.s.store.ReadAll(ctx, opts), f.deliver); err != nil {
			return err
		}
		f.next = until
		select {
		case <-f.tick:
			if err := f.keepAlive(); err != nil {
				return err
			}
		default:
		}
	}
}

// live delivers from the ring until the subscription ends (its error) or f falls behind the
// ring (nil).
func (f *hubFollower) live(ctx context.Context) error {
	for {
		lost, wait, err := f.run.take(f)
		switch {
		case lost:
			return nil
		case len(f.batch) > 0:
			err := f.deliver(f.batch)
			clear(f.batch) // let go of the events' data
			f.batch = f.batch[:0]
			if err != nil {
				return err
			}
		case err != nil:
			return err
		default:
			if err := f.wait(ctx, wait); err != nil {
				return err
			}
		}
	}
}

// wait blocks until ch is closed, sending keep-alives meanwhile; it returns ctx's error or
// keepAlive's.
func (f *hubFollower) wait(ctx context.Context, ch <-chan struct{}) error {
	for {
		select {
		case <-ch:
			return nil
		case <-ctx.Done():
			return ctx.Err()
		case <-f.tick:
			if err := f.keepAlive(); err != nil {
				return err
			}
		}
	}
}
