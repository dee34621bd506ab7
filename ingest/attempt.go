package ingest

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/annalsdb/annals"
	"github.com/annalsdb/annals/bridge"
)

// finalTimeout bounds the writes that record the last batch as done when Run ends.
const finalTimeout = 10 * time.Second

// attempt is one run of the work under the supervisor: it knows the sources seen since it
// started, the batch under way and the batches appended but not yet committed. Only the
// loop's goroutine uses it, but for the sources, which resume reads from the Source's
// goroutines.
type attempt struct {
	in *Ingest
	mu struct {
		sync.Mutex
		sources map[string]*source
	}
	// running is the batch whose appends are under way, if any.
	running *pending
	// durable is the batches appended whose commit waits for a record that says so.
	durable []bridge.Incoming
	// found caches the event ids of target streams read for the windows: (stream, since) →
	// the ids of its events from position since on.
	found map[foundKey]map[annals.UUID]struct{}
}

type foundKey struct {
	stream string
	since  uint64
}

// source is the progress of one source in an attempt. Its fields are written by the loop
// only: stored, done and running under attempt.mu (resume and record read them), the others
// without it.
type source struct {
	name   string
	stream string   // progress stream
	stored progress // the record last read or written
	// win is the window of the record read when the attempt first saw the source, until every
	// message in it is durable.
	win window
	// done is the last offset whose event is durable (when hasDone).
	done    uint64
	hasDone bool
	// handled is the last offset taken into a batch by this attempt (when hasHandled).
	handled    uint64
	hasHandled bool
	// running is the last offset of the batch under way (when hasRunning).
	running    uint64
	hasRunning bool
}

func newAttempt(in *Ingest) *attempt {
	a := &attempt{in: in, found: map[foundKey]map[annals.UUID]struct{}{}}
	a.mu.sources = map[string]*source{}
	return a
}

// resume is the Source.Start callback: the record's Done of source.
func (a *attempt) resume(ctx context.Context, name string) (uint64, bool, error) {
	s, err := a.source(ctx, name)
	if err != nil {
		return 0, false, err
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	return s.done, s.hasDone, nil
}

// source returns the progress of name, reading its record the first time.
func (a *attempt) source(ctx context.Context, name string) (*source, error) {
	a.mu.Lock()
	s, ok := a.mu.sources[name]
	a.mu.Unlock()
	if ok {
		return s, nil
	}
	stream, err := a.in.progressStream(name)
	if err != nil {
		return nil, err
	}
	p, err := a.in.readProgress(ctx, stream)
	if err != nil {
		return nil, err
	}
	s = &source{name: name, stream: stream, stored: p, win: p.window(), done: p.rec.Done, hasDone: p.rec.HasDone}
	a.mu.Lock()
	defer a.mu.Unlock()
	if old, ok := a.mu.sources[name]; ok { // read meanwhile by another caller
		return old, nil
	}
	a.mu.sources[name] = s
	if s.hasDone {
		a.in.setOffsets(map[string]uint64{name: s.done})
	}
	return s, nil
}

// loop fetches and appends batches until ctx is done (nil, after recording what is durable)
// or an error. It fetches and plans a batch, and writes its records, while the appends of
// the batch before are under way: a record announces the offsets of both batches (Next), and
// says done only what was durable before either was appended (Done), with the position of
// the record before it (written before the appends under way started) as the bound of the
// lookups (since). Every return waits for the appends under way.
func (a *attempt) loop(ctx context.Context) error {
	for {
		msgs, err := a.fetch(ctx)
		if ctx.Err() != nil {
			if err := a.wait(); err != nil {
				return err
			}
			return a.finish(ctx)
		}
		if err == nil {
			var p *pending
			p, err = a.plan(ctx, msgs)
			if err == nil {
				err = a.announce(ctx, p)
			}
			if werr := a.wait(); err == nil {
				err = werr
			}
			if err == nil {
				a.start(ctx, p)
				continue
			}
		}
		if werr := a.wait(); werr != nil {
			return errors.Join(err, werr)
		}
		return err
	}
}

// fetch returns the next messages. While a batch is under way or waits for its commit, it
// waits at most the idle time, then lets the batch end, records it as done, commits it, and
// waits on. (A Fetch is cut short only then: a Source may lose what it was reading when its
// context ends.)
func (a *attempt) fetch(ctx context.Context) ([]bridge.Incoming, error) {
	if a.running != nil || len(a.durable) > 0 {
		fctx, cancel := context.WithTimeout(ctx, a.in.idle)
		msgs, err := a.in.src.Fetch(fctx, a.in.opts.Batch)
		timedOut := fctx.Err() != nil
		cancel()
		if err == nil || !timedOut || ctx.Err() != nil {
			return msgs, wrapFetch(err)
		}
		if err := a.wait(); err != nil {
			return nil, err
		}
		if err := a.flush(ctx); err != nil {
			return nil, err
		}
	}
	msgs, err := a.in.src.Fetch(ctx, a.in.opts.Batch)
	return msgs, wrapFetch(err)
}

func wrapFetch(err error) error {
	if err != nil {
		return fmt.Errorf("fetch: %w", err)
	}
	return nil
}

// finish records the batches appended as done and commits them, when Run ends.
func (a *attempt) finish(ctx context.Context) error {
	if len(a.durable) == 0 {
		return nil
	}
	fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), finalTimeout)
	defer cancel()
	if err := a.flush(fctx); err != nil {
		a.in.opts.Logger.Warn("ingest: recording the last batch", "ingest", a.in.opts.Name, "err", err)
	}
	return nil
}

