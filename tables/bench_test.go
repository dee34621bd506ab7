package tables_test

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/annalsdb/annals"
	"github.com/annalsdb/annals/filestore"
	"github.com/annalsdb/annals/projection"
	"github.com/annalsdb/annals/tables"
)

// Benchmarks of projection catch-up from a filestore, each beside a raw ReadAll of the same
// store (the baseline), and of the read-your-writes wait beside a bare filestore append.
//
//	go test -run '^$' -bench . -benchtime 1x ./tables/

const benchEvents = 200_000

var benchStore struct {
	once sync.Once
	dir  string
	err  error
}

// filestoreWith returns a filestore holding benchEvents events (built once per run), in
// appends of 100 events over 1,000 streams of category acct.
func filestoreWith(b *testing.B) annals.Store {
	benchStore.once.Do(func() {
		dir, err := osMkdirTemp()
		if err != nil {
			benchStore.err = err
			return
		}
		benchStore.dir = dir
		s, err := filestore.Open(dir, nil)
		if err != nil {
			benchStore.err = err
			return
		}
		defer s.Close()
		evs := make([]annals.Event, 100)
		for i := 0; i < benchEvents/100; i++ {
			for j := range evs {
				evs[j] = annals.Event{Type: "Deposited", Data: []byte(`{"amount":10}`)}
			}
			if _, err := s.Append(context.Background(), "acct-"+itoa(i%1000), annals.Any, evs...); err != nil {
				benchStore.err = err
				return
			}
		}
	})
	if benchStore.err != nil {
		b.Fatal(benchStore.err)
	}
	s, err := filestore.Open(benchStore.dir, nil)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { s.Close() })
	return s
}

func reportRate(b *testing.B, events int, d time.Duration) {
	b.ReportMetric(float64(events)/d.Seconds(), "events/s")
	b.ReportMetric(0, "ns/op")
}

func BenchmarkCatchUpBaselineReadAll(b *testing.B) {
	s := filestoreWith(b)
	var total time.Duration
	for b.Loop() {
		t0 := time.Now()
		n := 0
		for _, err := range s.ReadAll(context.Background(), nil) {
			if err != nil {
				b.Fatal(err)
			}
			n++
		}
		total += time.Since(t0)
		if n != benchEvents {
			b.Fatalf("read %d events", n)
		}
	}
	reportRate(b, benchEvents*b.N, total)
}

func BenchmarkCatchUpMemory(b *testing.B) {
	s := filestoreWith(b)
	var total time.Duration
	for b.Loop() {
		m := projection.NewMemory(func() map[string]int { return map[string]int{} })
		r, err := projection.NewRunner(s, m, projection.Projection[map[string]int]{
			Name: "bench",
			Handle: func(_ context.Context, counts map[string]int, ev annals.RecordedEvent) error {
				counts[ev.Stream]++
				return nil
			},
		}, &projection.RunnerOptions{MaxBatch: 4096})
		if err != nil {
			b.Fatal(err)
		}
		total += runToHead(b, s, r)
		m.Read("bench", func(c map[string]int, _ uint64) {
			if len(c) != 1000 {
				b.Fatalf("%d streams counted", len(c))
			}
		})
	}
	reportRate(b, benchEvents*b.N, total)
}

func BenchmarkCatchUpTables(b *testing.B) {
	s := filestoreWith(b)
	var total time.Duration
	for b.Loop() {
		db, err := tables.Open(filepath.Join(b.TempDir(), "tables"), nil)
		if err != nil {
			b.Fatal(err)
		}
		c := newCounter(b, db)
		p := c.projection()
		p.Filter = nil
		r, err := projection.NewRunner(s, db, p, &projection.RunnerOptions{MaxBatch: 4096})
		if err != nil {
			b.Fatal(err)
		}
		total += runToHead(b, s, r)
		if n, _, _ := c.total.Get(context.Background(), "all"); n != benchEvents {
			b.Fatalf("total %d", n)
		}
		db.Close()
	}
	reportRate(b, benchEvents*b.N, total)
}

// runToHead runs r until it has applied the whole log and returns how long that took.
func runToHead[Tx any](b *testing.B, s annals.Store, r *projection.Runner[Tx]) time.Duration {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	t0 := time.Now()
	go func() { done <- r.Run(ctx) }()
	if err := r.WaitFor(context.Background(), lastPos(b, s)); err != nil {
		b.Fatal(err)
	}
	d := time.Since(t0)
	cancel()
	<-done
	return d
}

func BenchmarkWaitBaselineAppend(b *testing.B) {
	s, err := filestore.Open(b.TempDir(), nil)
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	var lat []time.Duration
	for b.Loop() {
		t0 := time.Now()
		if _, err := s.Append(context.Background(), "acct-1", annals.Any, annals.Event{Type: "Deposited", Data: []byte(`{}`)}); err != nil {
			b.Fatal(err)
		}
		lat = append(lat, time.Since(t0))
	}
	reportPercentiles(b, lat, "append")
}

// BenchmarkWaitAfterAppend measures the read-your-writes wait: after each durable append,
// how long until WaitFor returns (the live runner applied it to an in-memory read model).
func BenchmarkWaitAfterAppend(b *testing.B) {
	s, err := filestore.Open(b.TempDir(), nil)
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	m := projection.NewMemory(func() map[string]int { return map[string]int{} })
	r, err := projection.NewRunner(s, m, projection.Projection[map[string]int]{
		Name: "bench", Filter: &annals.Filter{Categories: []string{"acct"}},
		Handle: func(_ context.Context, c map[string]int, ev annals.RecordedEvent) error { c[ev.Stream]++; return nil },
	}, nil)
	if err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx) }()
	defer func() { cancel(); <-done }()
	var wait, roundTrip []time.Duration
	for b.Loop() {
		t0 := time.Now()
		res, err := s.Append(context.Background(), "acct-1", annals.Any, annals.Event{Type: "Deposited", Data: []byte(`{}`)})
		if err != nil {
			b.Fatal(err)
		}
		t1 := time.Now()
		if err := r.WaitFor(context.Background(), res.Position); err != nil {
			b.Fatal(err)
		}
		wait = append(wait, time.Since(t1))
		roundTrip = append(roundTrip, time.Since(t0))
	}
	reportPercentiles(b, wait, "wait")
	reportPercentiles(b, roundTrip, "append+wait")
}

func reportPercentiles(b *testing.B, lat []time.Duration, what string) {
	slices.Sort(lat)
	pct := func(p float64) float64 { return float64(lat[int(p*float64(len(lat)-1))].Microseconds()) }
	b.ReportMetric(pct(0.50), what+"-p50-µs")
	b.ReportMetric(pct(0.99), what+"-p99-µs")
}

func osMkdirTemp() (string, error) { return os.MkdirTemp("", "annals-bench-") }

func itoa(i int) string { return strconv.Itoa(i) }

func TestMain(m *testing.M) {
	code := m.Run()
	if benchStore.dir != "" {
		os.RemoveAll(benchStore.dir)
	}
	if catchUpStore.s != nil {
		catchUpStore.s.Close()
	}
	if catchUpStore.dir != "" {
		os.RemoveAll(catchUpStore.dir)
	}
	os.Exit(code)
}
