package filestore

import (
	"context"
	"errors"
	"testing"

	"github.com/annalsdb/annals"
)

// TestFailedStoreChecksContextFirst: after a storage failure has stopped the store, a call
// with a cancelled context still returns the context's error, as the order of checks says
// (the context before whether the store is open) and as every backend does.
func TestFailedStoreChecksContextFirst(t *testing.T) {
	dir := t.TempDir()
	fs := newFaultFS(t, dir)
	s, err := Open(dir, &Options{FS: fs})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	appendN(t, s, "cart-1", 1)
	fs.failSyncs.Store(true)
	if _, err := s.Append(context.Background(), "cart-1", annals.Any, annals.Event{Type: "Lost"}); !errors.Is(err, annals.ErrClosed) {
		t.Fatalf("append after a failed sync: got %v, want ErrClosed", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	for _, tc := range []struct {
		what string
		call func() error
	}{
		{"Append", func() error { _, err := s.Append(ctx, "cart-1", annals.Any, annals.Event{Type: "A"}); return err }},
		{"SetMetadata", func() error { _, err := s.SetMetadata(ctx, "cart-1", annals.Any, annals.StreamMetadata{}); return err }},
		{"Delete", func() error { _, err := s.Delete(ctx, "cart-1", annals.Any); return err }},
		{"Tombstone", func() error { _, err := s.Tombstone(ctx, "cart-1", annals.Any); return err }},
	} {
		if err := tc.call(); !errors.Is(err, context.Canceled) {
			t.Errorf("%s with a cancelled context on a failed store: got %v, want context.Canceled", tc.what, err)
		}
	}
}
