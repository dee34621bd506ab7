package bench

import (
	"context"
	"fmt"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"

	"github.com/annalsdb/annals"
)

// limit says when a load stops: after ops operations in all when ops > 0 (the Go benchmarks
// pass b.N), otherwise after dur.
type limit struct {
	ops int64
	dur time.Duration
}

// gate tells the goroutines of one load whether to do one more operation. It closes when the
// limit is reached, when ctx is done, or when stop is called (a goroutine failed).
type gate struct {
	ops     int64
	n       atomic.Int64
	stopped atomic.Bool
	timer   *time.Timer
	unhook  func() bool
}

func newGate(ctx context.Context, lim limit) *gate {
	g := &gate{ops: lim.ops}
	if lim.ops <= 0 {
		g.timer = time.AfterFunc(lim.dur, g.stop)
	}
	g.unhook = context.AfterFunc(ctx, g.stop)
	return g
}

// next reports whether one more operation may start.
func (g *gate) next() bool {
	if g.stopped.Load() {
		return false
	}
	return g.ops <= 0 || g.n.Add(1) <= g.ops
}

func (g *gate) stop() { g.stopped.Store(true) }

// close releases the gate's timer and its hook on the context.
func (g *gate) close() {
	if g.timer != nil {
		g.timer.Stop()
	}
	g.unhook()
}

// load is what a measured load did.
type load struct {
	ops     int64
	events  int64 // events (or bytes, for the sequential write) moved by the ops
	elapsed time.Duration
	lat     []time.Duration // sorted
	last    uint64          // the highest position an append returned

	// Of the realistic workloads only:
	appends, conflicts int64         // appends sent, and refused as conflicts
	reads              int64         // reads among the ops
	caughtUp           time.Duration // the slowest catch-up subscriber's time to catch up
	cpu                time.Duration // CPU time of the process over elapsed
	note               string
}

func (l load) rate() float64 {
	if l.elapsed <= 0 {
		return 0
	}
	return float64(l.events) / l.elapsed.Seconds()
}

func (l load) opsRate() float64 {
	if l.elapsed <= 0 {
		return 0
	}
	return float64(l.ops) / l.elapsed.Seconds()
}

func (l load) p50() time.Duration { return percentile(l.lat, 50) }
func (l load) p99() time.Duration { return percentile(l.lat, 99) }

// payloadSize is the size of every event's data.
const payloadSize = 200

// payloads holds 4,096 distinct 200-byte JSON documents that events take their data from in
// turn. They are never modified.
var payloads = sync.OnceValue(func() [][]byte { return makePayloads(payloadSize, 4096) })

// makePayloads returns n distinct JSON documents of size bytes each (size ≥ [MinEventSize]),
// the same for the same arguments: a line of a shopping cart with a note that fills it up.
func makePayloads(size, n int) [][]byte {
	rng := rand.New(rand.NewPCG(1, 2))
	const letters = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789 "
	out := make([][]byte, n)
	for i := range out {
		head := fmt.Sprintf(`{"cart":"cart-%06d","sku":"sku-%05d","qty":%d,"price":%d,"currency":"EUR","at":"2025-%02d-%02dT%02d:%02d:%02dZ","note":"`,
			rng.IntN(1_000_000), rng.IntN(100_000), 1+rng.IntN(9), 100+rng.IntN(99_900),
			1+rng.IntN(12), 1+rng.IntN(28), rng.IntN(24), rng.IntN(60), rng.IntN(60))
		b := make([]byte, 0, size)
		b = append(b, head...)
		for len(b) < size-2 {
			b = append(b, letters[rng.IntN(len(letters))])
		}
		out[i] = append(b, `"}`...)
	}
	return out
}

var eventTypes = [...]string{"ItemAddedToCart", "ItemRemovedFromCart", "CartCheckedOut"}

// newEvent returns the n-th event of a load: a fresh ID left to the store, one of a few types,
// one of the payloads.
func newEvent(n uint64) annals.Event {
	p := payloads()
	return annals.Event{Type: eventTypes[n%uint64(len(eventTypes))], Data: p[n%uint64(len(p))]}
}

// picker chooses the stream and expected revision of each append of one writer.
type picker interface {
	next() (stream string, expected annals.ExpectedRevision)
	done(annals.AppendResult)
}

