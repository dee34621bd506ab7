package tables_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
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

// A stale Update is refused with the typed error and writes nothing, rows or checkpoint; a
// checkpoint never moves backwards; an Update of a generation dropped meanwhile is refused.
func TestUpdateIsCompareAndSet(t *testing.T) {
	ctx := context.Background()
	db := openDB(t, t.TempDir())
	tb := mustTable[int](t, db, "p", "t")
	put := func(k string, v int) func(*tables.Tx) error {
		return func(tx *tables.Tx) error { return tb.Put(tx, k, v) }
	}
	if err := db.Update(ctx, "p", 0, 0, 5, put("a", 1)); err != nil {
		t.Fatal(err)
	}
	conflict := func(err error, gen, expected, actual uint64) {
		t.Helper()
		ce, ok := errors.AsType[*projection.CheckpointConflictError](err)
		want := projection.CheckpointConflictError{Projection: "p", Generation: gen, Expected: expected, Actual: actual}
		if !errors.Is(err, projection.ErrCheckpointMoved) || !ok || *ce != want {
			t.Fatalf("stale Update: %v, want %+v", err, want)
		}
	}
	conflict(db.Update(ctx, "p", 0, 0, 7, put("b", 2)), 0, 0, 5)
	conflict(db.Update(ctx, "p", 0, 3, 9, put("b", 2)), 0, 3, 5)
	if err := db.Update(ctx, "p", 0, 5, 3, put("b", 2)); !errors.Is(err, projection.ErrInvalid) {
		t.Fatalf("Update from 5 to 3: %v, want projection.ErrInvalid", err)
	}
	if got := keys(t, tb, nil); !slices.Equal(got, []string{"a"}) {
		t.Fatalf("rows after refused updates: %v, want only a", got)
	}
	if cp, err := db.Checkpoint(ctx, "p", 0); err != nil || cp != 5 {
		t.Fatalf("checkpoint %d (%v), want 5", cp, err)
	}
	// Another replica activates generation 1, which drops 0: a runner still on 0 is refused.
	if err := db.Activate(ctx, "p", 1); err != nil {
		t.Fatal(err)
	}
	conflict(db.Update(ctx, "p", 0, 5, 8, put("c", 3)), 0, 5, 0)
	if cp, _ := db.Checkpoint(ctx, "p", 0); cp != 0 {
		t.Fatalf("a refused Update revived generation 0 at checkpoint %d", cp)
	}
}

// Updates racing from the same checkpoint: exactly one commits.
func TestConcurrentUpdatesOneCommits(t *testing.T) {
	ctx := context.Background()
	db := openDB(t, t.TempDir())
	tb := mustTable[int](t, db, "p", "t")
	var wg sync.WaitGroup
	errs := make([]error, 8)
	for i := range errs {
		wg.Go(func() {
			errs[i] = db.Update(ctx, "p", 0, 0, uint64(i+1), func(tx *tables.Tx) error {
				n, _, err := tb.Read(tx, "n")
				if err != nil {
					return err
				}
				return tb.Put(tx, "n", n+1)
			})
		})
	}
	wg.Wait()
	ok := 0
	for _, err := range errs {
		switch {
		case err == nil:
			ok++
		case !errors.Is(err, projection.ErrCheckpointMoved):
			t.Fatal(err)
		}
	}
	if n, _, _ := tb.Get(ctx, "n"); ok != 1 || n != 1 {
		t.Fatalf("%d Updates from one checkpoint committed, counter %d; want 1 and 1", ok, n)
	}
}
