package pgstore_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/annalsdb/annals"
	"github.com/annalsdb/annals/pgstore"
	"github.com/annalsdb/annals/projection"
)

// BenchmarkProjectionCatchUp: a projection runner catches up with a log of 50,000 events into
// a read model in the same database, each batch (up to 1,024 events) one transaction with its
// checkpoint, beside the same run's raw read of $all (ReadAll from the start), which bounds
// it. "upsert" runs one INSERT … ON CONFLICT DO UPDATE per event (a row per stream); "noop"
// writes nothing, measuring the runner, the transactions and the checkpoints. b.N is the
// number of catch-ups of each (each a new projection name, so a fresh generation).
//
//	go test -run '^$' -bench ProjectionCatchUp -benchtime 3x ./pgstore
func BenchmarkProjectionCatchUp(b *testing.B) {
	const events = 50_000
	s := openStore(b, nil)
	ctx := b.Context()
	for i := range events / 100 {
		if _, err := s.Append(ctx, fmt.Sprintf("acct-%d", i%100), annals.Any, benchEvents(100)...); err != nil {
			b.Fatal(err)
		}
	}
	p := pgstore.NewProjections(s, &pgstore.ProjectionsOptions{Setup: counterSetup})
	upsert := func(ctx context.Context, tx *pgstore.ProjectionTx, ev annals.RecordedEvent) error {
		_, err := tx.Tx.Exec(ctx, "INSERT INTO "+tx.Schema()+".counts AS c VALUES ($1, 1) ON CONFLICT (stream) DO UPDATE SET n = c.n + 1", ev.Stream)
		return err
	}
	noop := func(context.Context, *pgstore.ProjectionTx, annals.RecordedEvent) error { return nil }
	for _, h := range []struct {
		name   string
		handle func(context.Context, *pgstore.ProjectionTx, annals.RecordedEvent) error
	}{{"upsert", upsert}, {"noop", noop}} {
		b.Run(h.name, func(b *testing.B) {
			var rawTime, projTime time.Duration
			for i := range b.N {
				t0 := time.Now()
				n := 0
				for _, err := range s.ReadAll(ctx, nil) {
					if err != nil {
						b.Fatal(err)
					}
					n++
				}
				if n != events {
					b.Fatalf("ReadAll: %d events", n)
				}
				rawTime += time.Since(t0)

				name := fmt.Sprintf("%s-%d", h.name, i)
				r, err := projection.NewRunner(s, p, projection.Projection[*pgstore.ProjectionTx]{Name: name, Handle: h.handle}, nil)
				if err != nil {
					b.Fatal(err)
				}
				t0 = time.Now()
				runCtx, cancel := context.WithCancel(ctx)
				done := make(chan error, 1)
				go func() { done <- r.Run(runCtx) }()
				err = r.WaitFor(ctx, events)
				projTime += time.Since(t0)
				cancel()
				<-done
				if err != nil {
					b.Fatal(err)
				}
				if cp, err := p.Checkpoint(ctx, name, 0); err != nil || cp != events {
					b.Fatalf("checkpoint %d, %v; want %d", cp, err, events)
				}
			}
			total := float64(b.N * events)
			b.ReportMetric(total/projTime.Seconds(), "events/s")
			b.ReportMetric(total/rawTime.Seconds(), "raw-read-events/s")
			b.ReportMetric(rawTime.Seconds()/projTime.Seconds(), "x-raw")
		})
	}
}
