package projection_test

import (
	"context"
	"errors"
	"testing"

	"github.com/annalsdb/annals"
	"github.com/annalsdb/annals/internal/teststores"
	"github.com/annalsdb/annals/projection"
)

// TestTwoRunnersApplyEachEventOnce is the double-apply reproduction: two runners of one
// projection over one Memory (two replicas of a service), 100 events, one counter. The read
// model counts 100, and neither runner stops.
func TestTwoRunnersApplyEachEventOnce(t *testing.T) {
	teststores.Each(t, func(t *testing.T, s annals.Store) {
		accts := streams("acct", 3)
		appendN(t, s, accts, "Deposited", 50)
		m := projection.NewMemory(newCounts)
		a := newCountRunner(t, s, m, nil, &projection.RunnerOptions{MaxBatch: 7})
		b := newCountRunner(t, s, m, nil, &projection.RunnerOptions{MaxBatch: 7})
		stopA, stopB := start(t, a), start(t, b)
		head := appendN(t, s, accts, "Deposited", 50)
		ctx := waitCtx(t)
		for _, r := range []*projection.Runner[*counts]{a, b} {
			if err := r.WaitFor(ctx, head); err != nil {
				t.Fatal(err)
			}
		}
		got, cp := readCounts(m, "counts")
		if got.total != 100 || cp != head {
			t.Fatalf("two runners: counter %d at checkpoint %d, want 100 at %d", got.total, cp, head)
		}
		compareCounts(t, got, expected(t, s, nil))
		for _, stop := range []func() error{stopA, stopB} {
			if err := stop(); !errors.Is(err, context.Canceled) {
				t.Fatalf("Run: %v, want context.Canceled", err)
			}
		}
	})
}
