package pgstore_test

import (
	"context"
	"fmt"
	"syscall"
	"testing"
	"time"

	"github.com/annalsdb/annals"
	"github.com/annalsdb/annals/pgstore"
	"github.com/annalsdb/annals/projection"
	"github.com/annalsdb/annals/supervisor"
	"github.com/jackc/pgx/v5"
)

// BenchmarkCatchUp: a runner catches up with a log of catchUpEvents events (200-byte JSON,
// appends of 100 over 100 streams) into pgstore.Projections in the store's database, with the
// default batch (projection.DefaultMaxBatch, each batch one transaction with its checkpoint)
// and a handler that writes nothing, so that what is measured is the runner, the
// transactions, the checkpoints and the fence. Each iteration reads the log raw (ReadAll, the
// baseline) and runs one catch-up of each of catchUpModes, in an order that rotates between
// iterations: "lease" runs under the default supervision (the lease in the database's leases
// table, checked in the transaction of every Update, and compare-and-set checkpoints),
// "no-lease" with Supervision.NoLease (compare-and-set checkpoints only). Each catch-up is of
// a new projection name, so a fresh generation, from position 0. It reports each mode's rate
// and this process's CPU per event (not the server's), and lease/no-lease, the ratio of their
// rates. The log is written once per run of the benchmark: run it with -count 1.
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
	if _, err := s.Pool().Exec(ctx, "VACUUM ANALYZE "+pgx.Identifier{s.Schema(), "events"}.Sanitize()); err != nil {
		b.Fatal(err)
	}
	p := pgstore.NewProjections(s, &pgstore.ProjectionsOptions{Setup: counterSetup})
	noop := func(context.Context, *pgstore.ProjectionTx, annals.RecordedEvent) error { return nil }
	readAll := func(b *testing.B) time.Duration {
		t0 := time.Now()
		n := 0
		for _, err := range s.ReadAll(ctx, nil) {
			if err != nil {
				b.Fatal(err)
			}
			n++
		}
		if n != catchUpEvents {
			b.Fatalf("ReadAll: %d events", n)
		}
		return time.Since(t0)
	}
	// A catch-up of a new projection: how long it took, the process's CPU meanwhile, and the
	// runner's status at the end.
	projections := 0
	once := func(b *testing.B, opts *projection.RunnerOptions) (time.Duration, time.Duration, projection.Status) {
		name := fmt.Sprintf("catch-up-%d", projections)
		projections++
		r, err := projection.NewRunner(s, p, projection.Projection[*pgstore.ProjectionTx]{Name: name, Handle: noop}, opts)
		if err != nil {
			b.Fatal(err)
		}
		runCtx, cancel := context.WithCancel(ctx)
		done := make(chan error, 1)
		cpu0 := cpuTime(b)
		t0 := time.Now()
		go func() { done <- r.Run(runCtx) }()
		err = r.WaitFor(ctx, catchUpEvents)
		d, cpu := time.Since(t0), cpuTime(b)-cpu0
		st, serr := r.Status(ctx)
		cancel()
		<-done
		if err != nil {
			b.Fatal(err)
		}
		if serr != nil {
			b.Fatal(serr)
		}
		if cp, err := p.Checkpoint(ctx, name, 0); err != nil || cp != catchUpEvents {
			b.Fatalf("checkpoint %d, %v; want %d", cp, err, catchUpEvents)
		}
		return d, cpu, st
	}
	b.Run("pgstore", func(b *testing.B) { measureCatchUps(b, catchUpEvents, readAll, once) })
}

// catchUpMode is a configuration of the runner that BenchmarkCatchUp compares; check tells
// whether a Status taken at the end of a catch-up shows the configuration in force.
type catchUpMode struct {
	name  string
	opts  *projection.RunnerOptions
	check func(projection.Status) error
}

var catchUpModes = []catchUpMode{
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

// measureCatchUps warms up (a raw read and a catch-up of the last mode), then runs, in every
// iteration, a raw read (readAll) and one catch-up of each of catchUpModes (once), the first
// mode rotating between iterations, so that none is always first; each catch-up is of events
// events. It reports each mode's rate and CPU per event, the raw read's rate and, with two
// modes, the ratio of the first mode's rate to the second's.
func measureCatchUps(b *testing.B, events int, readAll func(*testing.B) time.Duration, once func(*testing.B, *projection.RunnerOptions) (time.Duration, time.Duration, projection.Status)) {
	readAll(b)
	once(b, catchUpModes[len(catchUpModes)-1].opts)
	took := make([]time.Duration, len(catchUpModes))
	cpu := make([]time.Duration, len(catchUpModes))
	var raw time.Duration
	n := 0
	for b.Loop() {
		raw += readAll(b)
		for k := range catchUpModes {
			i := (n + k) % len(catchUpModes)
			d, used, st := once(b, catchUpModes[i].opts)
			if err := catchUpModes[i].check(st); err != nil {
				b.Fatalf("%s: %v", catchUpModes[i].name, err)
			}
			took[i], cpu[i] = took[i]+d, cpu[i]+used
		}
		n++
	}
	total := float64(n * events)
	for i, m := range catchUpModes {
		b.ReportMetric(total/took[i].Seconds(), m.name+"-events/s")
		b.ReportMetric(float64(cpu[i].Microseconds())/total, m.name+"-cpu-µs/event")
	}
	b.ReportMetric(total/raw.Seconds(), "raw-read-events/s")
	if len(catchUpModes) == 2 {
		b.ReportMetric(took[1].Seconds()/took[0].Seconds(), catchUpModes[0].name+"/"+catchUpModes[1].name)
	}
	b.ReportMetric(0, "ns/op")
}

// cpuTime returns the CPU time (user and system) the process has used.
func cpuTime(b *testing.B) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
