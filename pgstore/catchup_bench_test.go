package pgstore_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/annalsdb/annals"
	"github.com/annalsdb/annals/internal/catchuptest"
	"github.com/annalsdb/annals/pgstore"
	"github.com/annalsdb/annals/projection"
	"github.com/jackc/pgx/v5"
)

// BenchmarkCatchUp: a runner catches up with a log of catchUpEvents events (200-byte JSON,
// appends of 100 over 100 streams) into pgstore.Projections in the store's database, with the
// default batch (projection.DefaultMaxBatch, each batch one transaction with its checkpoint)
// and a handler that writes nothing, so that what is measured is the runner, the
// transactions, the checkpoints and the fence. Each iteration reads the log raw (ReadAll, the
// baseline) and runs one catch-up of each of catchuptest.Modes, in an order that rotates between
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
	readAll := func(b *testing.B) time.Duration { return catchuptest.ReadAll(b, s, catchUpEvents) }
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
		d, cpu, st := catchuptest.Run(b, r, catchUpEvents)
		if cp, err := p.Checkpoint(ctx, name, 0); err != nil || cp != catchUpEvents {
			b.Fatalf("checkpoint %d, %v; want %d", cp, err, catchUpEvents)
		}
		return d, cpu, st
	}
	b.Run("pgstore", func(b *testing.B) { catchuptest.Measure(b, catchUpEvents, readAll, once) })
}
