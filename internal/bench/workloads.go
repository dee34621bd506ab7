package bench

import (
	"context"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/annalsdb/annals"
)

// maxRetries bounds the retries of one zipf-conditional command: a command still refused
// after that many fails the workload, as a livelock would be a bug.
const maxRetries = 100

// readShare is the share of reads in mixed-70-30.
const readShare = 0.7

// recentStreams is how many of the streams appended to last mixed-70-30's reads choose from.
const recentStreams = 1024

// events makes the events of a realistic workload: a fresh ID left to the store, one of a few
// types, one of a set of JSON documents of the configured size (at most 16 MiB of them in
// all, so memory stays bounded whatever the size).
type events [][]byte

func newEvents(size int) events {
	return makePayloads(size, min(max((16<<20)/size, 16), 4096))
}

func (e events) event(n uint64) annals.Event {
	return annals.Event{Type: eventTypes[n%uint64(len(eventTypes))], Data: e[n%uint64(len(e))]}
}

// streamName is the id of the k-th stream of a workload whose streams start with prefix.
func streamName(prefix string, k uint64) string { return fmt.Sprintf("%s-%d", prefix, k) }

// unknown marks a stream whose revision a zipf writer has not seen yet.
const unknown = annals.ExpectedRevision(math.MinInt64)

// zipfWriter is one simulated client of zipf-conditional: a command handler that appends one
// event per command to a stream chosen by Zipf, with the expected revision it last saw of
// that stream; it reads the stream when it has never seen it, and reads the events it missed
// when an append is refused, then retries. Its state outlives one load (the warm-up's
// knowledge carries into the measured run). known holds one revision per stream (8 bytes ×
// Shape.Streams).
type zipfWriter struct {
	s      annals.Store
	zipf   *rand.Zipf
	known  []annals.ExpectedRevision
	seq    uint64
	prefix string
	ev     events
}

func newZipfWriters(stores []annals.Store, shape Shape, prefix string, ev events, seed uint64) []*zipfWriter {
	ws := make([]*zipfWriter, len(stores))
	for i, s := range stores {
		rng := rand.New(rand.NewPCG(seed, uint64(i)))
		known := make([]annals.ExpectedRevision, shape.Streams)
		for k := range known {
			known[k] = unknown
		}
		ws[i] = &zipfWriter{s: s, zipf: rand.NewZipf(rng, shape.Zipf, 1, uint64(shape.Streams-1)), known: known,
			seq: uint64(i) * 7919, prefix: prefix, ev: ev}
	}
	return ws
}

// tally is what one goroutine of a load counted.
type tally struct {
	ops, events, appends, conflicts int64
	reads, readEvents               int64
	last                            uint64
	lat, readLat, appendLat         *samples
}

func newTally(n, i int) *tally {
	return &tally{lat: newSamples(maxSamples/n, uint64(i)), readLat: newSamples(maxSamples/n, uint64(i)+1<<20),
		appendLat: newSamples(maxSamples/n, uint64(i)+2<<20)}
}

// command runs one command of w: choose, load when unknown, append, and on a conflict load
// what was missed and retry.
func (w *zipfWriter) command(ctx context.Context, t *tally) error {
	k := w.zipf.Uint64()
	stream := streamName(w.prefix, k)
	expected := w.known[k]
	if expected == unknown {
		var err error
		if expected, err = loadRevision(ctx, w.s, stream, annals.NoStream); err != nil {
			return err
		}
	}
	for try := 0; ; try++ {
		t.appends++
		res, err := w.s.Append(ctx, stream, expected, w.ev.event(w.seq))
		w.seq++
		if err == nil {
			w.known[k] = annals.Exact(res.Revision)
			t.events++
			t.last = max(t.last, res.Position)
			return nil
		}
		if !errors.Is(err, annals.ErrWrongExpectedVersion) {
			return fmt.Errorf("append to %s (expected %s): %w", stream, expected, err)
		}
		t.conflicts++
		if try == maxRetries {
			return fmt.Errorf("append to %s: still refused after %d retries: %w", stream, maxRetries, err)
		}
		if expected, err = loadRevision(ctx, w.s, stream, expected); err != nil {
			return err
		}
	}
}

