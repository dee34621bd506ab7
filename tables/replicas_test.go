package tables_test

import (
	"context"
	"errors"
	"fmt"
	"testing"

	"github.com/annalsdb/annals"
	"github.com/annalsdb/annals/internal/teststores"
	"github.com/annalsdb/annals/internal/testwait"
	"github.com/annalsdb/annals/projection"
	"github.com/annalsdb/annals/tables"
	"github.com/google/go-cmp/cmp"
)

// TestTwoRunnersApplyEachEventOnce is the double-apply reproduction on tables: two runners of
// one projection over one DB (two replicas of a service), 100 events, one counter. The read
// model counts 100, and neither runner stops.
func TestTwoRunnersApplyEachEventOnce(t *testing.T) {
	teststores.Each(t, func(t *testing.T, s annals.Store) {
		db := openDB(t, t.TempDir())
		c := newCounter(t, db)
		deposit(t, s, 50)
		var runners []*projection.Runner[*tables.Tx]
		var stops []func() error
		for range 2 {
			r, err := projection.NewRunner(s, db, c.projection(), &projection.RunnerOptions{MaxBatch: 7})
			if err != nil {
				t.Fatal(err)
			}
			runners = append(runners, r)
			stops = append(stops, runInBackground(t, r))
		}
		head := deposit(t, s, 50)
		ctx := testwait.Context(t)
		for _, r := range runners {
			if err := r.WaitFor(ctx, head); err != nil {
				t.Fatal(err)
			}
		}
		want := singlePass(t, s)
		if want["$total"] != 100 {
			t.Fatalf("the log holds %d deposits, want 100", want["$total"])
		}
		if got := c.rows(t); !cmp.Equal(want, got) {
			t.Fatalf("two runners: read model %v, want %v", got, want)
		}
		if cp, err := db.Checkpoint(ctx, "counter", 0); err != nil || cp != head {
			t.Fatalf("checkpoint %d (%v), want %d", cp, err, head)
		}
		for _, stop := range stops {
			if err := stop(); !errors.Is(err, context.Canceled) {
				t.Fatalf("Run: %v, want context.Canceled", err)
			}
		}
	})
}

// deposit appends n events to the streams acct-0, acct-1 and acct-2, one per append, and
// returns the last position.
func deposit(t testing.TB, s annals.Store, n int) uint64 {
	t.Helper()
	var last uint64
	for i := range n {
		res, err := s.Append(context.Background(), fmt.Sprintf("acct-%d", i%3), annals.Any, annals.Event{Type: "Deposited", Data: []byte(`{}`)})
		if err != nil {
			t.Fatal(err)
		}
		last = res.Position
	}
	return last
}
