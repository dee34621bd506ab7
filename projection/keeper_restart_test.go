package projection_test

import (
	"context"
	"testing"
	"time"

	"github.com/annalsdb/annals"
	"github.com/annalsdb/annals/lease"
	"github.com/annalsdb/annals/projection"
	"github.com/annalsdb/annals/supervisor"
)

// TestCheckpointsAfterTheKeeperRestartedWithAnEarlierClock: a projection over Checkpoints
// (read model outside the stores, checkpoint in the event store) whose checkpoint was written
// under a token of an in-process keeper (lease.Memory, as memstore, filestore and `annals
// serve` keep them: tokens drawn from the clock) goes on after that keeper restarted on a
// clock an hour behind (a restored VM, another host): the runner holding the new, smaller
// token applies the events appended since. Checkpoints orders tokens, so it refuses every
// Update of the new holder as if it had lost its lease, until the clock catches up.
func TestCheckpointsAfterTheKeeperRestartedWithAnEarlierClock(t *testing.T) {
	s := newMem(t)
	p := projection.Projection[struct{}]{Name: "count", Handle: func(context.Context, struct{}, annals.RecordedEvent) error { return nil }}
	runner := func(k lease.Keeper) *projection.Runner[struct{}] {
		r, err := projection.NewRunner(s, projection.NewCheckpoints[struct{}](s, nil), p, &projection.RunnerOptions{
			Supervision: supervisor.Policy{Keeper: k, TTL: time.Second, MinBackoff: time.Millisecond, MaxBackoff: 10 * time.Millisecond}})
		if err != nil {
			t.Fatal(err)
		}
		return r
	}
	head := appendN(t, s, streams("acct", 2), "Deposited", 10)
	a := runner(lease.NewMemory(nil))
	stopA := start(t, a)
	if err := a.WaitFor(waitCtx(t), head); err != nil {
		t.Fatal(err)
	}
	if err := stopA(); err == nil {
		t.Fatal("Run returned nil")
	}
	more := appendN(t, s, streams("acct", 2), "Deposited", 10)
	b := runner(lease.NewMemory(func() time.Time { return time.Now().Add(-time.Hour) }))
	start(t, b)
	if err := b.WaitFor(waitCtx(t), more); err != nil {
		st, _ := b.Status(context.Background())
		t.Fatalf("WaitFor after the keeper restarted: %v (state %v, last error %v)", err, st.State, st.LastError)
	}
}