// flush records the durable batches as done and commits them; no batch is under way.
func (a *attempt) flush(ctx context.Context) error {
	covered := a.durable
	if err := a.record(ctx, covered, nil); err != nil {
		return err
	}
	return a.commit(ctx, covered)
}

// announce writes the records of the sources of p and of the durable batches, then commits
// those batches.
func (a *attempt) announce(ctx context.Context, p *pending) error {
	covered := a.durable
	if err := a.record(ctx, covered, p.last); err != nil {
		return err
	}
	return a.commit(ctx, covered)
}

// commit commits covered, the first of the durable batches, to the source.
func (a *attempt) commit(ctx context.Context, covered []bridge.Incoming) error {
	if len(covered) == 0 {
		return nil
	}
	if err := a.in.src.Commit(ctx, covered); err != nil {
		return fmt.Errorf("commit: %w", err)
	}
	a.durable = a.durable[len(covered):]
	if len(a.durable) == 0 {
		a.durable = nil
	}
	return nil
}

// record writes the record of every source of covered (durable batches) and of next (the
// last offset of the batch about to be appended, per source): Done is what is durable; Next
// also covers the batch under way and a window not yet passed, down to since.
func (a *attempt) record(ctx context.Context, covered []bridge.Incoming, next map[string]uint64) error {
	names := map[string]struct{}{}
	for _, m := range covered {
		names[m.Source] = struct{}{}
	}
	for name := range next {
		names[name] = struct{}{}
	}
	type write struct {
		s   *source
		rec record
	}
	var writes []write
	a.mu.Lock()
	for name := range names {
		s := a.mu.sources[name]
		rec := record{Done: s.done, HasDone: s.hasDone, Next: s.done}
		if n, ok := next[name]; ok {
			rec.Next = max(rec.Next, n)
		}
		if s.hasRunning {
			rec.Next = max(rec.Next, s.running)
		}
		if s.win.open {
			rec.Next = max(rec.Next, s.win.upTo)
		}
		if rec.Next > rec.Done || !rec.HasDone {
			// The appends under way started after the stored record was durable.
			if s.stored.exists {
				rec.Since = s.stored.pos
			}
			if s.win.open && (rec.Since == 0 || s.win.since < rec.Since) {
				rec.Since = s.win.since
			}
		}
		cur := s.stored.rec
		if s.stored.exists && cur.Done == rec.Done && cur.HasDone == rec.HasDone && cur.Next == rec.Next && cur.Since == rec.Since {
			continue
		}
		writes = append(writes, write{s, rec})
	}
	a.mu.Unlock()
	return parallel(ctx, len(writes), func(ctx context.Context, i int) error {
		w := writes[i]
		p, err := a.in.writeProgress(ctx, w.s.stream, w.s.stored, w.rec)
		if err != nil {
			return err
		}
		a.mu.Lock()
		w.s.stored = p
		a.mu.Unlock()
		return nil
	})
}