// ownStreams is a writer's own set of streams, written in turn with exact expected revisions,
// as a command handler that just read them would.
type ownStreams struct {
	names []string
	revs  []int64 // -1: not written yet
	i     int
}

func newOwnStreams(prefix string, n int) *ownStreams {
	o := &ownStreams{names: make([]string, n), revs: make([]int64, n)}
	for k := range o.names {
		o.names[k] = fmt.Sprintf("%s-%d", prefix, k)
		o.revs[k] = -1
	}
	return o
}

func (o *ownStreams) next() (string, annals.ExpectedRevision) {
	k := o.i % len(o.names)
	if o.revs[k] < 0 {
		return o.names[k], annals.NoStream
	}
	return o.names[k], annals.Exact(uint64(o.revs[k]))
}

func (o *ownStreams) done(res annals.AppendResult) {
	o.revs[o.i%len(o.names)] = int64(res.Revision)
	o.i++
}

// anyStreams writes to random streams chosen by pick, with annals.Any.
type anyStreams struct {
	rng  *rand.Rand
	pick func(*rand.Rand) string
}

func (a *anyStreams) next() (string, annals.ExpectedRevision) { return a.pick(a.rng), annals.Any }
func (a *anyStreams) done(annals.AppendResult)                {}

// appendSpec describes an append load.
type appendSpec struct {
	writers int
	batch   int                // events per append
	streams func(w int) picker // the streams of writer w, called by runAppends before it starts them
}

// runAppends runs spec's writers concurrently until lim, each appending batch events at a
// time and waiting for the acknowledgement, and measures every append's latency. It stops at
// the first error and returns it.
func runAppends(ctx context.Context, s annals.Store, spec appendSpec, lim limit) (load, error) {
	g := newGate(ctx, lim)
	defer g.close()
	var wg sync.WaitGroup
	errs := make([]error, spec.writers)
	lats := make([]*samples, spec.writers)
	ops := make([]int64, spec.writers)
	last := make([]uint64, spec.writers)
	start := time.Now()
	for w := range spec.writers {
		lats[w] = newSamples(maxSamples/spec.writers, uint64(w))
		p := spec.streams(w)
		wg.Go(func() {
			evs := make([]annals.Event, spec.batch)
			seq := uint64(w) * 7919
			var n int64
			defer func() { ops[w] = n }()
			for g.next() {
				stream, expected := p.next()
				for i := range evs {
					evs[i] = newEvent(seq)
					seq++
				}
				t0 := time.Now()
				res, err := s.Append(ctx, stream, expected, evs...)
				d := time.Since(t0)
				if err != nil {
					errs[w] = fmt.Errorf("append %d events to %s (expected %s): %w", len(evs), stream, expected, err)
					g.stop()
					return
				}
				lats[w].add(d)
				n++
				last[w] = max(last[w], res.Position)
				p.done(res)
			}
		})
	}
	wg.Wait()
	l := load{elapsed: time.Since(start), lat: sortedSamples(lats...)}
	for w := range spec.writers {
		l.ops += ops[w]
		l.last = max(l.last, last[w])
	}
	l.events = l.ops * int64(spec.batch)
	for _, err := range errs {
		if err != nil {
			return l, err
		}
	}
	return l, ctx.Err()
}

// readAllPass reads $all once from the start, or until stop (asked every 1,024 events)
// returns true, checking that positions increase. It returns the number of events read.
func readAllPass(ctx context.Context, s annals.Store, stop func(n int64) bool) (int64, error) {
	var last uint64
	n := int64(0)
	for ev, err := range s.ReadAll(ctx, nil) {
		if err != nil {
			return n, fmt.Errorf("read $all: %w", err)
		}
		if ev.Position <= last {
			return n, fmt.Errorf("read $all: position %d after %d", ev.Position, last)
		}
		last = ev.Position
		n++
		if n&1023 == 0 && stop(n) {
			break
		}
	}
	if n == 0 {
		return 0, fmt.Errorf("read $all: the store is empty")
	}
	return n, nil
}