// loadRevision reads stream after the revision known (from its start when known is not a
// revision), as a command handler with cached state catches up with what it missed, and
// returns the revision of the last event read: known when none, NoStream when the stream does
// not exist.
func loadRevision(ctx context.Context, s annals.Store, stream string, known annals.ExpectedRevision) (annals.ExpectedRevision, error) {
	from := uint64(0)
	if r, ok := known.Revision(); ok {
		from = r + 1
	} else {
		known = annals.NoStream
	}
	for ev, err := range s.ReadStream(ctx, stream, &annals.ReadOptions{From: from}) {
		if errors.Is(err, annals.ErrStreamNotFound) {
			return annals.NoStream, nil
		}
		if err != nil {
			return known, fmt.Errorf("read stream %s: %w", stream, err)
		}
		known = annals.Exact(ev.Revision)
	}
	return known, nil
}

// runClients runs op on each of n goroutines until g closes, each with a tally of its own,
// and returns the tallies and the time it took. It stops at the first error and returns it.
func runClients(ctx context.Context, n int, lim limit, op func(i int, t *tally) error) ([]*tally, time.Duration, error) {
	g := newGate(ctx, lim)
	defer g.close()
	ts := make([]*tally, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	start := time.Now()
	for i := range n {
		ts[i] = newTally(n, i)
		wg.Go(func() {
			for g.next() {
				t0 := time.Now()
				if err := op(i, ts[i]); err != nil {
					errs[i] = err
					g.stop()
					return
				}
				ts[i].lat.add(time.Since(t0))
				ts[i].ops++
			}
		})
	}
	wg.Wait()
	return ts, time.Since(start), errors.Join(append(errs, ctx.Err())...)
}

// sum adds up tallies into a load.
func sum(ts []*tally, elapsed time.Duration) (l load, t tally) {
	var lat, reads, appends []*samples
	for _, x := range ts {
		t.ops += x.ops
		t.events += x.events
		t.appends += x.appends
		t.conflicts += x.conflicts
		t.reads += x.reads
		t.readEvents += x.readEvents
		t.last = max(t.last, x.last)
		lat, reads, appends = append(lat, x.lat), append(reads, x.readLat), append(appends, x.appendLat)
	}
	l = load{ops: t.ops, events: t.events + t.readEvents, elapsed: elapsed, lat: sortedSamples(lat...), last: t.last, reads: t.reads}
	if t.reads > 0 {
		r, a := sortedSamples(reads...), sortedSamples(appends...)
		l.note = fmt.Sprintf("%s reads (%.1f%%) of %s events, p50 %s p99 %s; %s appends, p50 %s p99 %s",
			group(t.reads), 100*float64(t.reads)/float64(t.ops), group(t.readEvents), fmtDuration(percentile(r, 50)), fmtDuration(percentile(r, 99)),
			group(t.ops-t.reads), fmtDuration(percentile(a, 50)), fmtDuration(percentile(a, 99)))
	}
	return l, t
}

// zipfLoad runs the commands of ws until lim.
func zipfLoad(ctx context.Context, ws []*zipfWriter, lim limit) (load, error) {
	ts, elapsed, err := runClients(ctx, len(ws), lim, func(i int, t *tally) error { return ws[i].command(ctx, t) })
	l, t := sum(ts, elapsed)
	l.appends, l.conflicts = t.appends, t.conflicts
	return l, err
}

// recent is a ring of the streams appended to last, shared by the clients of mixed-70-30.
type recent struct {
	mu struct {
		sync.Mutex
		names []string
		n     int
	}
}

func (r *recent) add(name string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.mu.names) < recentStreams {
		r.mu.names = append(r.mu.names, name)
	} else {
		r.mu.names[r.mu.n%recentStreams] = name
	}
	r.mu.n++
}

// pick returns one of the streams at random, or "" when there is none yet.
func (r *recent) pick(rng *rand.Rand) string {
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.mu.names) == 0 {
		return ""
	}
	return r.mu.names[rng.IntN(len(r.mu.names))]
}

// mixedClient is one simulated client of mixed-70-30.
type mixedClient struct {
	s      annals.Store
	rng    *rand.Rand
	seq    uint64
	shape  Shape
	prefix string
	ev     events
	recent *recent
}

