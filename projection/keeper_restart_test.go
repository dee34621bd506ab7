package projection_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/annalsdb/annals"
	"github.com/annalsdb/annals/projection"
	"github.com/annalsdb/annals/supervisor"
)

// TestCheckpointsAfterTheKeeperRestartedWithAnEarlierClock: a projection over Checkpoints
// (read model outside the stores, checkpoint in the event store) whose checkpoint was written
// under a token larger than any its keeper gives now (the keeper, in-process as memstore,
// filestore and `annals serve` keep them with tokens drawn from the clock, restarted on a
// clock an hour behind: a restored VM, another host) goes on: the runner holding the new,
// smaller token applies the events appended since, since the event store fences the append
// and Checkpoints then does not order tokens.
func TestCheckpointsAfterTheKeeperRestartedWithAnEarlierClock(t *testing.T) {
	s := newMem(t)
	p := projection.Projection[struct{}]{Name: "count", Handle: func(context.Context, struct{}, annals.RecordedEvent) error { return nil }}
	head := appendN(t, s, streams("acct", 2), "Deposited", 10)
	// The checkpoint as a holder of the keeper's earlier life left it.
	data := fmt.Sprintf(`{"checkpoint":%d,"holder":"before-the-restart","token":%d}`, head, uint64(time.Now().Add(time.Hour).UnixNano()))
	if _, err := s.Append(context.Background(), projection.CheckpointStreamPrefix+"count@0", annals.Any,
		annals.Event{Type: projection.CheckpointEventType, Data: []byte(data)}); err != nil {
		t.Fatal(err)
	}
	more := appendN(t, s, streams("acct", 2), "Deposited", 10)
	b, err := projection.NewRunner(s, projection.NewCheckpoints[struct{}](s, nil), p, &projection.RunnerOptions{
		Supervision: supervisor.Policy{TTL: time.Second, MinBackoff: time.Millisecond, MaxBackoff: 10 * time.Millisecond}})
	if err != nil {
		t.Fatal(err)
	}
	start(t, b)
	if err := b.WaitFor(waitCtx(t), more); err != nil {
		st, _ := b.Status(context.Background())
		t.Fatalf("WaitFor after the keeper restarted: %v (state %v, last error %v)", err, st.State, st.LastError)
	}
}
