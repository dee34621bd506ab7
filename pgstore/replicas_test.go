package pgstore_test

import (
	"context"
	"errors"
	"fmt"
	"testing"

	"github.com/annalsdb/annals"
	"github.com/annalsdb/annals/pgstore"
	"github.com/annalsdb/annals/projection"
	"github.com/google/go-cmp/cmp"
)

// TestProjectionsTwoRunnersApplyEachEventOnce is the double-apply reproduction: two runners of
// one projection, each with its own Projections (two replicas of a service), 100 events, one
// counter. The read model counts 100, and neither runner stops.
func TestProjectionsTwoRunnersApplyEachEventOnce(t *testing.T) {
	s := openStore(t, nil)
	deposit(t, s, 50)
	var runners []*projection.Runner[*pgstore.ProjectionTx]
	var stops []func() error
	var c *counter
	for range 2 {
		c = newCounter(s)
		r := c.runner(t, &projection.RunnerOptions{MaxBatch: 7})
		runners = append(runners, r)
		stops = append(stops, runInBackground(t, r))
	}
	head := deposit(t, s, 50)
	ctx := waitCtx(t)
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
	if cp, err := c.p.Checkpoint(ctx, "counter", 0); err != nil || cp != head {
		t.Fatalf("checkpoint %d (%v), want %d", cp, err, head)
	}
	for _, stop := range stops {
		if err := stop(); !errors.Is(err, context.Canceled) {
			t.Fatalf("Run: %v, want context.Canceled", err)
		}
	}
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

// A stale Update is refused with the typed error, without calling fn, and changes nothing;
// a checkpoint never moves backwards; two replicas' Updates from one checkpoint: one commits.
func TestProjectionsUpdateIsCompareAndSet(t *testing.T) {
	s := openStore(t, nil)
	ctx := t.Context()
	c := newCounter(s)
	other := newCounter(s) // another replica's Projections
	called := false
	write := func(tx *pgstore.ProjectionTx) error {
		called = true
		_, err := tx.Tx.Exec(ctx, "INSERT INTO "+tx.Schema()+".counts AS c VALUES ('x', 1) ON CONFLICT (stream) DO UPDATE SET n = c.n + 1")
		return err
	}
	if err := c.p.Update(ctx, "counter", 0, 0, 5, write); err != nil {
		t.Fatal(err)
	}
	conflict := func(err error, gen, expected, actual uint64) {
		t.Helper()
		ce, ok := errors.AsType[*projection.CheckpointConflictError](err)
		want := projection.CheckpointConflictError{Projection: "counter", Generation: gen, Expected: expected, Actual: actual}
		if !errors.Is(err, projection.ErrCheckpointMoved) || !ok || *ce != want {
			t.Fatalf("stale Update: %v, want %+v", err, want)
		}
	}
	called = false
	conflict(other.p.Update(ctx, "counter", 0, 0, 7, write), 0, 0, 5)
	conflict(other.p.Update(ctx, "counter", 0, 3, 9, write), 0, 3, 5)
	// A generation that does not exist is at 0, and a refused Update does not create it.
	conflict(other.p.Update(ctx, "counter", 1, 5, 9, write), 1, 5, 0)
	if err := other.p.Update(ctx, "counter", 0, 5, 3, write); !errors.Is(err, projection.ErrInvalid) {
		t.Fatalf("Update from 5 to 3: %v, want projection.ErrInvalid", err)
	}
	if called {
		t.Error("a refused Update called fn")
	}
	if cp, err := c.p.Checkpoint(ctx, "counter", 0); err != nil || cp != 5 {
		t.Fatalf("checkpoint %d (%v), want 5", cp, err)
	}
	if got := c.rows(t); got["x"] != 1 {
		t.Fatalf("rows after refused updates: %v, want x at 1", got)
	}
	if got := schemas(t, s); len(got) != 1 {
		t.Fatalf("generation schemas %q, want generation 0's only", got)
	}

	// Racing Updates from checkpoint 5: one commits, the others are refused.
	errs := make(chan error, 6)
	for i := range cap(errs) {
		p := c.p
		if i%2 == 1 {
			p = other.p
		}
		go func() {
			errs <- p.Update(ctx, "counter", 0, 5, uint64(10+i), func(tx *pgstore.ProjectionTx) error {
				_, err := tx.Tx.Exec(ctx, "UPDATE "+tx.Schema()+".counts SET n = n + 1 WHERE stream = 'x'")
				return err
			})
		}()
	}
	ok := 0
	for range cap(errs) {
		switch err := <-errs; {
		case err == nil:
			ok++
		case !errors.Is(err, projection.ErrCheckpointMoved):
			t.Fatal(err)
		}
	}
	if got := c.rows(t); ok != 1 || got["x"] != 2 {
		t.Fatalf("%d racing Updates committed, x at %d; want 1 and 2", ok, got["x"])
	}
}
