package tables_test

import (
	"context"
	"fmt"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/annalsdb/annals"
	"github.com/annalsdb/annals/filestore"
	"github.com/annalsdb/annals/projection"
	"github.com/annalsdb/annals/supervisor"
	"github.com/annalsdb/annals/tables"
)

// BenchmarkCatchUp: a runner catches up with a filestore log of catchUpEvents small events
// (appends of 100 over 1,000 streams) into a tables.DB (the counter projection of the tests:
// a row per stream and a total, read and written for every event), with the default batch
// (projection.DefaultMaxBatch), beside the same iteration's raw ReadAll of the log. "lease"
// runs under the default supervision (the lease of tables.DB, checked with the checkpoint in
// every Update, and compare-and-set checkpoints); "no-lease" runs with Supervision.NoLease
// (compare-and-set checkpoints only). Each iteration is a new DB, so a catch-up from
// position 0.
//
//	go test -run '^$' -bench 'BenchmarkCatchUp$' -benchtime 3x ./tables
//
// docs/BENCHMARKS.md compares it with the runner before leases and compare-and-set.
func BenchmarkCatchUp(b *testing.B) {
	s := catchUpLog(b)
	b.Run("filestore", func(b *testing.B) {
		for _, m := range catchUpModes {
			b.Run(m.name, func(b *testing.B) {
				var raw, proj time.Duration
				n := 0
				for b.Loop() {
					raw += readAllOf(b, s, catchUpEvents)
					db, err := tables.Open(filepath.Join(b.TempDir(), "tables"), nil)
					if err != nil {
						b.Fatal(err)
					}
					c := newCounter(b, db)
					p := c.projection()
					p.Filter = nil
					r, err := projection.NewRunner(s, db, p, m.opts)
					if err != nil {
						b.Fatal(err)
					}
					d, st := catchUp(b, r, catchUpEvents)
					proj += d
					if err := m.check(st); err != nil {
						b.Fatal(err)
					}
					if total, _, _ := c.total.Get(context.Background(), "all"); total != catchUpEvents {
						b.Fatalf("total %d, want %d", total, catchUpEvents)
					}
					if err := db.Close(); err != nil {
						b.Fatal(err)
					}
					n++
				}
				reportCatchUp(b, n*catchUpEvents, proj, raw)
			})
		}
	})
}

// catchUpModes are the configurations of the runner that BenchmarkCatchUp compares; check
// tells whether a Status taken at the end of a catch-up shows the configuration in force.
var catchUpModes = []struct {
	name  string
	opts  *projection.RunnerOptions
	check func(projection.Status) error
}{
	{"lease", nil, func(st projection.Status) error {
		if st.Supervisor.Lease.Token == 0 {
			return fmt.Errorf("ran without a lease: %+v", st.Supervisor)
		}
		return nil
	}},
	{"no-lease", &projection.RunnerOptions{Supervision: supervisor.Policy{NoLease: true}}, func(st projection.Status) error {
		if st.Supervisor.Lease.Token != 0 {
			return fmt.Errorf("ran under a lease: %+v", st.Supervisor)
		}
		return nil
	}},
}

const catchUpEvents = 500_000

var catchUpStore struct {
	once sync.Once
	dir  string
	s    annals.Store
	err  error
}

// catchUpLog returns a filestore holding catchUpEvents events (built once per process, closed
// and removed by TestMain), in appends of 100 events over 1,000 streams of category acct.
func catchUpLog(b *testing.B) annals.Store {
	catchUpStore.once.Do(func() {
		dir, err := osMkdirTemp()
		if err != nil {
			catchUpStore.err = err
			return
		}
		catchUpStore.dir = dir
		s, err := filestore.Open(dir, nil)
		if err != nil {
			catchUpStore.err = err
			return
		}
		catchUpStore.s = s
		evs := make([]annals.Event, 100)
		for i := range catchUpEvents / 100 {
			for j := range evs {
				evs[j] = annals.Event{Type: "Deposited", Data: []byte(`{"amount":10}`)}
			}
			if _, err := s.Append(context.Background(), "acct-"+itoa(i%1000), annals.Any, evs...); err != nil {
				catchUpStore.err = err
				return
			}
		}
	})
	if catchUpStore.err != nil {
		b.Fatal(catchUpStore.err)
	}
	return catchUpStore.s
}

// readAllOf reads the whole log of s, which must hold want events, and returns how long it
// took.
func readAllOf(b *testing.B, s annals.Store, want int) time.Duration {
	t0 := time.Now()
	n := 0
	for _, err := range s.ReadAll(context.Background(), nil) {
		if err != nil {
			b.Fatal(err)
		}
		n++
	}
	d := time.Since(t0)
	if n != want {
		b.Fatalf("ReadAll: %d events, want %d", n, want)
	}
	return d
}

// catchUp runs r until it has applied the log up to position last and returns how long that
// took (from the call of Run) and r's status at that moment.
func catchUp[Tx any](b *testing.B, r *projection.Runner[Tx], last uint64) (time.Duration, projection.Status) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	t0 := time.Now()
	go func() { done <- r.Run(ctx) }()
	err := r.WaitFor(context.Background(), last)
	d := time.Since(t0)
	st, serr := r.Status(context.Background())
	cancel()
	<-done
	if err != nil {
		b.Fatal(err)
	}
	if serr != nil {
		b.Fatal(serr)
	}
	return d, st
}

// reportCatchUp reports the rate of events catch-ups of events took proj, beside the raw
// reads of the same number of events that took raw.
func reportCatchUp(b *testing.B, events int, proj, raw time.Duration) {
	b.ReportMetric(float64(events)/proj.Seconds(), "events/s")
	b.ReportMetric(float64(events)/raw.Seconds(), "raw-read-events/s")
	b.ReportMetric(raw.Seconds()/proj.Seconds(), "x-raw")
	b.ReportMetric(0, "ns/op")
}
