package bench

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"sync/atomic"
	"time"

	"github.com/annalsdb/annals"
)

// The targets of the issue that set the bar ("The bar"), measured on a 2-core machine.
const (
	append1WRatio    = 0.9     // × the raw fdatasync rate
	append64WRate    = 150_000 // events/s
	append64WP99     = 5 * time.Millisecond
	batch1WRatio     = 0.8 // × 100 × the raw fdatasync rate
	batch8WRate      = 600_000
	readAllRate      = 5_000_000
	readStreamP50    = 500 * time.Microsecond
	subscribeP99     = time.Millisecond
	growthMaxRatio   = 1.5
	batchSize        = 100
	streamsPerWriter = 100
)

// appendShapes are the writers and events per append of the append workloads.
var appendShapes = map[string]struct{ writers, batch int }{
	Append1W:  {1, 1},
	Append64W: {64, 1},
	Batch1W:   {1, batchSize},
	Batch8W:   {8, batchSize},
}

// runner is the state of one [Run].
type runner struct {
	cfg    Config
	dir    string
	open   Opener
	report *Report

	step, steps int    // the step running, of the steps planned
	name        string // its name
	nonce       int    // makes each load's stream names new

	fsync map[string]load // the fsync baselines of the run's start
	ref   string          // the faster of them: the reference of the ratio targets
	seq   load

	writes, reads *openStore
	pop           population
	growth        []growthPoint
}

// openStore is a store the run opened in a subdirectory of its own.
type openStore struct {
	annals.Store
	dir string
}

// growthPoint is what the growth workload measured at one store size.
type growthPoint struct {
	stored int64
	app    load
	read   load
	rss    int64
	anon   int64
}

type step struct {
	name string
	run  func(context.Context) error
}

// plan lists the steps of the run, in order.
func (r *runner) plan() []step {
	steps := []step{
		{FsyncAppend, func(ctx context.Context) error { return r.fsyncBaseline(ctx, FsyncAppend) }},
		{FsyncOverwrite, func(ctx context.Context) error { return r.fsyncBaseline(ctx, FsyncOverwrite) }},
		{SeqWrite, r.seqBaseline},
	}
	for _, w := range []string{Append1W, Append64W, Batch1W, Batch8W, Subscribe} {
		if r.cfg.runs(w) {
			steps = append(steps, step{w, func(ctx context.Context) error { return r.writeWorkload(ctx, w) }})
		}
	}
	for _, w := range Realistic() {
		if r.cfg.runs(w) {
			steps = append(steps, step{w, func(ctx context.Context) error { return r.realisticWorkload(ctx, w) }})
		}
	}
	// The read store is filled in phases up to each size something is measured at.
	type point struct {
		size   int64
		reads  bool
		growth bool
	}
	var points []point
	if r.cfg.runs(ReadAll) || r.cfg.runs(ReadStream) || r.cfg.runs(CatchUp) {
		points = append(points, point{size: r.cfg.Events, reads: true})
	}
	if r.cfg.runs(Growth) {
		points = append(points, point{size: r.cfg.GrowthFrom, growth: true}, point{size: r.cfg.GrowthTo, growth: true})
	}
	slices.SortStableFunc(points, func(a, b point) int { return int(a.size - b.size) })
	for i, p := range points {
		if i == 0 || p.size != points[i-1].size {
			steps = append(steps, step{"populate " + group(p.size), func(ctx context.Context) error { return r.populate(ctx, p.size) }})
		}
		if p.reads {
			for _, w := range []string{ReadAll, ReadStream} {
				if r.cfg.runs(w) {
					steps = append(steps, step{w, func(ctx context.Context) error { return r.readWorkload(ctx, w) }})
				}
			}
			if r.cfg.runs(CatchUp) {
				steps = append(steps, step{CatchUp, r.catchUpWorkload})
			}
		}
		if p.growth {
			steps = append(steps, step{Growth + " at " + group(p.size), r.growthPoint})
		}
	}
	return steps
}

