package server_test

import (
	"context"
	"testing"

	"github.com/annalsdb/annals"
	"github.com/google/go-cmp/cmp"
)

// TestConsumeIDs: joined names the consumer as the group's figures do, and a settle_error
// names, of the ids of its ack, those that were not in flight.
func TestConsumeIDs(t *testing.T) {
	f := newFixture(t, nil, nil)
	mustCreate(t, f, "g", "order-1")
	mustAppend(t, f.store, "order-1", 2)
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	st := f.groupRPC(nil).Consume(ctx)
	if err := st.Send(joinMsg("g", 2)); err != nil {
		t.Fatal(err)
	}
	m, err := st.Receive()
	if err != nil {
		t.Fatal(err)
	}
	id := m.GetJoined().GetConsumerId()
	svc, err := f.srv.Groups(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	info, err := svc.Info(t.Context(), "g")
	if err != nil {
		t.Fatal(err)
	}
	if id == "" || len(info.Consumers) != 1 || info.Consumers[0].ID != id {
		t.Errorf("joined consumer_id %q, the group's consumers %+v: want the one's id", id, info.Consumers)
	}

	got := receiveEvents(t, st, 2)
	stranger := annals.NewUUID().String()
	if err := st.Send(ackMsg(5, got[0].Event.Id, stranger, got[1].Event.Id)); err != nil {
		t.Fatal(err)
	}
	for {
		m, err := st.Receive()
		if err != nil {
			t.Fatal(err)
		}
		se := m.GetSettleError()
		if se == nil {
			continue
		}
		if se.Seq != 5 || se.Reason != "NOT_IN_FLIGHT" {
			t.Fatalf("got %v, want a settle_error seq 5 NOT_IN_FLIGHT", se)
		}
		if diff := cmp.Diff([]string{stranger}, se.NotInFlight); diff != "" {
			t.Errorf("not_in_flight (-want +got):\n%s", diff)
		}
		break
	}
	if info, err = svc.Info(t.Context(), "g"); err != nil {
		t.Fatal(err)
	}
	if info.Acked != 2 {
		t.Errorf("acked %d, want 2", info.Acked)
	}
}
