package codec_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/annalsdb/annals"
	"github.com/annalsdb/annals/codec"
	"github.com/annalsdb/annals/internal/teststores"
)

// The shapes of one event type through three schema versions.
type nameV3 struct {
	First string `json:"first"`
	Last  string `json:"last"`
	Title string `json:"title"`
}

type otherEvent struct{ N int }

type cartEvent interface{ isCart() }

func (ItemAdded) isCart() {}

func jsonUp(f func(map[string]any)) func([]byte) ([]byte, error) {
	return func(b []byte) ([]byte, error) {
		var m map[string]any
		if err := json.Unmarshal(b, &m); err != nil {
			return nil, err
		}
		f(m)
		return json.Marshal(m)
	}
}

func nameRegistry(t *testing.T) *codec.Registry {
	t.Helper()
	reg := codec.New(nil)
	err := codec.Register[nameV3](reg, "NameSet", &codec.TypeOptions{Version: 3, Upcasters: []codec.Upcaster{
		// v2 → v3 listed first: order in the list does not matter, only From.
		{From: 2, Up: jsonUp(func(m map[string]any) { m["title"] = "none" })},
		// v1 had one "name" field: "First Last".
		{From: 1, Up: jsonUp(func(m map[string]any) {
			first, last, _ := strings.Cut(fmt.Sprint(m["name"]), " ")
			m["first"], m["last"] = first, last
			delete(m, "name")
		})},
	}})
	if err != nil {
		t.Fatal(err)
	}
	return reg
}

func TestUpcasterChainThroughStores(t *testing.T) {
	teststores.Each(t, func(t *testing.T, s annals.Store) {
		ctx := context.Background()
		reg := nameRegistry(t)
		cur, err := reg.Encode(nameV3{First: "Ada", Last: "Lovelace", Title: "Countess"}, codec.Metadata{CorrelationID: "c1"})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := s.Append(ctx, "person-1", annals.NoStream,
			annals.Event{Type: "NameSet", Data: []byte(`{"name":"Grace Hopper"}`)}, // v1, no metadata at all
			annals.Event{Type: "NameSet", Data: []byte(`{"first":"Alan","last":"Turing"}`), Metadata: []byte(`{"$schemaVersion":2}`)},
			cur,
		); err != nil {
			t.Fatal(err)
		}
		var got []nameV3
		var versions []int
		for rec, err := range s.ReadStream(ctx, "person-1", nil) {
			if err != nil {
				t.Fatal(err)
			}
			v, md, err := codec.Decode[nameV3](reg, rec)
			if err != nil {
				t.Fatal(err)
			}
			got = append(got, v)
			versions = append(versions, md.SchemaVersion)
		}
		want := []nameV3{{"Grace", "Hopper", "none"}, {"Alan", "Turing", "none"}, {"Ada", "Lovelace", "Countess"}}
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("decoded (-want +got):\n%s", diff)
		}
		if diff := cmp.Diff([]int{0, 2, 3}, versions); diff != "" {
			t.Errorf("stored schema versions (-want +got):\n%s", diff)
		}
	})
}

var errBoom = errors.New("boom")

