package relay

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/annalsdb/annals"
	"github.com/annalsdb/annals/bridge"
	"github.com/annalsdb/annals/lease"
	"github.com/annalsdb/annals/projection"
)

// toolkitPrefix starts the streams of the toolkit (projections', ingests' and relays'
// checkpoints), which a relay does not publish unless its filter names them.
const toolkitPrefix = "annals."

// drainGrace is how long a spell that ends because its context is done still waits for the
// answers to what it published, so that the checkpoint it writes last covers them.
const drainGrace = time.Second

// finalWriteTimeout bounds the checkpoint write at the end of a spell.
const finalWriteTimeout = 5 * time.Second

// errStopped ends a spell's subscription when its publishing loop returned.
var errStopped = errors.New("relay: spell ended")

// work is one spell of Run's work, under the lease when there is one (ctx carries it): it
// reads the stored checkpoint, publishes from the event after it until ctx is done or an error,
// waits for the answers to what it published, and writes the checkpoint of what was
// acknowledged.
func (r *Relay) work(ctx context.Context) error {
	from, err := r.claim(ctx)
	if err != nil {
		r.stats.failed(err, false, time.Now())
		return err
	}
	sctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	w := newWindow(from, r.opts.MaxInFlight, r.opts.MaxInFlightBytes, cancel)
	r.mu.Lock()
	r.mu.win, r.mu.stored = w, from
	r.mu.Unlock()

	var wg sync.WaitGroup
	stored := from
	var writeErr error
	wg.Go(func() { stored, writeErr = r.writeCheckpoints(sctx, ctx, w, from) })
	wg.Go(func() { r.watchHead(sctx) })
	w.fail(r.publish(sctx, w, from)) // publish returns only with an error
	cancel(errStopped)
	wg.Wait()

	// Write what is acknowledged now, while the lease surely holds; then wait for the answers
	// to what was published (the next spell must not publish beside messages of this one that
	// are still in flight; when ctx is done, for a short grace only) and write again.
	final := !errors.Is(writeErr, projection.ErrCheckpointMoved) && !errors.Is(writeErr, lease.ErrLost)
	if final {
		stored = r.writeFinal(ctx, w, stored)
	}
	dctx := ctx
	if ctx.Err() != nil {
		var dcancel context.CancelFunc
		dctx, dcancel = context.WithTimeout(context.WithoutCancel(ctx), drainGrace)
		defer dcancel()
	}
	w.drain(dctx)
	if final {
		r.writeFinal(ctx, w, stored)
	}

	err = w.failure()
	if ctx.Err() != nil && (err == nil || errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded)) {
		err = ctx.Err()
	}
	if ctx.Err() == nil {
		r.stats.failed(err, false, time.Now())
	}
	return err
}

// claim reads the stored checkpoint and, when ctx carries a lease, writes it again under the
// lease, so that a checkpoint store that fences by the token it last recorded refuses the
// replica this one replaced from now on.
func (r *Relay) claim(ctx context.Context) (uint64, error) {
	for {
		cp, err := r.cps.Checkpoint(ctx, r.cpName, 0)
		if err != nil {
			return 0, fmt.Errorf("relay %q: read the checkpoint: %w", r.opts.Name, err)
		}
		if _, ok := lease.FromContext(ctx); !ok {
			return cp, nil
		}
		err = r.cps.Update(ctx, r.cpName, 0, cp, cp, noop)
		if errors.Is(err, projection.ErrCheckpointMoved) {
			continue
		}
		if err != nil {
			return 0, fmt.Errorf("relay %q: claim the checkpoint under the lease: %w", r.opts.Name, err)
		}
		return cp, nil
	}
}

func noop(struct{}) error { return nil }

// publish follows $all from the event after from and publishes what passes, until ctx is done
// or an error. A reader goroutine follows the log and encodes ahead (a bounded queue, see
// ahead); this one publishes in log order and keeps the window.
func (r *Relay) publish(ctx context.Context, w *window, from uint64) error {
	rctx, cancel := context.WithCancelCause(ctx)
	a := newAhead()
	var wg sync.WaitGroup
	wg.Go(func() { r.read(rctx, a, from) })
	defer func() {
		cancel(errStopped)
		wg.Wait()
	}()
	var items []item
	for {
		var err error
		if items, err = a.take(ctx, items); err != nil {
			return err
		}
		for _, it := range items {
			select {
			case <-ctx.Done():
				return context.Cause(ctx)
			default:
			}
			if err := r.send(ctx, w, it); err != nil {
				return err
			}
		}
	}
}

// send publishes, skips or ends with it.
func (r *Relay) send(ctx context.Context, w *window, it item) error {
	if it.err != nil {
		return it.err
	}
	f := it.f
	if f == nil {
		w.skip(it.position)
		return nil
	}
	e := &f.entry
	if err := w.push(ctx, e); err != nil {
		return err
	}
	if err := r.pub.Publish(ctx, &f.msg, func(err error) { r.done(w, e, err) }); err != nil {
		w.remove(e)
		if ctx.Err() != nil {
			return context.Cause(ctx)
		}
		perr := r.publishError(e, err)
		r.stats.failed(perr, true, time.Now())
		return perr
	}
	return nil
}

