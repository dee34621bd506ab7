package natsbus

import (
	"errors"
	"slices"
	"strings"
	"testing"

	"github.com/annalsdb/annals"
	"github.com/annalsdb/annals/bridge"
	"github.com/nats-io/nats.go/jetstream"
)

func TestHeader(t *testing.T) {
	id := annals.NewUUID()
	msg := &bridge.Message{ID: id, Headers: []bridge.Header{
		{Key: "annals-type", Value: []byte("Added")},
		{Key: "x", Value: []byte("1")},
		{Key: "annals-stream", Value: []byte("")},
		{Key: "x", Value: []byte("2")},
	}}
	h := header(msg, []string{"EVENTS"})
	for key, want := range map[string][]string{
		"annals-type": {"Added"}, "x": {"1", "2"}, "annals-stream": {""}, jetstream.MsgIDHeader: {id.String()},
		jetstream.ExpectedStreamHeader: {"EVENTS"},
	} {
		if got := h[key]; !slices.Equal(got, want) {
			t.Errorf("header %s = %q, want %q", key, got, want)
		}
	}
	if len(h) != 5 {
		t.Errorf("header has %d keys, want 5: %v", len(h), h)
	}
	if h := header(&bridge.Message{}, nil); len(h) != 0 {
		t.Errorf("header of a message without headers nor id = %v, want empty", h)
	}
}

func TestMatch(t *testing.T) {
	for _, tc := range []struct {
		pattern, subject string
		want             bool
	}{
		{"events.>", "events.cart.cart-1", true},
		{"events.>", "events.cart", true},
		{"events.>", "events", false},
		{"events.*", "events.cart", true},
		{"events.*", "events.cart.x", false},
		{"events.*.x", "events.cart.x", true},
		{"events.*.x", "events.cart.y", false},
		{"events.cart", "events.cart", true},
		{"events.cart", "events.carts", false},
		{"events.cart", "events", false},
		{">", "a", true},
		{"*", "a.b", false},
		{"a.b", "a..b", false},
	} {
		if got := match(tc.pattern, tc.subject); got != tc.want {
			t.Errorf("match(%q, %q) = %v, want %v", tc.pattern, tc.subject, got, tc.want)
		}
	}
}

// TestDeliverNothingAfterAFailure: once a message of the consumer fails, the messages after it
// are not handed to Fetch, which would otherwise append them and record progress past the one
// that failed.
func TestDeliverNothingAfterAFailure(t *testing.T) {
	s := &Source{source: "nats:S"}
	msgs, stop, failed := make(chan bridge.Incoming, 4), make(chan struct{}), make(chan struct{})
	s.deliver(bridge.Incoming{Offset: 1}, nil, msgs, stop, failed)
	s.deliver(bridge.Incoming{}, errors.New("message metadata: bad reply subject"), msgs, stop, failed)
	s.deliver(bridge.Incoming{Offset: 3}, nil, msgs, stop, failed)
	var got []uint64
	for len(msgs) > 0 {
		got = append(got, (<-msgs).Offset)
	}
	if !slices.Equal(got, []uint64{1}) {
		t.Errorf("handed over %v, want [1]: nothing after the message that failed", got)
	}
	select {
	case <-failed:
	default:
		t.Error("the failure did not close failed")
	}
	if s.mu.err == nil || !strings.Contains(s.mu.err.Error(), "bad reply subject") {
		t.Errorf("feed error %v, want the message's", s.mu.err)
	}
}