func TestDecodeErrors(t *testing.T) {
	reg := nameRegistry(t)
	if err := codec.Register[ItemAdded](reg, "ItemAdded", nil); err != nil {
		t.Fatal(err)
	}
	failing := codec.New(nil)
	if err := codec.Register[ItemAdded](failing, "ItemAdded", &codec.TypeOptions{Version: 2, Upcasters: []codec.Upcaster{
		{From: 1, Up: func([]byte) ([]byte, error) { return nil, errBoom }},
	}}); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		reg  *codec.Registry
		ev   annals.RecordedEvent
		want error
	}{
		{"unknown type", reg, annals.RecordedEvent{Type: "Nope", Data: []byte(`{}`)}, codec.ErrUnknownType},
		{"bad metadata", reg, annals.RecordedEvent{Type: "ItemAdded", Data: []byte(`{}`), Metadata: []byte(`[1]`)}, codec.ErrDecode},
		{"bad body", reg, annals.RecordedEvent{Type: "ItemAdded", Data: []byte(`{"qty":"x"}`)}, codec.ErrDecode},
		{"future version", reg, annals.RecordedEvent{Type: "ItemAdded", Data: []byte(`{}`), Metadata: []byte(`{"$schemaVersion":2}`)}, codec.ErrDecode},
		{"zero version", reg, annals.RecordedEvent{Type: "ItemAdded", Data: []byte(`{}`), Metadata: []byte(`{"$schemaVersion":0}`)}, codec.ErrDecode},
		{"content type", reg, annals.RecordedEvent{Type: "ItemAdded", ContentType: "application/x-protobuf", Data: []byte(`{}`)}, codec.ErrDecode},
		{"failing upcaster", failing, annals.RecordedEvent{Type: "ItemAdded", Data: []byte(`{}`)}, codec.ErrDecode},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, _, err := tt.reg.Decode(tt.ev)
			if !errors.Is(err, tt.want) {
				t.Fatalf("Decode: got %v, want an error matching %v", err, tt.want)
			}
		})
	}

	// The cause is wrapped beside the sentinel: a caller can match the upcaster's error or the
	// codec's own.
	_, _, err := failing.Decode(annals.RecordedEvent{Type: "ItemAdded", Data: []byte(`{}`)})
	if !errors.Is(err, errBoom) {
		t.Errorf("Decode with a failing upcaster: got %v, want it to wrap the upcaster's error", err)
	}
	_, _, err = reg.Decode(annals.RecordedEvent{Type: "ItemAdded", Data: []byte(`{"qty":"x"}`)})
	if _, ok := errors.AsType[*json.UnmarshalTypeError](err); !ok {
		t.Errorf("Decode of a bad body: got %v, want it to wrap the *json.UnmarshalTypeError", err)
	}
	_, _, err = reg.Decode(annals.RecordedEvent{Type: "ItemAdded", Data: []byte(`{}`), Metadata: []byte(`[1]`)})
	if _, ok := errors.AsType[*json.UnmarshalTypeError](err); !ok {
		t.Errorf("Decode of bad metadata: got %v, want it to wrap the *json.UnmarshalTypeError", err)
	}

	// An unknown type carries its name, so a caller may report what it skipped.
	_, _, err = reg.Decode(annals.RecordedEvent{Type: "Nope"})
	if ute, ok := errors.AsType[*codec.UnknownTypeError](err); !ok || ute.Type != "Nope" {
		t.Errorf("Decode unknown: got %#v, want *UnknownTypeError{Type: \"Nope\"}", err)
	}
	// A registered event of another Go type than asked for.
	_, _, err = codec.Decode[otherEvent](reg, annals.RecordedEvent{Type: "ItemAdded", Data: []byte(`{}`)})
	if ute, ok := errors.AsType[*codec.UnknownTypeError](err); !ok || ute.GoType != "codec_test.otherEvent" {
		t.Errorf("Decode[otherEvent] of ItemAdded: got %v, want an UnknownTypeError naming codec_test.otherEvent", err)
	}
	// Decoding to an interface the event implements works.
	v, _, err := codec.Decode[cartEvent](reg, annals.RecordedEvent{Type: "ItemAdded", Data: []byte(`{"sku":"a","qty":2}`)})
	if err != nil || v != (ItemAdded{SKU: "a", Qty: 2}) {
		t.Errorf("Decode[cartEvent]: got %v, %v", v, err)
	}
}

