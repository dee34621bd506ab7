package bridge

import (
	"errors"
	"strings"
	"testing"

	"github.com/annalsdb/annals"
)

func TestParseTemplate(t *testing.T) {
	for _, tc := range []struct {
		in      string
		want    []part
		wantErr string // a part of the error; "" means no error
	}{
		{in: "events", want: []part{{literal: "events"}}},
		{in: "events.{category}", want: []part{{literal: "events."}, {field: "category"}}},
		{in: "{stream}", want: []part{{field: "stream"}}},
		{in: "a{type}b{stream}{key}{subject}", want: []part{{literal: "a"}, {field: "type"}, {literal: "b"}, {field: "stream"}, {field: "key"}, {field: "subject"}}},
		{in: "", wantErr: "empty template"},
		{in: "events.{category", wantErr: `unclosed "{" at byte 7`},
		{in: "{", wantErr: "unclosed"},
		{in: "a}b", wantErr: `"}" at byte 1 closes no placeholder`},
		{in: "{stream}}", wantErr: `at byte 8 closes no placeholder`},
		{in: "{}", wantErr: "unknown placeholder {}"},
		{in: "{Stream}", wantErr: "unknown placeholder {Stream}"},
		{in: "x.{id}", wantErr: "unknown placeholder {id}"},
		{in: "{a{stream}", wantErr: "unknown placeholder {a{stream}"},
	} {
		got, err := ParseTemplate(tc.in)
		if tc.wantErr != "" {
			if err == nil || !errors.Is(err, annals.ErrInvalidArgument) || !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("ParseTemplate(%q) error = %v, want one matching ErrInvalidArgument containing %q", tc.in, err, tc.wantErr)
			}
			if err != nil && !strings.Contains(err.Error(), "{stream}, {category}, {type}") {
				t.Errorf("ParseTemplate(%q) error %q does not list the known placeholders", tc.in, err)
			}
			continue
		}
		if err != nil {
			t.Errorf("ParseTemplate(%q): %v", tc.in, err)
			continue
		}
		if got.String() != tc.in || got.IsZero() {
			t.Errorf("ParseTemplate(%q) = %q (zero %v)", tc.in, got.String(), got.IsZero())
		}
		if len(got.parts) != len(tc.want) {
			t.Errorf("ParseTemplate(%q) parts = %+v, want %+v", tc.in, got.parts, tc.want)
			continue
		}
		for i := range tc.want {
			if got.parts[i] != tc.want[i] {
				t.Errorf("ParseTemplate(%q) parts = %+v, want %+v", tc.in, got.parts, tc.want)
				break
			}
		}
	}
	if !(Template{}).IsZero() {
		t.Error("Template{}.IsZero() = false")
	}
}

func mustTemplate(t testing.TB, s string) Template {
	t.Helper()
	tm, err := ParseTemplate(s)
	if err != nil {
		t.Fatal(err)
	}
	return tm
}

