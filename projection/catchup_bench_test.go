package projection_test

import (
	"context"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/annalsdb/annals"
	"github.com/annalsdb/annals/internal/catchuptest"
	"github.com/annalsdb/annals/memstore"
	"github.com/annalsdb/annals/projection"
)

// BenchmarkCatchUp: a runner catches up with a memstore log of catchUpEvents small events
// (appends of 100 over 1,000 streams) into a projection.Memory that counts events per
// stream, with the default batch (projection.DefaultMaxBatch). Each iteration reads the log
// raw (ReadAll, the baseline) and runs one catch-up of each of catchuptest.Modes, in an order that
// rotates between iterations: "lease" runs under the default supervision (the lease of
// projection.Memory, checked in every Update, and compare-and-set checkpoints), "no-lease"
// with Supervision.NoLease (compare-and-set checkpoints only). Each catch-up is into a new
// Memory, from position 0. It reports each mode's rate and the process's CPU per event, and
// lease/no-lease, the ratio of their rates.
//
//	go test -run '^$' -bench 'BenchmarkCatchUp$' -benchtime 5x ./projection
//
// docs/BENCHMARKS.md compares it with the runner before leases and compare-and-set.
func BenchmarkCatchUp(b *testing.B) {
	s := catchUpLog(b)
	once := func(b *testing.B, opts *projection.RunnerOptions) (time.Duration, time.Duration, projection.Status) {
		mem := projection.NewMemory(func() map[string]int { return map[string]int{} })
		r, err := projection.NewRunner(s, mem, projection.Projection[map[string]int]{
			Name: "catch-up",
			Handle: func(_ context.Context, counts map[string]int, ev annals.RecordedEvent) error {
				counts[ev.Stream]++
				return nil
			},
		}, opts)
		if err != nil {
			b.Fatal(err)
		}
		d, cpu, st := catchuptest.Run(b, r, catchUpEvents)
		mem.Read("catch-up", func(c map[string]int, cp uint64) {
			if len(c) != 1000 || c["acct-0"] != catchUpEvents/1000 || cp != catchUpEvents {
				b.Fatalf("%d streams counted, acct-0 %d, checkpoint %d", len(c), c["acct-0"], cp)
			}
		})
		return d, cpu, st
	}
	b.Run("memstore", func(b *testing.B) {
		catchuptest.Measure(b, catchUpEvents, func(b *testing.B) time.Duration { return catchuptest.ReadAll(b, s, catchUpEvents) }, once)
	})
}

const catchUpEvents = 1_000_000

var catchUpStore struct {
	once sync.Once
	s    annals.Store
	err  error
}

// catchUpLog returns a memstore holding catchUpEvents events (built once per process), in
// appends of 100 events over 1,000 streams of category acct.
func catchUpLog(b *testing.B) annals.Store {
	catchUpStore.once.Do(func() {
		s := memstore.New(nil)
		evs := make([]annals.Event, 100)
		for i := range catchUpEvents / 100 {
			for j := range evs {
				evs[j] = annals.Event{Type: "Deposited", Data: []byte(`{"amount":10}`)}
			}
			if _, err := s.Append(context.Background(), "acct-"+strconv.Itoa(i%1000), annals.Any, evs...); err != nil {
				catchUpStore.err = err
				return
			}
		}
		catchUpStore.s = s
	})
	if catchUpStore.err != nil {
		b.Fatal(catchUpStore.err)
	}
	return catchUpStore.s
}