func TestEncode(t *testing.T) {
	reg := nameRegistry(t)
	ev, err := reg.Encode(&nameV3{First: "a"}, codec.Metadata{SchemaVersion: 99, CausationID: "x", Extra: map[string]json.RawMessage{"tenant": json.RawMessage(` "acme" `)}})
	if err != nil {
		t.Fatal(err)
	}
	if ev.Type != "NameSet" || ev.ContentType != annals.ContentTypeJSON || !ev.ID.IsZero() {
		t.Errorf("Encode: type %q content type %q id %v", ev.Type, ev.ContentType, ev.ID)
	}
	if got, want := string(ev.Metadata), `{"$schemaVersion":3,"$causationId":"x","tenant":"acme"}`; got != want {
		t.Errorf("metadata: got %s, want %s", got, want)
	}
	if _, err := reg.Encode(otherEvent{}, codec.Metadata{}); !errors.Is(err, codec.ErrUnknownType) {
		t.Errorf("Encode of an unregistered type: got %v, want ErrUnknownType", err)
	}
	if _, err := reg.Encode(nil, codec.Metadata{}); !errors.Is(err, codec.ErrUnknownType) {
		t.Errorf("Encode(nil): got %v, want ErrUnknownType", err)
	}
	if _, err := reg.Encode(nameV3{}, codec.Metadata{Extra: map[string]json.RawMessage{codec.FieldCorrelationID: json.RawMessage(`"x"`)}}); !errors.Is(err, codec.ErrEncode) {
		t.Errorf("Encode with a reserved extra field: got %v, want ErrEncode", err)
	}
	if _, err := reg.Encode(nameV3{}, codec.Metadata{Extra: map[string]json.RawMessage{"x": json.RawMessage(`{`)}}); !errors.Is(err, codec.ErrEncode) {
		t.Errorf("Encode with invalid extra JSON: got %v, want ErrEncode", err)
	}
	if name, ok := reg.Name(nameV3{}); !ok || name != "NameSet" {
		t.Errorf("Name: got %q, %v", name, ok)
	}
	if v, ok := reg.Version("NameSet"); !ok || v != 3 {
		t.Errorf("Version: got %d, %v", v, ok)
	}
}

func TestRegisterErrors(t *testing.T) {
	up := func(b []byte) ([]byte, error) { return b, nil }
	tests := []struct {
		name string
		reg  func(r *codec.Registry) error
	}{
		{"empty name", func(r *codec.Registry) error { return codec.Register[otherEvent](r, "", nil) }},
		{"interface", func(r *codec.Registry) error { return codec.Register[cartEvent](r, "X", nil) }},
		{"name taken", func(r *codec.Registry) error { return codec.Register[otherEvent](r, "ItemAdded", nil) }},
		{"type taken", func(r *codec.Registry) error { return codec.Register[ItemAdded](r, "Other", nil) }},
		{"negative version", func(r *codec.Registry) error {
			return codec.Register[otherEvent](r, "O", &codec.TypeOptions{Version: -1})
		}},
		{"upcaster from current", func(r *codec.Registry) error {
			return codec.Register[otherEvent](r, "O", &codec.TypeOptions{Version: 2, Upcasters: []codec.Upcaster{{From: 2, Up: up}}})
		}},
		{"gap in chain", func(r *codec.Registry) error {
			return codec.Register[otherEvent](r, "O", &codec.TypeOptions{Version: 4, Upcasters: []codec.Upcaster{{From: 1, Up: up}, {From: 3, Up: up}}})
		}},
		{"duplicate from", func(r *codec.Registry) error {
			return codec.Register[otherEvent](r, "O", &codec.TypeOptions{Version: 3, Upcasters: []codec.Upcaster{{From: 2, Up: up}, {From: 2, Up: up}}})
		}},
		{"nil function", func(r *codec.Registry) error {
			return codec.Register[otherEvent](r, "O", &codec.TypeOptions{Version: 2, Upcasters: []codec.Upcaster{{From: 1}}})
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := codec.New(nil)
			if err := codec.Register[ItemAdded](r, "ItemAdded", nil); err != nil {
				t.Fatal(err)
			}
			if err := tt.reg(r); !errors.Is(err, codec.ErrInvalidRegistration) {
				t.Fatalf("got %v, want ErrInvalidRegistration", err)
			}
		})
	}
	// A chain that starts late is fine: events before it do not decode.
	r := codec.New(nil)
	if err := codec.Register[otherEvent](r, "O", &codec.TypeOptions{Version: 3, Upcasters: []codec.Upcaster{{From: 2, Up: up}}}); err != nil {
		t.Fatal(err)
	}
	if _, _, err := r.Decode(annals.RecordedEvent{Type: "O", Data: []byte(`{}`)}); !errors.Is(err, codec.ErrDecode) {
		t.Errorf("v1 event with a chain from 2: got %v, want ErrDecode", err)
	}
	if _, _, err := r.Decode(annals.RecordedEvent{Type: "O", Data: []byte(`{"N":1}`), Metadata: []byte(`{"$schemaVersion":2}`)}); err != nil {
		t.Errorf("v2 event: %v", err)
	}
}