func TestSubject(t *testing.T) {
	long := strings.Repeat("x", 300)
	for _, tc := range []struct {
		bus            Bus
		tmpl           string
		stream, typ    string
		want           string
		wantErrMatches bool
	}{
		{Kafka, "events.{category}", "cart-42", "Added", "events.cart", false},
		{Kafka, "events.{stream}", "cart-42", "Added", "events.cart-42", false},
		{Kafka, "{category}.{type}", "order-1", "Order Placed/v2", "order.Order_Placed_v2", false},
		{Kafka, "ev ents.{stream}", "héllo-1", "T", "ev_ents.h__llo-1", false},
		{Kafka, "{type}", "s", ".", "_", false},
		{Kafka, "{type}", "s", "..", "__", false},
		{Kafka, "{stream}{type}", "s", "...", "s...", false},
		{Kafka, "{type}", "s", "", "", true},
		{NATS, "events.{category}.{stream}", "cart-42", "Added", "events.cart.cart-42", false},
		{NATS, "events.{category}.{stream}", "a.b*c>d e\tf", "T", "events.a_b_c_d_e_f.a_b_c_d_e_f", false},
		{NATS, "events.{type}", "s", "", "events._", false},
		{NATS, "events.{stream}", "héllo", "T", "events.héllo", false},
		{NATS, "{category}.x", "a-b", "T", "a.x", false},
		{Bus(7), "x", "s", "T", "", true},
	} {
		ev := &annals.RecordedEvent{Stream: tc.stream, Type: tc.typ}
		got, err := mustTemplate(t, tc.tmpl).subject(tc.bus, relayValue(ev))
		if tc.wantErrMatches {
			if !errors.Is(err, annals.ErrInvalidArgument) {
				t.Errorf("%v %q (%q, %q): error %v, want ErrInvalidArgument", tc.bus, tc.tmpl, tc.stream, tc.typ, err)
			}
			continue
		}
		if err != nil || got != tc.want {
			t.Errorf("%v %q (%q, %q) = %q, %v; want %q", tc.bus, tc.tmpl, tc.stream, tc.typ, got, err, tc.want)
		}
	}

	// Long Kafka topics are cut to 249 bytes, and two long names that differ only past the cut
	// stay distinct.
	tm := mustTemplate(t, "events.{stream}")
	a, err := tm.subject(Kafka, relayValue(&annals.RecordedEvent{Stream: long + "a"}))
	if err != nil {
		t.Fatal(err)
	}
	b, err := tm.subject(Kafka, relayValue(&annals.RecordedEvent{Stream: long + "b"}))
	if err != nil {
		t.Fatal(err)
	}
	if len(a) != MaxKafkaTopicLength || len(b) != MaxKafkaTopicLength || a == b {
		t.Errorf("long topics: %d and %d bytes, equal %v; want %d bytes each, distinct", len(a), len(b), a == b, MaxKafkaTopicLength)
	}
	if !strings.HasPrefix(a, "events.xxx") {
		t.Errorf("long topic %q does not keep its start", a)
	}
	for _, c := range []byte(a) {
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '.' || c == '_' || c == '-') {
			t.Fatalf("long topic %q holds %q", a, c)
		}
	}
	exact := strings.Repeat("y", MaxKafkaTopicLength)
	if got, _ := mustTemplate(t, "{stream}").subject(Kafka, relayValue(&annals.RecordedEvent{Stream: exact})); got != exact {
		t.Errorf("a topic of exactly %d bytes was changed to %q", MaxKafkaTopicLength, got)
	}
}

func TestEncoderRefusesIngestPlaceholders(t *testing.T) {
	for _, s := range []string{"x.{key}", "{subject}"} {
		e := Encoder{Subject: mustTemplate(t, s)}
		if err := e.Validate(); !errors.Is(err, annals.ErrInvalidArgument) || !strings.Contains(err.Error(), s[strings.IndexByte(s, '{'):]) {
			t.Errorf("Validate with subject %q: %v, want ErrInvalidArgument naming the placeholder", s, err)
		}
		if _, err := e.Encode(&annals.RecordedEvent{Stream: "s", Type: "T"}); !errors.Is(err, annals.ErrInvalidArgument) {
			t.Errorf("Encode with subject %q: %v, want ErrInvalidArgument", s, err)
		}
	}
	for _, s := range []string{"events.>", "events.*.{stream}", "a b.{stream}", ".{stream}", "{stream}.", "a..{stream}", "x.{stream}..y", "."} {
		e := Encoder{Subject: mustTemplate(t, s), Bus: NATS}
		if err := e.Validate(); !errors.Is(err, annals.ErrInvalidArgument) || !strings.Contains(err.Error(), "NATS subject template") {
			t.Errorf("NATS subject %q: Validate = %v, want ErrInvalidArgument", s, err)
		}
		if err := (&Encoder{Subject: e.Subject, Bus: Kafka}).Validate(); err != nil {
			t.Errorf("Kafka topic %q: Validate = %v (Kafka topics are made safe)", s, err)
		}
	}
	for _, s := range []string{"events.{category}.{stream}", "{stream}", "a.b-c_d.{type}x.{stream}", "ünï.{stream}"} {
		if err := (&Encoder{Subject: mustTemplate(t, s), Bus: NATS}).Validate(); err != nil {
			t.Errorf("NATS subject %q: Validate = %v", s, err)
		}
	}
	for _, e := range []Encoder{{}, {Subject: mustTemplate(t, "x"), Format: 3}, {Subject: mustTemplate(t, "x"), Bus: 2}} {
		if err := e.Validate(); !errors.Is(err, annals.ErrInvalidArgument) {
			t.Errorf("Validate(%+v) = %v, want ErrInvalidArgument", e, err)
		}
	}
}
