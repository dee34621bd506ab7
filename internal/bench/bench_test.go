package bench

import (
	"context"
	"flag"
	"fmt"
	"os"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/annalsdb/annals"
	"github.com/annalsdb/annals/filestore"
	"github.com/annalsdb/annals/memstore"
)

// The Go benchmarks run the workloads of [Run] for b.N operations each, on filestore (the
// target) and on memstore (the in-memory reference, for comparison), and report beside each
// figure the raw fdatasync rate measured by the same process on the same disk:
//
//	go test -run '^$' -bench . ./internal/bench
//	go test -run '^$' -bench 'Append/filestore' -annals.dir /mnt/disk ./internal/bench
//
// Growth compares two store sizes and is measured by "annals bench" only.

var (
	flagDir = flag.String("annals.dir", "",
		"directory on the disk to measure, in which the benchmarks make a temporary directory, removed afterwards (default: the package directory)")
	flagEvents = flag.Int64("annals.events", 1_000_000,
		"events in the store that the read benchmarks read (20,000 with -short)")
	flagStores = flag.String("annals.stores", "filestore,memstore", "stores to benchmark, comma-separated: filestore, memstore")
)

func TestMain(m *testing.M) {
	flag.Parse()
	code := m.Run()
	env.cleanup()
	os.Exit(code)
}

var openers = []struct {
	name string
	open Opener
}{
	{"filestore", func(dir string) (annals.Store, error) { return filestore.Open(dir, nil) }},
	{"memstore", func(string) (annals.Store, error) { return memstore.New(nil), nil }},
}

// env is what the benchmarks of one process share: their directory, the fdatasync baselines
// and the stores, each made on first use; TestMain closes and removes them.
var env benchEnv

type benchEnv struct {
	mu     sync.Mutex
	dir    string
	ref    string             // the faster fsync variant
	rates  map[string]float64 // fsync ops/s by variant, or by "just before" a benchmark
	writes map[string]*openStore
	reads  map[string]*readStore
	nonce  int
}

type readStore struct {
	*openStore
	pop population
}

func (e *benchEnv) cleanup() {
	e.mu.Lock()
	defer e.mu.Unlock()
	for _, s := range e.writes {
		closeStore(s)
	}
	for _, s := range e.reads {
		closeStore(s.openStore)
	}
	if e.dir != "" {
		os.RemoveAll(e.dir)
	}
}

// dirLocked returns the benchmarks' directory, making it on first use.
func (e *benchEnv) dirLocked(b *testing.B) string {
	if e.dir == "" {
		parent := *flagDir
		if parent == "" {
			parent = "."
		}
		dir, err := os.MkdirTemp(parent, "bench-tmp-")
		if err != nil {
			b.Fatal(err)
		}
		e.dir = dir
	}
	return e.dir
}

// fsyncRate returns the rate of the faster fdatasync variant, each measured for a second
// once per process.
func (e *benchEnv) fsyncRate(b *testing.B) (string, float64) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.ref == "" {
		dir := e.dirLocked(b)
		for _, v := range []string{FsyncAppend, FsyncOverwrite} {
			l, err := fsyncLoop(context.Background(), dir, v == FsyncOverwrite, limit{dur: time.Second})
			if err != nil {
				b.Fatal(err)
			}
			if e.rates == nil {
				e.rates = map[string]float64{}
			}
			e.rates[v] = l.opsRate()
			if e.ref == "" || l.opsRate() > e.rates[e.ref] {
				e.ref = v
			}
		}
	}
	return e.ref, e.rates[e.ref]
}

// pairedRate returns the rate of the faster fdatasync variant measured for a second right
// before the benchmark named key first ran.
func (e *benchEnv) pairedRate(b *testing.B, key string) float64 {
	ref, _ := e.fsyncRate(b)
	e.mu.Lock()
	defer e.mu.Unlock()
	key = "before " + key
	if _, ok := e.rates[key]; !ok {
		l, err := fsyncLoop(context.Background(), e.dirLocked(b), ref == FsyncOverwrite, limit{dur: time.Second})
		if err != nil {
			b.Fatal(err)
		}
		e.rates[key] = l.opsRate()
	}
	return e.rates[key]
}

