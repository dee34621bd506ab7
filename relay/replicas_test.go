package relay

import (
	"testing"
	"time"

	"github.com/annalsdb/annals/internal/testwait"
	"github.com/annalsdb/annals/memstore"
	"github.com/annalsdb/annals/supervisor"
)

// Two replicas of one relay on one store that keeps leases: one publishes while the other
// stands by; when the first stops, the second takes over from the checkpoint, and between
// them each event is acknowledged, deduplicated by id, once.
func TestRelayReplicasTakeOver(t *testing.T) {
	s := memstore.New(nil)
	t.Cleanup(func() { s.Close() })
	policy := func(holder string) supervisor.Policy {
		return supervisor.Policy{Holder: holder, TTL: 200 * time.Millisecond, MinBackoff: time.Millisecond, MaxBackoff: 10 * time.Millisecond}
	}
	optsA, optsB := testOptions(t, "orders"), testOptions(t, "orders")
	optsA.Policy, optsB.Policy = policy("a"), policy("b")
	pa, pb := newTestPub(t), newTestPub(t)
	ra, rb := newRelay(t, s, pa, optsA), newRelay(t, s, pb, optsB)
	runA := start(t, ra)
	testwait.Until(t, "a running", func() bool { return ra.Status().State == "running" })
	start(t, rb)
	testwait.Until(t, "b standing by behind a", func() bool {
		st := rb.Status()
		return st.State == "standing-by" && st.Holder == "a"
	})
	first := appendUser(t, s, 200, 4)
	waitAcked(t, pa, first)
	pa.stall() // a's last messages stay unanswered: b must publish them again
	second := appendUser(t, s, 50, 4)
	testwait.Until(t, "a publishes the second batch", func() bool { return pa.heldCount() > 0 })
	if n := len(pb.logged()); n != 0 {
		t.Fatalf("b published %d messages while standing by", n)
	}
	if st := ra.Status(); st.Holder != "a" || st.State != "running" {
		t.Errorf("a's status: state %q holder %q", st.State, st.Holder)
	}
	if err := runA.stop(t); err != nil {
		t.Fatalf("a's Run: %v", err)
	}
	pa.release() // late answers of a stopped relay change nothing
	third := appendUser(t, s, 50, 4)
	all := append(append(first, second...), third...)
	waitAcked(t, pb, append(second, third...))
	ids := pa.ackedIDs()
	for id, n := range pb.ackedIDs() {
		ids[id] += n
	}
	for _, ev := range all {
		if ids[ev.ID] == 0 {
			t.Errorf("event %d never acknowledged", ev.Position)
		}
	}
	for _, m := range pb.logged() {
		if m.position <= first[len(first)-1].Position {
			t.Errorf("b published again the event at %d, acknowledged and checkpointed by a", m.position)
		}
	}
	if st := rb.Status(); st.State != "running" || st.Holder != "b" {
		t.Errorf("b's status: state %q holder %q", st.State, st.Holder)
	}
}