// track reports the progress of the current step until the function it returns is called:
// done() of total, in unit.
func (r *runner) track(total int64, unit string, done func() int64) (stop func()) {
	if r.cfg.Progress == nil {
		return func() {}
	}
	report := func(d int64) {
		r.cfg.Progress(Progress{Step: r.step, Steps: r.steps, Name: r.name, Done: min(d, total), Total: total, Unit: unit})
	}
	report(0)
	quit, finished := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(finished)
		t := time.NewTicker(100 * time.Millisecond)
		defer t.Stop()
		for {
			select {
			case <-quit:
				return
			case <-t.C:
				report(done())
			}
		}
	}()
	return func() {
		close(quit)
		<-finished
		report(total)
	}
}

// timed tracks a step expected to take about total.
func (r *runner) timed(total time.Duration) (stop func()) {
	start := time.Now()
	return r.track(max(total.Milliseconds(), 1), "ms", func() int64 { return time.Since(start).Milliseconds() })
}

func (r *runner) add(res Result) { r.report.Results = append(r.report.Results, res) }

// failed records a workload that stopped on err. It returns nil, so that the run goes on,
// unless ctx is done.
func (r *runner) failed(ctx context.Context, workload, desc string, err error) error {
	if ctx.Err() != nil {
		return ctx.Err()
	}
	r.add(Result{Workload: workload, Description: desc, Verdict: Failed, Error: err.Error()})
	return nil
}

func verdict(ok bool) Verdict {
	if ok {
		return Pass
	}
	return Miss
}

var descriptions = map[string]string{
	FsyncAppend:         "4 KiB write + fdatasync, appending to a file",
	FsyncOverwrite:      "4 KiB write + fdatasync, over a pre-written file",
	SeqWrite:            "1 MiB writes, then one fdatasync",
	Append1W:            "1 writer, 1 event per append",
	Append64W:           "64 writers, 1 event per append",
	Batch1W:             "1 writer, 100-event appends",
	Batch8W:             "8 writers, 100-event appends",
	Subscribe:           "append ack → live $all subscriber in process receives, 1 writer",
	ZipfConditional:     "commands: append 1 event with the revision last seen to a stream chosen by Zipf, read what was missed and retry on conflict; latency per command",
	Mixed:               "70% reads of a whole stream among the 1,024 appended to last, 30% appends of 1 event (any revision) to a stream chosen uniformly; rate and latency per operation",
	CatchUpWhileWriting: "subscribers of $all catch up with the prefill while writers append 1 event at a time; rate: events delivered; latency: the writers' appends",
	ReadAll:             "read $all from the start, warm",
	ReadStream:          "read one whole 1,000-event stream",
	CatchUp:             "projection catch-up into memory under the default lease, from position 0",
	"growth-append":     "append-64w p99 (random existing streams), larger store vs smaller",
	"growth-read":       "read-stream p50, larger store vs smaller",
	"growth-rss":        "resident memory of the process, larger store vs smaller",
}

// Description returns what the named workload or baseline does, or "".
func Description(workload string) string { return descriptions[workload] }

// fsyncBaseline measures one variant of the raw fdatasync loop.
func (r *runner) fsyncBaseline(ctx context.Context, name string) error {
	defer r.timed(r.cfg.Duration)()
	l, err := fsyncLoop(ctx, r.dir, name == FsyncOverwrite, limit{dur: r.cfg.Duration})
	if err != nil {
		return err
	}
	if r.fsync == nil {
		r.fsync = map[string]load{}
	}
	r.fsync[name] = l
	if r.ref == "" || l.opsRate() > r.fsync[r.ref].opsRate() {
		r.ref = name
	}
	r.add(Result{Workload: name, Description: descriptions[name], Rate: l.opsRate(), Unit: "ops/s",
		Ops: l.ops, Elapsed: l.elapsed, P50: l.p50(), P99: l.p99()})
	return nil
}

func (r *runner) seqBaseline(ctx context.Context) error {
	defer r.timed(r.cfg.Duration)()
	l, err := seqWrite(ctx, r.dir, r.cfg.SeqWriteBytes, r.cfg.Duration)
	if err != nil {
		return err
	}
	r.seq = l
	r.add(Result{Workload: SeqWrite, Description: fmt.Sprintf("%s (%s MiB)", descriptions[SeqWrite], group(l.events>>20)),
		Rate: l.rate() / (1 << 20), Unit: "MiB/s", Ops: l.ops, Elapsed: l.elapsed})
	return nil
}