func (e *benchEnv) newNonce() int {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.nonce++
	return e.nonce
}

// writeStore returns the store the write benchmarks of the named backend share.
func (e *benchEnv) writeStore(b *testing.B, name string, open Opener) annals.Store {
	e.mu.Lock()
	defer e.mu.Unlock()
	if s := e.writes[name]; s != nil {
		return s
	}
	s, err := (&runner{dir: e.dirLocked(b), open: open}).storeIn("writes-" + name)
	if err != nil {
		b.Fatal(err)
	}
	if e.writes == nil {
		e.writes = map[string]*openStore{}
	}
	e.writes[name] = s
	return s
}

// readStore returns the store of the named backend that the read benchmarks share, holding
// -annals.events events, populated and read once on first use.
func (e *benchEnv) readStore(b *testing.B, name string, open Opener) *readStore {
	e.mu.Lock()
	defer e.mu.Unlock()
	if s := e.reads[name]; s != nil {
		return s
	}
	events := *flagEvents
	if testing.Short() {
		events = 20_000
	}
	s, err := (&runner{dir: e.dirLocked(b), open: open}).storeIn("reads-" + name)
	if err != nil {
		b.Fatal(err)
	}
	rs := &readStore{openStore: s}
	if e.reads == nil {
		e.reads = map[string]*readStore{}
	}
	e.reads[name] = rs
	start := time.Now()
	ctx := context.Background()
	var done atomic.Int64
	if err := rs.pop.populate(ctx, s, events, &done); err != nil {
		b.Fatal(err)
	}
	if _, err := readAllPass(ctx, s, func(int64) bool { return false }); err != nil {
		b.Fatal(err)
	}
	b.Logf("%s: populated with %d events in %v", name, rs.pop.stored, time.Since(start).Round(time.Millisecond))
	return rs
}

// forStores runs fn as a sub-benchmark for each store of -annals.stores.
func forStores(b *testing.B, fn func(b *testing.B, name string, open Opener)) {
	wanted := strings.Split(*flagStores, ",")
	for _, o := range openers {
		if slices.Contains(wanted, o.name) {
			b.Run(o.name, func(b *testing.B) { fn(b, o.name, o.open) })
		}
	}
}

func reportLatency(b *testing.B, l load) {
	b.ReportMetric(ms(l.p50()), "p50-ms")
	b.ReportMetric(ms(l.p99()), "p99-ms")
}

func BenchmarkFsync(b *testing.B) {
	for _, v := range []string{FsyncAppend, FsyncOverwrite} {
		b.Run(strings.TrimPrefix(v, "fsync-"), func(b *testing.B) {
			env.mu.Lock()
			dir := env.dirLocked(b)
			env.mu.Unlock()
			l, err := fsyncLoop(context.Background(), dir, v == FsyncOverwrite, limit{ops: int64(b.N)})
			if err != nil {
				b.Fatal(err)
			}
			b.ReportMetric(l.opsRate(), "ops/s")
			reportLatency(b, l)
		})
	}
}

func BenchmarkSeqWrite(b *testing.B) {
	env.mu.Lock()
	dir := env.dirLocked(b)
	env.mu.Unlock()
	b.SetBytes(seqBlock)
	l, err := seqWrite(context.Background(), dir, int64(b.N)*seqBlock, time.Hour)
	if err != nil {
		b.Fatal(err)
	}
	b.ReportMetric(l.rate()/(1<<20), "MiB/s")
}

