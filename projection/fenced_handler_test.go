package projection_test

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"

	"github.com/annalsdb/annals"
	"github.com/annalsdb/annals/lease"
	"github.com/annalsdb/annals/projection"
)

// A handler whose write is refused because the runner's lease is lost (a store that fences
// the handler's writes with the lease its context carries) is not a failure of the event: the
// runner does not park on it as failed, but stands by as after any lost lease, and applies
// the event when it holds the lease again.
func TestHandlerLostLeaseIsNotAFailure(t *testing.T) {
	s := newMem(t)
	m := projection.NewMemory(newCounts)
	var lost atomic.Bool
	lost.Store(true)
	r, err := projection.NewRunner(s, m, projection.Projection[*counts]{Name: "counts", Handle: func(ctx context.Context, c *counts, ev annals.RecordedEvent) error {
		if ev.Type == "Fenced" && lost.CompareAndSwap(true, false) {
			return fmt.Errorf("write the read model: %w", lease.ErrLost)
		}
		return countHandler(ctx, c, ev)
	}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	start(t, r)
	head := appendN(t, s, streams("acct", 1), "Fenced", 1)
	if err := r.WaitFor(waitCtx(t), head); err != nil {
		st, _ := r.Status(context.Background())
		t.Fatalf("WaitFor: %v (status %+v)", err, st)
	}
	waitState(t, r, "live, with no error", func(st projection.Status) bool {
		return st.State == projection.StateLive && st.FailedEvent == nil
	})
	if got, _ := readCounts(m, "counts"); got.total != 1 {
		t.Fatalf("counter %d, want 1", got.total)
	}
}