// refFigure is the reference fsync rate of the run's start, as a baseline figure.
func (r *runner) refFigure() *Figure {
	return &Figure{Label: r.ref + ", run start", Value: r.fsync[r.ref].opsRate(), Unit: "ops/s"}
}

// storeIn opens a store in the subdirectory name of the run's directory.
func (r *runner) storeIn(name string) (*openStore, error) {
	dir := filepath.Join(r.dir, name)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("bench: %w", err)
	}
	s, err := r.open(dir)
	if err != nil {
		os.RemoveAll(dir)
		return nil, fmt.Errorf("bench: open store in %s: %w", dir, err)
	}
	return &openStore{Store: s, dir: dir}, nil
}

// closeStore closes s and removes its directory.
func closeStore(s *openStore) error {
	if s == nil {
		return nil
	}
	err := s.Close()
	return errors.Join(err, os.RemoveAll(s.dir))
}

func (r *runner) closeStores() {
	closeStore(r.writes)
	closeStore(r.reads)
	r.writes, r.reads = nil, nil
}

// ownStreamsOf returns the pickers of a load whose writers each write streamsPerWriter
// streams of their own, with exact expected revisions.
func (r *runner) ownStreamsOf(workload string) func(w int) picker {
	r.nonce++
	return ownStreamsOf(workload, r.nonce)
}

// ownStreamsOf returns the pickers of the writers of a load; nonce makes their stream ids
// new. Writer w gets the same picker on every call, so that a measured load goes on from its
// warm-up with the streams' revisions known.
func ownStreamsOf(workload string, nonce int) func(w int) picker {
	return samePickers(func(w int) picker {
		return newOwnStreams(fmt.Sprintf("%s-%d.%d", workload, nonce, w), streamsPerWriter)
	})
}

// samePickers returns a function that makes writer w's picker with f on first use and
// returns that same picker after. It is not safe for concurrent use.
func samePickers(f func(w int) picker) func(w int) picker {
	made := map[int]picker{}
	return func(w int) picker {
		p, ok := made[w]
		if !ok {
			p = f(w)
			made[w] = p
		}
		return p
	}
}

// writeWorkload runs one of the append workloads, or subscribe, on the write store.
func (r *runner) writeWorkload(ctx context.Context, w string) error {
	if r.writes == nil {
		s, err := r.storeIn("writes")
		if err != nil {
			return err
		}
		r.writes = s
	}
	desc := descriptions[w]
	if w == Subscribe {
		defer r.timed(r.cfg.Duration)()
		r.nonce++
		l, err := liveLatency(ctx, r.writes, fmt.Sprintf("live-%d", r.nonce), limit{dur: r.cfg.Duration})
		if err != nil {
			return r.failed(ctx, w, desc, err)
		}
		r.add(Result{Workload: w, Description: desc, Ops: l.ops, Events: l.events, Elapsed: l.elapsed,
			P50: l.p50(), P99: l.p99(), Target: "p99 ≤ " + fmtDuration(subscribeP99), Verdict: verdict(l.p99() <= subscribeP99)})
		return nil
	}
	shape := appendShapes[w]
	spec := appendSpec{writers: shape.writers, batch: shape.batch, streams: r.ownStreamsOf(w)}
	// Where the target is a ratio to the fdatasync rate, that rate is measured right before.
	paired := w == Append1W || w == Batch1W
	total := r.cfg.Warmup + r.cfg.Duration
	if paired {
		total += r.cfg.Duration
	}
	defer r.timed(total)()
	var base load
	if paired {
		var err error
		if base, err = fsyncLoop(ctx, r.dir, r.ref == FsyncOverwrite, limit{dur: r.cfg.Duration}); err != nil {
			return err
		}
	}
	if r.cfg.Warmup > 0 {
		if _, err := runAppends(ctx, r.writes, spec, limit{dur: r.cfg.Warmup}); err != nil {
			return r.failed(ctx, w, desc, fmt.Errorf("warm-up: %w", err))
		}
	}
	l, err := runAppends(ctx, r.writes, spec, limit{dur: r.cfg.Duration})
	if err != nil {
		return r.failed(ctx, w, desc, err)
	}
	res := Result{Workload: w, Description: desc, Rate: l.rate(), Unit: "events/s", Ops: l.ops, Events: l.events,
		Elapsed: l.elapsed, P50: l.p50(), P99: l.p99()}
	switch w {
	case Append1W:
		res.Baseline = &Figure{Label: r.ref + ", just before", Value: base.opsRate(), Unit: "ops/s"}
		res.Ratio = res.Rate / base.opsRate()
		res.Target = fmt.Sprintf("≥ %.2f× baseline", append1WRatio)
		res.Verdict = verdict(res.Ratio >= append1WRatio)
	case Batch1W:
		res.Baseline = &Figure{Label: fmt.Sprintf("%d × %s/s %s, just before", batchSize, fmtRate(base.opsRate()), r.ref),
			Value: batchSize * base.opsRate(), Unit: "events/s"}
		res.Ratio = res.Rate / res.Baseline.Value
		res.Target = fmt.Sprintf("≥ %.2f× baseline", batch1WRatio)
		res.Verdict = verdict(res.Ratio >= batch1WRatio)
	case Append64W:
		res.Baseline = r.refFigure()
		res.Target = fmt.Sprintf("≥ %s events/s, p99 ≤ %s", group(append64WRate), fmtDuration(append64WP99))
		res.Verdict = verdict(res.Rate >= append64WRate && res.P99 <= append64WP99)
	case Batch8W:
		res.Baseline = r.refFigure()
		res.Target = fmt.Sprintf("≥ %s events/s", group(batch8WRate))
		res.Verdict = verdict(res.Rate >= batch8WRate)
	}
	r.add(res)
	return nil
}

