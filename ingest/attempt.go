package ingest

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/annalsdb/annals"
	"github.com/annalsdb/annals/bridge"
)

// finalTimeout bounds the writes that record the last batch as done when Run ends.
const finalTimeout = 10 * time.Second

// attempt is one run of the work under the supervisor: it knows the sources seen since it
// started and the batch it appended last, not yet committed.
type attempt struct {
	in *Ingest
	mu struct {
		sync.Mutex
		sources map[string]*source
	}
	// prev is the batch appended last, whose commit waits for the next record.
	prev []bridge.Incoming
	// found caches the event ids of target streams read for the windows: (stream, since) →
	// the ids of its events from position since on.
	found map[foundKey]map[annals.UUID]struct{}
}

type foundKey struct {
	stream string
	since  uint64
}

// source is the progress of one source in an attempt. Its fields are written by the loop
// only, under attempt.mu (resume reads done from the source's goroutines).
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
	return s, nil
}

// loop fetches and appends batches until ctx is done (nil, after recording the last batch)
// or an error.
func (a *attempt) loop(ctx context.Context) error {
	for {
		msgs, err := a.fetch(ctx)
		if ctx.Err() != nil {
			return a.finish(ctx)
		}
		if err != nil {
			return err
		}
		if err := a.batch(ctx, msgs); err != nil {
			return err
		}
	}
}

// fetch returns the next messages. While a batch waits for its commit, it waits at most the
// idle time, then records that batch as done and commits it, and waits on.
func (a *attempt) fetch(ctx context.Context) ([]bridge.Incoming, error) {
	if len(a.prev) > 0 {
		fctx, cancel := context.WithTimeout(ctx, a.in.idle)
		msgs, err := a.in.src.Fetch(fctx, a.in.opts.Batch)
		timedOut := fctx.Err() != nil
		cancel()
		if err == nil || !timedOut || ctx.Err() != nil {
			return msgs, wrapFetch(err)
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

// finish records the batch appended last as done and commits it, when Run ends.
func (a *attempt) finish(ctx context.Context) error {
	if len(a.prev) == 0 {
		return nil
	}
	fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), finalTimeout)
	defer cancel()
	if err := a.flush(fctx); err != nil {
		a.in.opts.Logger.Warn("ingest: recording the last batch", "ingest", a.in.opts.Name, "err", err)
	}
	return nil
}

// flush records the batch appended last as done and commits it.
func (a *attempt) flush(ctx context.Context) error {
	if err := a.record(ctx, nil); err != nil {
		return err
	}
	return a.commit(ctx)
}

// commit commits the batch appended last to the source.
func (a *attempt) commit(ctx context.Context) error {
	if len(a.prev) == 0 {
		return nil
	}
	if err := a.in.src.Commit(ctx, a.prev); err != nil {
		return fmt.Errorf("commit: %w", err)
	}
	a.prev = nil
	return nil
}

// record writes the record of every source of the batch appended last and of every source
// in next (the last offset of the batch about to be appended, per source): Done is what is
// durable, Next the end of the coming batch (or of a window not yet passed).
func (a *attempt) record(ctx context.Context, next map[string]uint64) error {
	names := map[string]struct{}{}
	for _, m := range a.prev {
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
		if s.win.open {
			rec.Next, rec.Since = max(rec.Next, s.win.upTo), s.win.since
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
