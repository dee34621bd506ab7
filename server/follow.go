package server

import (
	"context"
	"errors"
	"iter"
	"sync"
	"time"

	"github.com/annalsdb/annals"
	"github.com/annalsdb/annals/internal/rules"
)

// Batch bounds: a batch of a read or subscription is sent when it holds maxBatchEvents events
// or maxBatchBytes bytes of event data, whichever comes first (and a subscription sends what
// it has as soon as no more is waiting).
const (
	maxBatchEvents = 512
	maxBatchBytes  = 1 << 20
)

func eventBytes(e *annals.RecordedEvent) int {
	return len(e.Data) + len(e.Metadata) + len(e.Type) + len(e.Stream) + 64
}

// target is what a subscription follows.
type target struct {
	all    bool
	stream string // when not all
	from   uint64
	end    bool // from the end: from is ignored
	filter *annals.Filter
	// protocol and peer describe the subscriber in [Server.Stats].
	protocol, peer string
}

// validate checks the input of a subscription with the store's rules: the stream id (unless
// $all) and the options.
func (t *target) validate() error {
	opts := &annals.SubscribeOptions{From: t.from, Filter: t.filter}
	var err error
	if t.all {
		_, err = rules.SubscribeOptions(opts)
	} else {
		_, err = rules.StreamSubscribeOptions(t.stream, opts)
	}
	return err
}

// prepare checks a subscription that [target.validate] accepted before it starts, so that a
// tombstoned stream is refused before anything is sent, and returns where it starts: from, or for a
// subscription from the end the revision or position after the last event, so that a client
// that reconnects before any event arrived loses nothing.
func (s *Server) prepare(ctx context.Context, t target) (uint64, error) {
	if t.from == annals.End {
		t.end = true
	}
	if t.all {
		if !t.end {
			return t.from, nil
		}
		for e, err := range s.store.ReadAll(ctx, &annals.ReadOptions{Backwards: true, From: annals.End, Limit: 1}) {
			if err != nil {
				return 0, err
			}
			return e.Position + 1, nil
		}
		return 0, nil
	}
	for e, err := range s.store.ReadStream(ctx, t.stream, &annals.ReadOptions{Backwards: true, From: annals.End, Limit: 1}) {
		switch {
		case errors.Is(err, annals.ErrStreamNotFound):
			// Not written yet, or soft-deleted: from 0 the store starts past what is hidden.
		case err != nil:
			return 0, err
		case t.end:
			return e.Revision + 1, nil
		}
		break
	}
	if t.end {
		return 0, nil
	}
	return t.from, nil
}

// follow runs a subscription of t from the given start and calls send with each batch of
// events, so that live events go out as they come and a catch-up goes out in large batches:
// a subscription of $all through the server's hub ([Server.followAll]), a subscription of a
// stream through a store subscription of its own ([Server.followStream]). keepAlive, when not
// nil, is called after every Options.KeepAlive without events. follow returns when ctx ends
// (its error), when send fails (that error), or with the store's error after sending every
// event before it; when the server is closing it returns [ErrShuttingDown]. The goroutines it
// starts have ended when it returns.
func (s *Server) follow(ctx context.Context, t target, from uint64, send func([]annals.RecordedEvent) error, keepAlive func() error) (err error) {
	rs := s.stats.track(t, from)
	defer s.stats.untrack(rs)
	defer func() {
		if s.closing.Err() != nil && err != nil {
			err = ErrShuttingDown
		}
	}()
	sub := &subscriber{rs: rs, keepAlive: keepAlive}
	if keepAlive != nil {
		ticker := time.NewTicker(s.opts.KeepAlive)
		defer ticker.Stop()
		sub.tick = ticker.C
	}
	sub.deliver = func(batch []annals.RecordedEvent) error {
		if err := send(batch); err != nil {
			return err
		}
		rs.sent(batch)
		s.stats.add(cEventsDelivered, len(batch))
		return nil
	}
	if t.all {
		return s.followAll(ctx, t, from, sub)
	}
	return s.followStream(ctx, t, from, sub)
}

// subscriber is how [Server.follow] delivers a subscription: deliver sends a batch and counts
// it in rs; keepAlive, when not nil, is to be called at every tick while no event is sent.
type subscriber struct {
	rs        *runningSub
	deliver   func([]annals.RecordedEvent) error
	tick      <-chan time.Time
	keepAlive func() error
}

// followStream runs a subscription of a stream from the given start: it reads the store's
// subscription in a goroutine that hands events over through a channel of
// Options.SubscriptionBuffer events (what a slow subscriber costs; the rest waits in storage),
// and delivers each batch of what is waiting. Stream subscriptions do not share the hub: the
// store applies the stream's rules to them (where its soft deletion and metadata start it, the
// end at a tombstone), which $all does not carry.
func (s *Server) followStream(ctx context.Context, t target, from uint64, sub *subscriber) error {
	ctx, cancel := context.WithCancel(ctx)
	seq := s.store.SubscribeStream(ctx, t.stream, &annals.SubscribeOptions{From: from, Filter: t.filter})
	type item struct {
		e   annals.RecordedEvent
		err error
	}
	ch := make(chan item, s.opts.SubscriptionBuffer)
	var wg sync.WaitGroup
	wg.Go(func() {
		defer close(ch)
		for e, err := range seq {
			select {
			case ch <- item{e, err}:
			case <-ctx.Done():
				return
			}
			if err != nil {
				return
			}
		}
	})
	defer func() {
		cancel()
		wg.Wait()
	}()

	batch := make([]annals.RecordedEvent, 0, 64)
	for {
		var it item
		var ok bool
		select {
		case it, ok = <-ch:
		case <-sub.tick:
			if err := sub.keepAlive(); err != nil {
				return err
			}
			continue
		case <-ctx.Done():
			return ctx.Err()
		}
		batch = batch[:0]
		size := 0
		var end error
		for {
			if !ok {
				if end = ctx.Err(); end == nil {
					end = errors.New("subscription ended without an error")
				}
				break
			}
			if it.err != nil {
				end = it.err
				break
			}
			batch = append(batch, it.e)
			if size += eventBytes(&it.e); len(batch) >= maxBatchEvents || size >= maxBatchBytes {
				break
			}
			select {
			case it, ok = <-ch:
				continue
			default:
			}
			break
		}
		if len(batch) > 0 {
			if err := sub.deliver(batch); err != nil {
				return err
			}
		}
		if end != nil {
			return end
		}
	}
}

// sendRead reads seq to its end and calls send with batches of its events; it returns the
// read's error after sending the events before it, or send's error.
func sendRead(seq iter.Seq2[annals.RecordedEvent, error], send func([]annals.RecordedEvent) error) error {
	batch := make([]annals.RecordedEvent, 0, 64)
	size := 0
	for e, err := range seq {
		if err != nil {
			if len(batch) > 0 {
				if serr := send(batch); serr != nil {
					return serr
				}
			}
			return err
		}
		batch = append(batch, e)
		if size += eventBytes(&e); len(batch) >= maxBatchEvents || size >= maxBatchBytes {
			if err := send(batch); err != nil {
				return err
			}
			batch, size = batch[:0], 0
		}
	}
	if len(batch) > 0 {
		return send(batch)
	}
	return nil
}