// BenchmarkAppend runs the append workloads; an op is one append (of 1 or 100 events).
func BenchmarkAppend(b *testing.B) {
	forStores(b, func(b *testing.B, name string, open Opener) {
		for _, w := range []string{Append1W, Append64W, Batch1W, Batch8W} {
			b.Run(w, func(b *testing.B) {
				ref, rate := env.fsyncRate(b)
				paired := 0.0
				if w == Append1W || w == Batch1W {
					paired = env.pairedRate(b, b.Name())
				}
				s := env.writeStore(b, name, open)
				shape := appendShapes[w]
				spec := appendSpec{writers: shape.writers, batch: shape.batch, streams: ownStreamsOf(w, env.newNonce())}
				b.ResetTimer()
				l, err := runAppends(context.Background(), s, spec, limit{ops: int64(b.N)})
				if err != nil {
					b.Fatal(err)
				}
				b.ReportMetric(l.rate(), "events/s")
				reportLatency(b, l)
				b.ReportMetric(rate, "baseline-"+ref+"/s")
				switch w {
				case Append1W:
					b.ReportMetric(l.rate()/paired, "x-fsync-just-before")
				case Batch1W:
					b.ReportMetric(l.rate()/(batchSize*paired), "x-100-fsync-just-before")
				}
			})
		}
	})
}

// BenchmarkSubscribe measures append ack → live $all delivery; an op is one event.
func BenchmarkSubscribe(b *testing.B) {
	forStores(b, func(b *testing.B, name string, open Opener) {
		ref, rate := env.fsyncRate(b)
		s := env.writeStore(b, name, open)
		stream := fmt.Sprintf("live-%d", env.newNonce())
		b.ResetTimer()
		l, err := liveLatency(context.Background(), s, stream, limit{ops: int64(b.N)})
		if err != nil {
			b.Fatal(err)
		}
		reportLatency(b, l)
		b.ReportMetric(rate, "baseline-"+ref+"/s")
	})
}

// BenchmarkReadAll reads $all, warm, in a store of -annals.events events; an op is one event.
func BenchmarkReadAll(b *testing.B) {
	forStores(b, func(b *testing.B, name string, open Opener) {
		s := env.readStore(b, name, open)
		b.ResetTimer()
		l, err := readAllEvents(context.Background(), s, limit{ops: int64(b.N)})
		if err != nil {
			b.Fatal(err)
		}
		b.ReportMetric(l.rate(), "events/s")
		b.ReportMetric(float64(s.pop.stored), "stored")
	})
}

// BenchmarkReadStream reads whole 1,000-event streams spread over a store of -annals.events
// events; an op is one stream read.
func BenchmarkReadStream(b *testing.B) {
	forStores(b, func(b *testing.B, name string, open Opener) {
		s := env.readStore(b, name, open)
		b.ResetTimer()
		l, err := readStreams(context.Background(), s, s.pop.latest(), streamLength, limit{ops: int64(b.N)})
		if err != nil {
			b.Fatal(err)
		}
		b.ReportMetric(l.rate(), "events/s")
		reportLatency(b, l)
		b.ReportMetric(float64(s.pop.stored), "stored")
	})
}

// BenchmarkCatchUp runs the catch-up workload: a projection runner over a store of
// -annals.events events into a projection.Memory, from position 0, under the default lease and
// without one, in turn (which one first alternates); an op is one catch-up of each.
func BenchmarkCatchUp(b *testing.B) {
	forStores(b, func(b *testing.B, name string, open Opener) {
		s := env.readStore(b, name, open)
		ctx := context.Background()
		last, err := headPosition(ctx, s)
		if err != nil {
			b.Fatal(err)
		}
		if _, _, err := catchUpOnce(ctx, s, last, false); err != nil {
			b.Fatal(err)
		}
		var leased, free time.Duration
		var events int64
		for i := 0; b.Loop(); i++ {
			for _, noLease := range []bool{i%2 == 1, i%2 == 0} {
				d, n, err := catchUpOnce(ctx, s, last, noLease)
				if err != nil {
					b.Fatal(err)
				}
				if noLease {
					free += d
				} else {
					leased, events = leased+d, events+n
				}
			}
		}
		b.ReportMetric(float64(events)/leased.Seconds(), "events/s")
		b.ReportMetric(float64(events)/free.Seconds(), "no-lease-events/s")
		b.ReportMetric(free.Seconds()/leased.Seconds(), "x-no-lease")
		b.ReportMetric(float64(s.pop.stored), "stored")
	})
}