func newMixedClients(stores []annals.Store, shape Shape, prefix string, ev events, seed uint64) []*mixedClient {
	rc := &recent{}
	cs := make([]*mixedClient, len(stores))
	for i, s := range stores {
		cs[i] = &mixedClient{s: s, rng: rand.New(rand.NewPCG(seed, uint64(i))), seq: uint64(i) * 7919,
			shape: shape, prefix: prefix, ev: ev, recent: rc}
	}
	return cs
}

// op does one operation: with probability readShare a read of a whole stream among the
// recently appended (the load of an aggregate), otherwise (and while no stream was appended
// to yet) an append of one event to a stream chosen uniformly, with annals.Any.
func (c *mixedClient) op(ctx context.Context, t *tally) error {
	t0 := time.Now()
	if c.rng.Float64() < readShare {
		if stream := c.recent.pick(c.rng); stream != "" {
			n := int64(0)
			for _, err := range c.s.ReadStream(ctx, stream, nil) {
				if err != nil {
					return fmt.Errorf("read stream %s: %w", stream, err)
				}
				n++
			}
			t.readLat.add(time.Since(t0))
			t.reads++
			t.readEvents += n
			return nil
		}
	}
	stream := streamName(c.prefix, c.rng.Uint64N(uint64(c.shape.Streams)))
	res, err := c.s.Append(ctx, stream, annals.Any, c.ev.event(c.seq))
	c.seq++
	if err != nil {
		return fmt.Errorf("append to %s: %w", stream, err)
	}
	t.appendLat.add(time.Since(t0))
	t.appends++
	t.events++
	t.last = max(t.last, res.Position)
	c.recent.add(stream)
	return nil
}

func mixedLoad(ctx context.Context, cs []*mixedClient, lim limit) (load, error) {
	ts, elapsed, err := runClients(ctx, len(cs), lim, func(i int, t *tally) error { return cs[i].op(ctx, t) })
	l, _ := sum(ts, elapsed)
	return l, err
}

// stallTimeout bounds how long catch-up subscribers may deliver nothing before the load fails.
const stallTimeout = 10 * time.Second

// catchUpSpec is what catchUpLoad needs.
type catchUpSpec struct {
	writers, subs []annals.Store
	shape         Shape
	prefix        string // of the workload's streams; the end marker's stream is prefix + ".end"
	ev            events
}

