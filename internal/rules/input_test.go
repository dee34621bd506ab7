package rules_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/annalsdb/annals"
	"github.com/annalsdb/annals/internal/rules"
)

func TestValidateAppend(t *testing.T) {
	var l annals.Limits
	ok := []annals.Event{{Type: "ItemAdded", Data: []byte(`{}`)}}
	dup := annals.NewUUID()
	for _, tc := range []struct {
		name   string
		stream string
		events []annals.Event
		want   error
	}{
		{"ok", "cart-1", ok, nil},
		{"empty stream", "", ok, annals.ErrInvalidArgument},
		{"long stream", strings.Repeat("x", 257), ok, annals.ErrInvalidArgument},
		{"control character", "cart\n1", ok, annals.ErrInvalidArgument},
		{"invalid UTF-8", "cart-\xff", ok, annals.ErrInvalidArgument},
		{"reserved", "$meta-cart-1", ok, annals.ErrInvalidArgument},
		{"$all", "$all", ok, annals.ErrInvalidArgument},
		{"no events", "cart-1", nil, annals.ErrInvalidArgument},
		{"empty type", "cart-1", []annals.Event{{}}, annals.ErrInvalidArgument},
		{"duplicate id", "cart-1", []annals.Event{{ID: dup, Type: "A"}, {ID: dup, Type: "B"}}, annals.ErrInvalidArgument},
		{"event too large", "cart-1", []annals.Event{{Type: "A", Data: make([]byte, 1<<20)}}, annals.ErrTooLarge},
		{"append too large", "cart-1", make17Events(), annals.ErrTooLarge},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := rules.ValidateAppend(l, tc.stream, annals.Any, tc.events)
			if !errors.Is(err, tc.want) || (tc.want == nil) != (err == nil) {
				t.Fatalf("got %v, want %v", err, tc.want)
			}
		})
	}
	events := []annals.Event{{Type: "A"}}
	got, err := rules.ValidateAppend(l, "cart-1", annals.Any, events)
	if err != nil {
		t.Fatal(err)
	}
	if got[0].ID.IsZero() || got[0].ContentType != annals.ContentTypeJSON {
		t.Fatalf("ValidateAppend returned id %s and content type %q; want them filled in", got[0].ID, got[0].ContentType)
	}
	if !events[0].ID.IsZero() || events[0].ContentType != "" {
		t.Fatalf("ValidateAppend changed the caller's event to id %s, content type %q; want it left as it was", events[0].ID, events[0].ContentType)
	}
}

func make17Events() []annals.Event {
	out := make([]annals.Event, 17)
	for i := range out {
		out[i] = annals.Event{Type: "A", Data: make([]byte, 1<<20-100)}
	}
	return out
}