// populate fills the read store up to about size events, first closing the write store
// (whose work is done) to give back its disk and memory.
func (r *runner) populate(ctx context.Context, size int64) error {
	if err := closeStore(r.writes); err != nil {
		r.writes = nil
		return fmt.Errorf("bench: close the write store: %w", err)
	}
	r.writes = nil
	if r.reads == nil {
		s, err := r.storeIn("reads")
		if err != nil {
			return err
		}
		r.reads = s
	}
	var done atomic.Int64
	total := max(size-r.pop.stored, minStoreEvents)
	defer r.track(total, "events", done.Load)()
	return r.pop.populate(ctx, r.reads, size, &done)
}

// readWorkload runs read-all or read-stream on the read store.
func (r *runner) readWorkload(ctx context.Context, w string) error {
	desc := descriptions[w]
	if w == ReadAll {
		defer r.timed(r.cfg.Duration)()
		// One full pass warms the caches; its time is not counted.
		if _, err := readAllPass(ctx, r.reads, func(int64) bool { return ctx.Err() != nil }); err != nil {
			return r.failed(ctx, w, desc, fmt.Errorf("warm-up: %w", err))
		}
		l, err := readAllEvents(ctx, r.reads, limit{dur: r.cfg.Duration})
		if err != nil {
			return r.failed(ctx, w, desc, err)
		}
		r.add(Result{Workload: w, Description: desc, Rate: l.rate(), Unit: "events/s", Ops: l.ops, Events: l.events,
			Elapsed: l.elapsed, Stored: r.pop.stored,
			Baseline: &Figure{Label: SeqWrite + ", run start", Value: r.seq.rate() / (1 << 20), Unit: "MiB/s"},
			Target:   fmt.Sprintf("≥ %s events/s", group(readAllRate)), Verdict: verdict(l.rate() >= readAllRate)})
		return nil
	}
	defer r.timed(r.cfg.Duration)()
	l, err := readStreams(ctx, r.reads, r.pop.latest(), streamLength, limit{dur: r.cfg.Duration})
	if err != nil {
		return r.failed(ctx, w, desc, err)
	}
	r.add(Result{Workload: w, Description: desc, Rate: l.rate(), Unit: "events/s", Ops: l.ops, Events: l.events,
		Elapsed: l.elapsed, P50: l.p50(), P99: l.p99(), Stored: r.pop.stored,
		Target: "p50 ≤ " + fmtDuration(readStreamP50), Verdict: verdict(l.p50() <= readStreamP50)})
	return nil
}

