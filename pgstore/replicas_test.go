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
