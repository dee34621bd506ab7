package filestore

import (
	"bytes"
	"testing"

	"github.com/annalsdb/annals"
)

// FuzzDecodeRecord checks that any bytes either decode to a record that re-encodes to the
// same bytes, or give an error; never a panic.
func FuzzDecodeRecord(f *testing.F) {
	e := annals.Event{ID: annals.NewUUID(), Type: "ItemAdded", ContentType: annals.ContentTypeJSON, Data: []byte(`{"sku":"a"}`), Metadata: []byte(`{}`)}
	f.Add(appendRecord(nil, 7, 3, 1234, "cart-1", &e))
	f.Add([]byte{})
	f.Add(make([]byte, 80))
	f.Fuzz(func(t *testing.T, b []byte) {
		rec, err := decodeRecord(b)
		if err != nil {
			return
		}
		again := appendRecord(nil, rec.pos, rec.rev, rec.nanos, string(rec.stream), &annals.Event{
			ID: rec.id, Type: string(rec.typ), ContentType: string(rec.contentType), Data: rec.data, Metadata: rec.meta,
		})
		if !bytes.Equal(again, b[:rec.size]) {
			t.Fatalf("re-encoding differs")
		}
	})
}

// FuzzParseGroupHeader checks that a header that parses re-encodes to the same bytes.
func FuzzParseGroupHeader(f *testing.F) {
	b := make([]byte, groupHeaderSize)
	putGroupHeader(b, groupHeader{bodyLen: 100, count: 2, synced: 40, firstPos: 9})
	f.Add(b)
	f.Add(make([]byte, groupHeaderSize))
	f.Fuzz(func(t *testing.T, b []byte) {
		h, ok := parseGroupHeader(b)
		if !ok {
			return
		}
		again := make([]byte, groupHeaderSize)
		putGroupHeader(again, h)
		if !bytes.Equal(again[:32], b[:32]) {
			t.Fatalf("re-encoding differs")
		}
	})
}
