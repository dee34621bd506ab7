package filestore

import (
	"context"
	"testing"

	"github.com/annalsdb/annals"
)

func TestSmoke(t *testing.T) {
	dir := t.TempDir()
	ctx := context.Background()
	s, err := Open(dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 10; i++ {
		res, err := s.Append(ctx, "cart-1", annals.Any, annals.Event{Type: "ItemAdded", Data: []byte(`{"a":1}`)})
		if err != nil {
			t.Fatal(err)
		}
		if res.Revision != uint64(i) || res.Position != uint64(i+1) {
			t.Fatalf("got %+v", res)
		}
	}
	n := 0
	for ev, err := range s.ReadStream(ctx, "cart-1", nil) {
		if err != nil {
			t.Fatal(err)
		}
		if ev.Revision != uint64(n) {
			t.Fatalf("rev %d want %d", ev.Revision, n)
		}
		n++
	}
	if n != 10 {
		t.Fatalf("read %d", n)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s, err = Open(dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	n = 0
	for ev, err := range s.ReadAll(ctx, &annals.ReadOptions{Backwards: true, From: annals.End}) {
		if err != nil {
			t.Fatal(err)
		}
		if ev.Position != uint64(10-n) {
			t.Fatalf("pos %d", ev.Position)
		}
		n++
	}
	if n != 10 {
		t.Fatalf("read %d", n)
	}
	_, err = s.Append(ctx, "cart-1", annals.NoStream, annals.Event{Type: "X"})
	if !errorsIs(err, annals.ErrWrongExpectedVersion) {
		t.Fatalf("err %v", err)
	}
}
