package pgstore_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/annalsdb/annals"
	"github.com/annalsdb/annals/pgstore"
	"github.com/annalsdb/annals/projection"
	"github.com/annalsdb/annals/supervisor"
)

// BenchmarkCatchUp: a runner catches up with a log of catchUpEvents events (200-byte JSON,
// appends of 100 over 100 streams) into pgstore.Projections in the store's database, with the
// default batch (projection.DefaultMaxBatch, each batch one transaction with its checkpoint)
// and a handler that writes nothing, so that what is measured is the runner, the transactions,
// the checkpoints and the fence; beside the same iteration's raw ReadAll of the log. "lease"
// runs under the default supervision (the lease in the database's leases table, checked in
// the transaction of every Update, and compare-and-set checkpoints); "no-lease" runs with
// Supervision.NoLease (compare-and-set checkpoints only). Each iteration is a new projection
// name, so a fresh generation and a catch-up from position 0. The log is written once per
// run of the benchmark: run it with -count 1.
//
//	go test -run '^$' -bench 'BenchmarkCatchUp$' -benchtime 3x ./pgstore
//
// docs/BENCHMARKS.md compares it with the runner before leases and compare-and-set.
func BenchmarkCatchUp(b *testing.B) {
	const catchUpEvents = 200_000
	s := openStore(b, nil)
	ctx := b.Context()
	for i := range catchUpEvents / 100 {
		if _, err := s.Append(ctx, fmt.Sprintf("acct-%d", i%100), annals.Any, benchEvents(100)...); err != nil {
			b.Fatal(err)
		}
	}
	p := pgstore.NewProjections(s, &pgstore.ProjectionsOptions{Setup: counterSetup})
	noop := func(context.Context, *pgstore.ProjectionTx, annals.RecordedEvent) error { return nil }
	b.Run("pgstore", func(b *testing.B) {
		for _, m := range catchUpModes {
			b.Run(m.name, func(b *testing.B) {
				var raw, proj time.Duration
				n := 0
				for b.Loop() {
					t0 := time.Now()
					read := 0
					for _, err := range s.ReadAll(ctx, nil) {
						if err != nil {
							b.Fatal(err)
						}
						read++
					}
					if read != catchUpEvents {
						b.Fatalf("ReadAll: %d events", read)
					}
					raw += time.Since(t0)

					name := fmt.Sprintf("catch-up-%s-%d", m.name, n)
					r, err := projection.NewRunner(s, p, projection.Projection[*pgstore.ProjectionTx]{Name: name, Handle: noop}, m.opts)
					if err != nil {
						b.Fatal(err)
					}
					runCtx, cancel := context.WithCancel(ctx)
					done := make(chan error, 1)
					t0 = time.Now()
					go func() { done <- r.Run(runCtx) }()
					err = r.WaitFor(ctx, catchUpEvents)
					proj += time.Since(t0)
					st, serr := r.Status(ctx)
					cancel()
					<-done
					if err != nil {
						b.Fatal(err)
					}
					if serr != nil {
						b.Fatal(serr)
					}
					if err := m.check(st); err != nil {
						b.Fatal(err)
					}
					if cp, err := p.Checkpoint(ctx, name, 0); err != nil || cp != catchUpEvents {
						b.Fatalf("checkpoint %d, %v; want %d", cp, err, catchUpEvents)
					}
					n++
				}
				total := float64(n * catchUpEvents)
				b.ReportMetric(total/proj.Seconds(), "events/s")
				b.ReportMetric(total/raw.Seconds(), "raw-read-events/s")
				b.ReportMetric(raw.Seconds()/proj.Seconds(), "x-raw")
				b.ReportMetric(0, "ns/op")
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
