package codec_test

import (
	"bytes"
	"errors"
	"testing"

	"github.com/annalsdb/annals"
	"github.com/annalsdb/annals/codec"
)

// FuzzParseMetadata: ParseMetadata never panics, fails only with ErrDecode, and what it
// accepts round-trips through Marshal to the same metadata and the same bytes.
func FuzzParseMetadata(f *testing.F) {
	for _, s := range []string{
		``, `{}`, `null`, `[]`, `{"$schemaVersion":2}`, `{"$schemaVersion":0}`, `{"$schemaVersion":1.5}`,
		`{"$correlationId":"c","$causationId":"d","$idempotencyKey":"k","x":{"a":[1,2]}}`,
		`{"$correlationId":7}`, `{"a":1,"a":2}`, `{"\u0024schemaVersion":3}`, ` { "t" : "\u00e9" } `,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		md, err := codec.ParseMetadata(b)
		if err != nil {
			if !errors.Is(err, codec.ErrDecode) {
				t.Fatalf("ParseMetadata(%q): error %v does not match ErrDecode", b, err)
			}
			return
		}
		out, err := md.Marshal()
		if err != nil {
			t.Fatalf("Marshal of parsed %q: %v", b, err)
		}
		md2, err := codec.ParseMetadata(out)
		if err != nil {
			t.Fatalf("ParseMetadata(Marshal(ParseMetadata(%q))) = %q: %v", b, out, err)
		}
		out2, err := md2.Marshal()
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(out, out2) {
			t.Fatalf("round trip of %q is not stable: %q then %q", b, out, out2)
		}
	})
}

// FuzzDecode: Decode never panics on any stored event and fails only with the documented
// errors; a decoded value re-encodes and decodes to the same value.
func FuzzDecode(f *testing.F) {
	reg := codec.New(nil)
	if err := codec.Register[ItemAdded](reg, "ItemAdded", &codec.TypeOptions{Version: 3, Upcasters: []codec.Upcaster{
		{From: 1, Up: func(b []byte) ([]byte, error) { return b, nil }},
		{From: 2, Up: func(b []byte) ([]byte, error) {
			if len(b) > 0 && b[0] == 'x' {
				return nil, errors.New("refused")
			}
			return b, nil
		}},
	}}); err != nil {
		f.Fatal(err)
	}
	f.Add("ItemAdded", []byte(`{"sku":"a","qty":1}`), []byte(`{"$schemaVersion":3}`))
	f.Add("ItemAdded", []byte(`{"sku":"a"}`), []byte(``))
	f.Add("ItemAdded", []byte(`x`), []byte(`{"$schemaVersion":2}`))
	f.Add("ItemAdded", []byte(`{}`), []byte(`{"$schemaVersion":9}`))
	f.Add("Other", []byte(`{}`), []byte(`{}`))
	f.Fuzz(func(t *testing.T, typ string, data, meta []byte) {
		ev := annals.RecordedEvent{Type: typ, Data: data, Metadata: meta, Stream: "s"}
		v, _, err := codec.Decode[ItemAdded](reg, ev)
		if err != nil {
			if !errors.Is(err, codec.ErrDecode) && !errors.Is(err, codec.ErrUnknownType) {
				t.Fatalf("Decode: error %v matches neither ErrDecode nor ErrUnknownType", err)
			}
			return
		}
		enc, err := reg.Encode(v, codec.Metadata{})
		if err != nil {
			t.Fatalf("Encode(%+v): %v", v, err)
		}
		v2, _, err := codec.Decode[ItemAdded](reg, annals.RecordedEvent{Type: enc.Type, Data: enc.Data, Metadata: enc.Metadata})
		if err != nil || v2 != v {
			t.Fatalf("re-decode: got %+v, %v; want %+v", v2, err, v)
		}
	})
}
