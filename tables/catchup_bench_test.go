package tables_test

import (
	"context"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/annalsdb/annals"
	"github.com/annalsdb/annals/filestore"
	"github.com/annalsdb/annals/internal/catchuptest"
	"github.com/annalsdb/annals/projection"
	"github.com/annalsdb/annals/tables"
)

// BenchmarkCatchUp: a runner catches up with a filestore log of catchUpEvents small events
// (appends of 100 over 1,000 streams) into a tables.DB (the counter projection of the tests:
// a row per stream and a total, read and written for every event), with the default batch
// (projection.DefaultMaxBatch). Each iteration reads the log raw (ReadAll, the baseline) and
// runs one catch-up of each of catchuptest.Modes, in an order that rotates between iterations:
// "lease" runs under the default supervision (the lease of tables.DB, checked with the
// checkpoint in every Update, and compare-and-set checkpoints), "no-lease" with
// Supervision.NoLease (compare-and-set checkpoints only). Each catch-up is into a new DB, from
// position 0. It reports each mode's rate and the process's CPU per event, and
// lease/no-lease, the ratio of their rates.
//
//	go test -run '^$' -bench 'BenchmarkCatchUp$' -benchtime 3x ./tables
//
// docs/BENCHMARKS.md compares it with the runner before leases and compare-and-set.
func BenchmarkCatchUp(b *testing.B) {
	s := catchUpLog(b)
	once := func(b *testing.B, opts *projection.RunnerOptions) (time.Duration, time.Duration, projection.Status) {
		dir, err := osMkdirTemp()
		if err != nil {
			b.Fatal(err)
		}
		defer os.RemoveAll(dir)
		db, err := tables.Open(filepath.Join(dir, "tables"), nil)
		if err != nil {
			b.Fatal(err)
		}
		defer db.Close()
		c := newCounter(b, db)
		p := c.projection()
		p.Filter = nil
		r, err := projection.NewRunner(s, db, p, opts)
		if err != nil {
			b.Fatal(err)
		}
		d, cpu, st := catchuptest.Run(b, r, catchUpEvents)
		if total, _, _ := c.total.Get(context.Background(), "all"); total != catchUpEvents {
			b.Fatalf("total %d, want %d", total, catchUpEvents)
		}
		return d, cpu, st
	}
	b.Run("filestore", func(b *testing.B) {
		catchuptest.Measure(b, catchUpEvents, func(b *testing.B) time.Duration { return catchuptest.ReadAll(b, s, catchUpEvents) }, once)
	})
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