// readAllEvents reads $all from the start, whole passes one after another, until lim: the
// last pass is cut short at the deadline (or after about lim.ops events in all). ops and
// events both count the events read.
func readAllEvents(ctx context.Context, s annals.Store, lim limit) (load, error) {
	var l load
	start := time.Now()
	deadline := start.Add(lim.dur)
	expired := func(n int64) bool {
		if lim.ops > 0 {
			return l.events+n >= lim.ops
		}
		return time.Now().After(deadline)
	}
	for !expired(0) {
		n, err := readAllPass(ctx, s, expired)
		l.events += n
		if err != nil {
			return l, err
		}
	}
	l.elapsed = time.Since(start)
	l.ops = l.events
	return l, nil
}

// readStreams reads whole streams, in turn, until lim, checking that each holds want events,
// and measures each read's latency.
func readStreams(ctx context.Context, s annals.Store, streams []string, want int, lim limit) (load, error) {
	g := newGate(ctx, lim)
	defer g.close()
	lat := newSamples(maxSamples, 1)
	var l load
	start := time.Now()
	for i := 0; g.next(); i++ {
		stream := streams[i%len(streams)]
		t0 := time.Now()
		n := 0
		for _, err := range s.ReadStream(ctx, stream, nil) {
			if err != nil {
				return l, fmt.Errorf("read stream %s: %w", stream, err)
			}
			n++
		}
		lat.add(time.Since(t0))
		if n != want {
			return l, fmt.Errorf("read stream %s: %d events, want %d", stream, n, want)
		}
		l.ops++
		l.events += int64(n)
	}
	l.elapsed = time.Since(start)
	l.lat = sortedSamples(lat)
	return l, ctx.Err()
}

// liveTimeout bounds how long the subscriber may take to receive one event before the load
// fails.
const liveTimeout = 10 * time.Second

// liveLatency appends one event at a time to stream and measures, for each, the time from the
// return of Append to the delivery of the event to a subscriber to $all in this process; it
// waits for the delivery before the next append. Delivery before Append returns counts as 0.
func liveLatency(ctx context.Context, s annals.Store, stream string, lim limit) (load, error) {
	var l load
	// The subscription starts at a marker event, so that it has caught up and is live when
	// the measured appends begin.
	marker, err := s.Append(ctx, stream, annals.Any, newEvent(0))
	if err != nil {
		return l, fmt.Errorf("append to %s: %w", stream, err)
	}
	sctx, cancel := context.WithCancel(ctx)
	defer cancel()
	type arrival struct {
		pos uint64
		at  time.Time
	}
	got := make(chan arrival, 1)
	var subErr error
	var wg sync.WaitGroup
	defer func() {
		cancel()
		wg.Wait()
	}()
	wg.Go(func() {
		defer close(got)
		for ev, err := range s.SubscribeAll(sctx, &annals.SubscribeOptions{From: marker.Position}) {
			at := time.Now()
			if err != nil {
				if sctx.Err() == nil {
					subErr = err
				}
				return
			}
			select {
			case got <- arrival{ev.Position, at}:
			case <-sctx.Done():
				return
			}
		}
	})
	wait := func(pos uint64) (time.Time, error) {
		timer := time.NewTimer(liveTimeout)
		defer timer.Stop()
		for {
			select {
			case a, ok := <-got:
				if !ok {
					if subErr != nil {
						return time.Time{}, fmt.Errorf("subscribe to $all: %w", subErr)
					}
					return time.Time{}, fmt.Errorf("subscribe to $all: ended early: %w", ctx.Err())
				}
				if a.pos == pos {
					return a.at, nil
				}
				if a.pos > pos {
					return time.Time{}, fmt.Errorf("subscribe to $all: got position %d, want %d", a.pos, pos)
				}
			case <-timer.C:
				return time.Time{}, fmt.Errorf("subscribe to $all: position %d not delivered within %v", pos, liveTimeout)
			}
		}
	}
	if _, err := wait(marker.Position); err != nil {
		return l, err
	}
	g := newGate(ctx, lim)
	defer g.close()
	lat := newSamples(maxSamples, 2)
	start := time.Now()
	for n := uint64(1); g.next(); n++ {
		res, err := s.Append(ctx, stream, annals.Any, newEvent(n))
		acked := time.Now()
		if err != nil {
			return l, fmt.Errorf("append to %s: %w", stream, err)
		}
		at, err := wait(res.Position)
		if err != nil {
			return l, err
		}
		lat.add(max(at.Sub(acked), 0))
		l.ops++
	}
	l.elapsed = time.Since(start)
	l.events = l.ops
	l.lat = sortedSamples(lat)
	return l, ctx.Err()
}
