package natsbus

import (
	"maps"
	"slices"
	"testing"

	"github.com/annalsdb/annals"
	"github.com/annalsdb/annals/bridge"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// TestFillReuse: a message filled again holds the new message's subject, value and headers
// only, and the header of its previous use is unchanged if someone kept a value.
func TestFillReuse(t *testing.T) {
	var o outMsg
	id1, id2 := annals.NewUUID(), annals.NewUUID()
	o.fill(&bridge.Message{Subject: "a.1", Value: []byte("v1"), ID: id1, Headers: []bridge.Header{
		{Key: "t", Value: []byte("Added")}, {Key: "x", Value: []byte("1")}, {Key: "x", Value: []byte("2")},
		{Key: "long", Value: []byte("a long value that the next use does not have")},
	}}, []string{"EVENTS"})
	o.fill(&bridge.Message{Subject: "a.2", Value: []byte("v2"), ID: id2, Headers: []bridge.Header{
		{Key: "t", Value: []byte("Removed")}, {Key: "x", Value: []byte("3")},
	}}, nil)
	want := nats.Header{"t": {"Removed"}, "x": {"3"}, jetstream.MsgIDHeader: {id2.String()}}
	if !maps.EqualFunc(o.msg.Header, want, slices.Equal) || o.msg.Subject != "a.2" || string(o.msg.Data) != "v2" {
		t.Errorf("reused message = %s %q %v, want a.2 \"v2\" %v", o.msg.Subject, o.msg.Data, o.msg.Header, want)
	}
	o.fill(&bridge.Message{Subject: "a.3"}, nil)
	if len(o.msg.Header) != 0 {
		t.Errorf("reused for a message without headers nor id: %v, want empty", o.msg.Header)
	}
}

// BenchmarkFill measures filling a reused message with the headers of an event.
func BenchmarkFill(b *testing.B) {
	msg := &bridge.Message{Subject: "events.cart.cart-1", Value: []byte(`{"n":1}`), ID: annals.NewUUID()}
	for _, k := range []string{bridge.HeaderID, bridge.HeaderType, bridge.HeaderStream, bridge.HeaderRevision,
		bridge.HeaderPosition, bridge.HeaderTime, bridge.HeaderContentType, bridge.HeaderCorrelationID,
		bridge.HeaderCausationID, bridge.HeaderTraceParent} {
		msg.Headers = append(msg.Headers, bridge.Header{Key: k, Value: []byte("0190f2b4-5c1e-7a3b-9d2e")})
	}
	var o outMsg
	expect := []string{"EVENTS"}
	b.ReportAllocs()
	for b.Loop() {
		o.fill(msg, expect)
	}
}