// read follows $all from the event after from, and puts into a, in log order, each event
// to skip, each event to publish with its message, and last the error that ends the reading,
// until ctx is done.
func (r *Relay) read(ctx context.Context, a *ahead, from uint64) {
	opts := &annals.SubscribeOptions{From: from + 1, Filter: r.opts.Filter}
	end := func(err error) { _ = a.put(ctx, item{err: err}, 0) }
	var slab []flight
	for ev, err := range r.store.SubscribeAll(ctx, opts) {
		if err != nil {
			if ctx.Err() != nil {
				end(context.Cause(ctx))
				return
			}
			end(fmt.Errorf("relay %q: subscribe to $all from %d: %w", r.opts.Name, opts.From, err))
			return
		}
		r.stats.saw(ev.Position)
		if r.skips(ev.Stream) {
			if a.put(ctx, item{position: ev.Position}, 0) != nil {
				return
			}
			continue
		}
		if len(slab) == 0 {
			slab = make([]flight, flightSlab)
		}
		f := &slab[0]
		slab = slab[1:]
		f.entry = entry{stream: ev.Stream, revision: ev.Revision, position: ev.Position, id: ev.ID, time: ev.Time}
		m, err := r.opts.Encoder.Encode(&ev)
		f.msg = m
		f.entry.size = m.Size()
		if err != nil {
			perr := r.publishError(&f.entry, fmt.Errorf("encode: %w", err))
			perr.Permanent = true
			end(perr)
			return
		}
		if a.put(ctx, item{f: f}, f.entry.size) != nil {
			return
		}
	}
	if err := context.Cause(ctx); err != nil {
		end(err)
		return
	}
	end(fmt.Errorf("relay %q: the subscription to $all ended", r.opts.Name))
}

// flightSlab is how many flights are allocated together. A slab lives while one of its
// flights is queued, in the window or held by the publisher; since those are a run of
// consecutive events, that keeps at most flightSlab messages more alive.
const flightSlab = 64

// flight is a message being published and its entry in the window.
type flight struct {
	entry entry
	msg   bridge.Message
}

// done is the callback of the publish of e. An answer of context.Canceled is the end of the
// spell (whose context the publisher was given), not a broker's error: it is not counted.
func (r *Relay) done(w *window, e *entry, err error) {
	if err == nil {
		r.stats.acked()
		w.done(e, nil)
		return
	}
	now := time.Now()
	perr := r.publishError(e, err)
	if !errors.Is(err, context.Canceled) {
		r.stats.failed(perr, true, now)
	}
	w.done(e, perr)
}

func (r *Relay) publishError(e *entry, err error) *PublishError {
	return &PublishError{Relay: r.opts.Name, Stream: e.stream, Revision: e.revision, Position: e.position, ID: e.id,
		Permanent: r.pub.Permanent(err), Err: err}
}

// skips reports whether the events of stream are left out: the relay's own checkpoint
// stream (and its metadata), and the system and toolkit streams unless the filter names them
// by a stream prefix starting with "$" or "annals.".
func (r *Relay) skips(stream string) bool {
	if stream == r.cpStream || stream == r.cpMeta {
		return true
	}
	if !strings.HasPrefix(stream, "$") && !strings.HasPrefix(stream, toolkitPrefix) {
		return false
	}
	if r.opts.Filter != nil {
		for _, p := range r.opts.Filter.StreamPrefixes {
			if (strings.HasPrefix(p, "$") || strings.HasPrefix(p, toolkitPrefix)) && strings.HasPrefix(stream, p) {
				return false
			}
		}
	}
	return true
}

// last returns the position of the last event of the log that passes filter, 0 when there is
// none or the read fails (Status then shows what the relay saw itself).
func (r *Relay) last(ctx context.Context, filter *annals.Filter) uint64 {
	for ev, err := range r.store.ReadAll(ctx, &annals.ReadOptions{Backwards: true, From: annals.End, Limit: 1, Filter: filter}) {
		if err != nil {
			return 0
		}
		return ev.Position
	}
	return 0
}

// watchHead reads the store's last position, and the last position that passes the filter,
// when Status asks for them, at most every headEvery, until ctx is done.
func (r *Relay) watchHead(ctx context.Context) {
	for {
		select {
		case <-r.headWanted:
		case <-ctx.Done():
			return
		}
		head := r.last(ctx, nil)
		match := head
		if r.opts.Filter != nil {
			match = r.last(ctx, r.opts.Filter)
		}
		r.stats.sawHead(head, match)
		t := time.NewTimer(headEvery)
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return
		}
	}
}
