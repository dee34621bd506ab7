package natsbus

import (
	"slices"
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
