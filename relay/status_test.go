package relay

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/annalsdb/annals"
	"github.com/annalsdb/annals/internal/testwait"
	"github.com/annalsdb/annals/memstore"
)

func TestRelayStatus(t *testing.T) {
	s := memstore.New(nil)
	t.Cleanup(func() { s.Close() })
	p := newTestPub(t)
	r := newRelay(t, s, p, testOptions(t, "orders"))
	if st := r.Status(); st.Name != "orders" || st.State != "stopped" || st.Target != "test broker" {
		t.Errorf("before Run: %+v", st)
	}
	start(t, r)
	evs := appendUser(t, s, 300, 3)
	last := evs[len(evs)-1].Position
	waitAcked(t, p, evs)
	testwait.Until(t, "the checkpoint stored", func() bool { return r.Status().Checkpoint >= last })
	st := r.Status()
	if st.State != "running" || st.Holder == "" || st.Published != 300 || st.Errors != 0 || st.InFlight != 0 ||
		st.Acked < last || st.Head < st.Acked || st.Lag != st.Head-st.Acked || st.LagSeconds != 0 || st.Rate <= 0 || st.Target != "test broker" {
		t.Errorf("after publishing 300 events: %+v", st)
	}
	b, err := json.Marshal(st)
	if err != nil {
		t.Fatal(err)
	}
	for _, field := range []string{`"name":"orders"`, `"state":"running"`, `"published":300`, `"target":"test broker"`} {
		if !strings.Contains(string(b), field) {
			t.Errorf("JSON %s lacks %s", b, field)
		}
	}
	// Head follows the store even when the filter leaves the new events out.
	p.stall()
	more := appendUser(t, s, 5, 1)
	testwait.Until(t, "the stalled events in flight", func() bool { return r.Status().InFlight == 5 })
	st = r.Status()
	if st.Lag == 0 || st.LagSeconds <= 0 || st.Head < more[4].Position {
		t.Errorf("with 5 events unanswered: lag %d, lagSeconds %v, head %d (want ≥ %d)", st.Lag, st.LagSeconds, st.Head, more[4].Position)
	}
	p.release()
}

// With a filter, events the relay has nothing to do with are no lag: Head moves on while
// Lag stays 0 once what passes the filter is acknowledged.
func TestRelayStatusLagWithFilter(t *testing.T) {
	s := memstore.New(nil)
	t.Cleanup(func() { s.Close() })
	opts := testOptions(t, "orders")
	opts.Filter = &annals.Filter{Categories: []string{"order"}}
	p := newTestPub(t)
	r := newRelay(t, s, p, opts)
	start(t, r)
	orders := appendTo(t, s, 10, func(i int) string { return "order-1" })
	carts := appendUser(t, s, 50, 2)
	waitAcked(t, p, orders)
	testwait.Until(t, "the head known", func() bool { return r.Status().Head >= carts[len(carts)-1].Position })
	if st := r.Status(); st.Lag != 0 || st.Acked != orders[9].Position {
		t.Errorf("caught up on orders, carts after: lag %d (want 0), acked %d (want %d), head %d", st.Lag, st.Acked, orders[9].Position, st.Head)
	}
	p.stall()
	late := appendTo(t, s, 1, func(i int) string { return "order-1" })[0]
	testwait.Until(t, "the late order in flight", func() bool { return r.Status().InFlight == 1 })
	if st := r.Status(); st.Lag != late.Position-st.Acked {
		t.Errorf("one order in flight: lag %d, want %d", st.Lag, late.Position-st.Acked)
	}
	p.release()
}