// upperCodec is a non-JSON codec: JSON with a prefix, to show the codec is pluggable.
type upperCodec struct{}

func (upperCodec) ContentType() string { return "application/x-prefixed" }
func (upperCodec) Marshal(v any) ([]byte, error) {
	b, err := json.Marshal(v)
	return append([]byte("P:"), b...), err
}
func (upperCodec) Unmarshal(b []byte, v any) error {
	rest, ok := strings.CutPrefix(string(b), "P:")
	if !ok {
		return errors.New("no prefix")
	}
	return json.Unmarshal([]byte(rest), v)
}

func TestPluggableCodec(t *testing.T) {
	teststores.Each(t, func(t *testing.T, s annals.Store) {
		ctx := context.Background()
		reg := codec.New(&codec.Options{Codec: upperCodec{}})
		if err := codec.Register[ItemAdded](reg, "ItemAdded", nil); err != nil {
			t.Fatal(err)
		}
		ev, err := reg.Encode(ItemAdded{SKU: "x", Qty: 1}, codec.Metadata{})
		if err != nil {
			t.Fatal(err)
		}
		if !strings.HasPrefix(string(ev.Data), "P:") {
			t.Fatalf("body %q not encoded by the codec", ev.Data)
		}
		if _, err := s.Append(ctx, "c-1", annals.Any, ev); err != nil {
			t.Fatal(err)
		}
		for rec, err := range s.ReadStream(ctx, "c-1", nil) {
			if err != nil {
				t.Fatal(err)
			}
			if rec.ContentType != "application/x-prefixed" {
				t.Errorf("stored content type %q", rec.ContentType)
			}
			v, _, err := codec.Decode[ItemAdded](reg, rec)
			if err != nil || v != (ItemAdded{SKU: "x", Qty: 1}) {
				t.Errorf("Decode: %v, %v", v, err)
			}
			// A JSON registry refuses the other content type instead of misreading it.
			js := codec.New(nil)
			if err := codec.Register[ItemAdded](js, "ItemAdded", nil); err != nil {
				t.Fatal(err)
			}
			if _, _, err := js.Decode(rec); !errors.Is(err, codec.ErrDecode) {
				t.Errorf("JSON registry on a prefixed event: got %v, want ErrDecode", err)
			}
		}
	})
}

