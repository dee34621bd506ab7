package filestore

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"syscall"
	"testing"

	"github.com/annalsdb/annals"
	"github.com/annalsdb/annals/internal/testwait"
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

// TestIndexFatalStopsReads: a failure Pebble reports through Fatalf stops reads as well as
// appends, since the index may be inconsistent; a resource failure keeps the process alive.
func TestIndexFatalStopsReads(t *testing.T) {
	s, err := Open(t.TempDir(), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	appendN(t, s, "cart-1", 3)
	sub := s.SubscribeAll(context.Background(), nil)
	subErr := make(chan error, 1)
	go func() {
		for _, err := range sub {
			if err != nil {
				subErr <- err
				return
			}
		}
		subErr <- nil
	}()
	pebbleLogger{log: s.log, s: s}.Fatalf("MANIFEST flush failed: %v", fmt.Errorf("write MANIFEST: %w", syscall.ENOSPC))
	want := func(what string, err error) {
		t.Helper()
		if !errors.Is(err, annals.ErrClosed) || !errors.Is(err, syscall.ENOSPC) {
			t.Errorf("%s after an index failure: got %v, want an error matching ErrClosed and ENOSPC", what, err)
		}
	}
	want("Ready", s.Ready())
	_, err = collectAll(s.ReadAll(context.Background(), nil))
	want("ReadAll", err)
	_, err = collectAll(s.ReadStream(context.Background(), "cart-1", nil))
	want("ReadStream", err)
	_, _, err = s.GetMetadata(context.Background(), "cart-1")
	want("GetMetadata", err)
	want("a running subscription", testwait.Recv(t, "the subscription to end", subErr))
}

// TestIndexFatalPanics: a fatal failure of the index whose cause is not a resource failure
// (a broken invariant, corruption) stops the store and panics, as Pebble's own logger ends
// the process.
func TestIndexFatalPanics(t *testing.T) {
	s, err := Open(t.TempDir(), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	func() {
		defer func() {
			if recover() == nil {
				t.Error("Fatalf for a broken invariant returned, want a panic")
			}
		}()
		pebbleLogger{log: s.log, s: s}.Fatalf("pebble: inconsistent sequence numbers %d > %d", 7, 3)
	}()
	if err := s.Ready(); !errors.Is(err, annals.ErrClosed) {
		t.Errorf("Ready after a fatal index failure: got %v, want ErrClosed", err)
	}
}

// TestCheckReportsIndexFatal: without a store (Check), Fatalf records the failure for Check
// to return instead of only logging it.
func TestCheckReportsIndexFatal(t *testing.T) {
	slot := &fatalSlot{}
	pebbleLogger{log: slog.Default(), fatal: slot}.Fatalf("read table: %v", fmt.Errorf("checksum mismatch: %w", syscall.EIO))
	if err := slot.get(); !errors.Is(err, syscall.EIO) {
		t.Fatalf("failure recorded for Check: got %v, want one matching EIO", err)
	}
}

func collectAll(seq func(func(annals.RecordedEvent, error) bool)) ([]annals.RecordedEvent, error) {
	var out []annals.RecordedEvent
	for e, err := range seq {
		if err != nil {
			return out, err
		}
		out = append(out, e)
	}
	return out, nil
}