// growthPoint measures the append p99, the stream read p50 and the resident memory at the
// read store's current size; at the second point it adds the growth results.
func (r *runner) growthPoint(ctx context.Context) error {
	defer r.timed(r.cfg.Warmup + 2*r.cfg.Duration)()
	p := growthPoint{stored: r.pop.stored}
	fail := func(err error) error {
		for _, w := range []string{"growth-append", "growth-read", "growth-rss"} {
			if err := r.failed(ctx, w, descriptions[w], fmt.Errorf("at %s events: %w", group(p.stored), err)); err != nil {
				return err
			}
		}
		r.growth = append(r.growth, growthPoint{}) // no comparison at the next point
		return nil
	}
	r.nonce++
	nonce := r.nonce
	spec := appendSpec{writers: 64, batch: 1, streams: samePickers(func(w int) picker {
		return &anyStreams{rng: rand.New(rand.NewPCG(uint64(nonce), uint64(w))), pick: r.pop.randomFill}
	})}
	if r.cfg.Warmup > 0 {
		l, err := runAppends(ctx, r.reads, spec, limit{dur: r.cfg.Warmup})
		r.pop.stored = max(r.pop.stored, int64(l.last))
		if err != nil {
			return fail(err)
		}
	}
	var err error
	p.app, err = runAppends(ctx, r.reads, spec, limit{dur: r.cfg.Duration})
	r.pop.stored = max(r.pop.stored, int64(p.app.last))
	if err != nil {
		return fail(err)
	}
	if p.read, err = readStreams(ctx, r.reads, r.pop.latest(), streamLength, limit{dur: r.cfg.Duration}); err != nil {
		return fail(err)
	}
	p.rss, p.anon = rss()
	r.growth = append(r.growth, p)
	if len(r.growth) < 2 {
		return nil
	}
	a, b := r.growth[0], r.growth[1]
	if a.stored == 0 || b.stored == 0 {
		return nil // one point failed: its errors are in the report
	}
	at := func(p growthPoint) string { return "at " + group(p.stored) + " stored" }
	ratio := func(x, y time.Duration) float64 { return float64(x) / float64(y) }
	res := Result{Workload: "growth-append", Description: descriptions["growth-append"], Rate: b.app.rate(), Unit: "events/s",
		Ops: b.app.ops, Events: b.app.events, Elapsed: b.app.elapsed, P99: b.app.p99(), Stored: b.stored,
		Baseline: &Figure{Label: "p99 " + at(a), Value: ms(a.app.p99()), Unit: "ms"},
		Ratio:    ratio(b.app.p99(), a.app.p99()), Target: fmt.Sprintf("≤ %.1f× baseline", growthMaxRatio)}
	res.Verdict = verdict(res.Ratio <= growthMaxRatio)
	r.add(res)
	res = Result{Workload: "growth-read", Description: descriptions["growth-read"], Ops: b.read.ops, Events: b.read.events,
		Elapsed: b.read.elapsed, P50: b.read.p50(), Stored: b.stored,
		Baseline: &Figure{Label: "p50 " + at(a), Value: ms(a.read.p50()), Unit: "ms"},
		Ratio:    ratio(b.read.p50(), a.read.p50()), Target: fmt.Sprintf("≤ %.1f× baseline", growthMaxRatio)}
	res.Verdict = verdict(res.Ratio <= growthMaxRatio)
	r.add(res)
	res = Result{Workload: "growth-rss", Description: descriptions["growth-rss"], RSS: b.rss, RSSAnon: b.anon, Stored: b.stored,
		Baseline: &Figure{Label: fmt.Sprintf("anon %s MiB, %s", fmtRate(float64(a.anon)/(1<<20)), at(a)), Value: float64(a.rss) / (1 << 20), Unit: "MiB"},
		Target:   "bounded (reported)"}
	if a.rss > 0 {
		res.Ratio = float64(b.rss) / float64(a.rss)
	}
	r.add(res)
	return nil
}