// catchUpLoad starts the subscribers on $all after position head (the log's head before the
// prefill) and the writers (one-event appends to streams chosen uniformly, annals.Any) at
// once; the writers stop at lim, then one more append marks the end. The load ends when every
// subscriber has received the marker. Each subscriber must have received every event of the
// workload's streams (the prefill's and the writers'), in order. ops and events count the
// events delivered (the marker aside), lat holds the writers' append latencies, caughtUp the
// slowest subscriber's time to catch up.
func catchUpLoad(ctx context.Context, sp catchUpSpec, head uint64, lim limit) (load, error) {
	var l load
	acked, err := headPosition(ctx, sp.writers[0])
	if err != nil {
		return l, err
	}
	var ackedMax atomic.Uint64
	ackedMax.Store(acked)

	sctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	type result struct {
		n        int64
		caughtUp time.Duration
		err      error
	}
	results := make([]result, len(sp.subs))
	var delivered atomic.Int64
	var subs sync.WaitGroup
	subsDone := make(chan struct{})
	start := time.Now()
	for i, s := range sp.subs {
		subs.Go(func() {
			res := &results[i]
			res.err = func() error {
				last := head
				for ev, err := range s.SubscribeAll(sctx, &annals.SubscribeOptions{From: head + 1}) {
					if err != nil {
						return fmt.Errorf("subscriber %d: %w", i, err)
					}
					if ev.Position <= last {
						return fmt.Errorf("subscriber %d: position %d after %d", i, ev.Position, last)
					}
					last = ev.Position
					if res.caughtUp == 0 && ev.Position >= ackedMax.Load() {
						res.caughtUp = time.Since(start)
					}
					if ev.Stream == sp.prefix+".end" {
						return nil
					}
					if strings.HasPrefix(ev.Stream, sp.prefix+"-") {
						res.n++
						delivered.Add(1)
					}
				}
				return fmt.Errorf("subscriber %d: ended before the end marker: %w", i, context.Cause(sctx))
			}()
			if res.err != nil {
				cancel(res.err)
			}
		})
	}
	go func() {
		subs.Wait()
		close(subsDone)
	}()

	ts, writing, werr := runClients(sctx, len(sp.writers), lim, func(i int, t *tally) error {
		stream := streamName(sp.prefix, rand.Uint64N(uint64(sp.shape.Streams)))
		res, err := sp.writers[i].Append(sctx, stream, annals.Any, sp.ev.event(uint64(i)<<32+uint64(t.ops)))
		if err != nil {
			return fmt.Errorf("append to %s: %w", stream, err)
		}
		t.events++
		t.last = max(t.last, res.Position)
		raise(&ackedMax, res.Position)
		return nil
	})
	if werr == nil {
		if _, err := sp.writers[0].Append(sctx, sp.prefix+".end", annals.Any, sp.ev.event(0)); err != nil {
			werr = fmt.Errorf("append the end marker: %w", err)
		}
	}
	if werr != nil {
		cancel(werr)
	}
	if err := waitDelivered(subsDone, &delivered); err != nil {
		cancel(err)
		<-subsDone
	}
	l.elapsed = time.Since(start)
	wl, wt := sum(ts, l.elapsed)
	l.lat = wl.lat
	l.last = wt.last
	if ctx.Err() != nil {
		return l, ctx.Err()
	}
	if err := context.Cause(sctx); err != nil {
		return l, err // sctx is canceled before the end only by a failure
	}
	want := sp.shape.Prefill + wt.events
	for i, r := range results {
		if r.err != nil {
			return l, r.err
		}
		if r.n != want {
			return l, fmt.Errorf("subscriber %d received %d events of the workload, want %d", i, r.n, want)
		}
		l.caughtUp = max(l.caughtUp, r.caughtUp)
	}
	l.ops = delivered.Load()
	l.events = l.ops
	l.note = fmt.Sprintf("%d subscribers caught up with %s events while %d writers appended %s (%s events/s); latency: the writers' appends",
		len(sp.subs), group(sp.shape.Prefill), len(sp.writers), group(wt.events), fmtRate(float64(wt.events)/writing.Seconds()))
	return l, nil
}

// raise sets a to v if v is larger.
func raise(a *atomic.Uint64, v uint64) {
	for old := a.Load(); old < v && !a.CompareAndSwap(old, v); old = a.Load() {
	}
}

// waitDelivered waits until done is closed, or returns an error when delivered stops growing
// for stallTimeout.
func waitDelivered(done <-chan struct{}, delivered *atomic.Int64) error {
	tick := time.NewTicker(stallTimeout)
	defer tick.Stop()
	seen := delivered.Load()
	for {
		select {
		case <-done:
			return nil
		case <-tick.C:
			n := delivered.Load()
			if n == seen {
				return fmt.Errorf("catch-up: no event delivered for %v", stallTimeout)
			}
			seen = n
		}
	}
}

// prefill writes sp.shape.Prefill events to the workload's streams, in 100-event appends from
// every writer at once.
func prefill(ctx context.Context, sp catchUpSpec) error {
	var next atomic.Int64
	errs := make([]error, len(sp.writers))
	var wg sync.WaitGroup
	for i, s := range sp.writers {
		wg.Go(func() {
			evs := make([]annals.Event, fillBatch)
			for {
				from := next.Add(fillBatch) - fillBatch
				if from >= sp.shape.Prefill || ctx.Err() != nil {
					return
				}
				n := min(int64(fillBatch), sp.shape.Prefill-from)
				for j := range n {
					evs[j] = sp.ev.event(uint64(from + j))
				}
				stream := streamName(sp.prefix, uint64(from/fillBatch)%uint64(sp.shape.Streams))
				if _, err := s.Append(ctx, stream, annals.Any, evs[:n]...); err != nil {
					errs[i] = fmt.Errorf("prefill: append to %s: %w", stream, err)
					return
				}
			}
		})
	}
	wg.Wait()
	return errors.Join(append(errs, ctx.Err())...)
}