func TestMetadataRoundTrip(t *testing.T) {
	md := codec.Metadata{SchemaVersion: 2, CorrelationID: "c\"1", CausationID: "é", IdempotencyKey: "k",
		TraceParent: "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01", TraceState: "v=1",
		Extra: map[string]json.RawMessage{"b": json.RawMessage(`[1, 2]`), "a": json.RawMessage(`{"x": null}`)}}
	b, err := md.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	if got, want := string(b), `{"$schemaVersion":2,"$correlationId":"c\"1","$causationId":"é","$idempotencyKey":"k","$traceparent":"00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01","$tracestate":"v=1","a":{"x":null},"b":[1,2]}`; got != want {
		t.Errorf("Marshal: got %s, want %s", got, want)
	}
	back, err := codec.ParseMetadata(b)
	if err != nil {
		t.Fatal(err)
	}
	md.Extra = map[string]json.RawMessage{"b": json.RawMessage(`[1,2]`), "a": json.RawMessage(`{"x":null}`)}
	if diff := cmp.Diff(md, back); diff != "" {
		t.Errorf("round trip (-want +got):\n%s", diff)
	}
	for _, bad := range []string{`{"$correlationId":1}`, `{"$traceparent":1}`, `{"$tracestate":null}`, `{"$schemaVersion":"2"}`, `{"$schemaVersion":-1}`, `"x"`, `null`, `{`} {
		if _, err := codec.ParseMetadata([]byte(bad)); !errors.Is(err, codec.ErrDecode) {
			t.Errorf("ParseMetadata(%s): got %v, want ErrDecode", bad, err)
		}
	}
	if md, err := codec.ParseMetadata(nil); err != nil || !cmp.Equal(md, codec.Metadata{}) {
		t.Errorf("ParseMetadata(nil): got %+v, %v; want zero", md, err)
	}
}

func TestCausedBy(t *testing.T) {
	teststores.Each(t, func(t *testing.T, s annals.Store) {
		ctx := context.Background()
		reg := codec.New(nil)
		if err := codec.Register[ItemAdded](reg, "ItemAdded", nil); err != nil {
			t.Fatal(err)
		}
		root, _ := reg.Encode(ItemAdded{SKU: "a"}, codec.Metadata{})
		if _, err := s.Append(ctx, "c-1", annals.NoStream, root); err != nil {
			t.Fatal(err)
		}
		first := readOne(t, s, "c-1", 0)
		md1 := codec.CausedBy(first)
		if md1.CorrelationID != first.ID.String() || md1.CausationID != first.ID.String() {
			t.Fatalf("CausedBy(root): got %+v, want correlation = causation = %s", md1, first.ID)
		}
		next, _ := reg.Encode(ItemAdded{SKU: "b"}, md1)
		if _, err := s.Append(ctx, "c-1", annals.Exact(0), next); err != nil {
			t.Fatal(err)
		}
		second := readOne(t, s, "c-1", 1)
		md2 := codec.CausedBy(second)
		if md2.CorrelationID != first.ID.String() || md2.CausationID != second.ID.String() {
			t.Fatalf("CausedBy(second): got %+v, want correlation %s (the root's) and causation %s", md2, first.ID, second.ID)
		}
	})
}

func readOne(t *testing.T, s annals.Store, stream string, rev uint64) annals.RecordedEvent {
	t.Helper()
	for rec, err := range s.ReadStream(context.Background(), stream, &annals.ReadOptions{From: rev, Limit: 1}) {
		if err != nil {
			t.Fatal(err)
		}
		return rec
	}
	t.Fatalf("no event %s@%d", stream, rev)
	return annals.RecordedEvent{}
}

func TestConcurrentRegisterAndDecode(t *testing.T) {
	reg := codec.New(nil)
	if err := codec.Register[ItemAdded](reg, "ItemAdded", nil); err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	wg.Add(2)
	go func() {
		defer wg.Done()
		for i := 0; i < 200; i++ {
			if _, _, err := reg.Decode(annals.RecordedEvent{Type: "ItemAdded", Data: []byte(`{"qty":1}`)}); err != nil {
				t.Error(err)
				return
			}
		}
	}()
	go func() {
		defer wg.Done()
		if err := codec.Register[otherEvent](reg, "Other", nil); err != nil {
			t.Error(err)
		}
	}()
	wg.Wait()
	if _, ok := reg.Version("Other"); !ok {
		t.Error("Other not registered")
	}
}
