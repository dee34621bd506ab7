package relay

import (
	"context"
	"strings"
	"testing"

	"github.com/annalsdb/annals/internal/testwait"
	"github.com/annalsdb/annals/memstore"
	"github.com/annalsdb/annals/projection"
)

// When another holder moves the checkpoint (two replicas without a lease), the relay's write
// is refused: it starts again from the stored checkpoint instead of moving it back.
func TestRelayCheckpointMovedRestarts(t *testing.T) {
	s := memstore.New(nil)
	t.Cleanup(func() { s.Close() })
	opts := testOptions(t, "orders")
	opts.Policy.NoLease = true
	p := newTestPub(t)
	r := newRelay(t, s, p, opts)
	start(t, r)
	first := appendUser(t, s, 10, 2)
	waitAcked(t, p, first)
	testwait.Until(t, "the checkpoint at the first batch", func() bool {
		return storedCheckpoint(t, s, "orders") >= first[9].Position
	})
	p.stall()
	second := appendUser(t, s, 10, 2)
	testwait.Until(t, "the second batch in flight", func() bool { return p.heldCount() == 10 })
	// Another holder publishes up to the fifth event of the second batch and says so.
	ctx := context.Background()
	cps := projection.NewCheckpoints[struct{}](s, nil)
	cp := storedCheckpoint(t, s, "orders")
	if err := cps.Update(ctx, "relay-orders", 0, cp, second[4].Position, noop); err != nil {
		t.Fatal(err)
	}
	before := len(p.logged())
	p.release()
	testwait.Until(t, "the refused write reported", func() bool {
		return strings.Contains(r.Status().LastError, "checkpoint moved")
	})
	third := appendUser(t, s, 5, 2)
	waitAcked(t, p, third)
	testwait.Until(t, "the checkpoint at the last event", func() bool {
		return storedCheckpoint(t, s, "orders") >= third[4].Position
	})
	after := p.logged()[before:]
	if len(after) == 0 || after[0].position != second[5].Position {
		t.Errorf("after the other holder's checkpoint, the relay published %v first, want the event at %d", after[:min(1, len(after))], second[5].Position)
	}
}
