package filestore

// Regression tests: crash leftovers, rotation, eviction, and
// recovery that must never let the index damage the log.

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/annalsdb/annals"
	"github.com/cockroachdb/pebble/v2"
)

// A crash between creating the next segment file and sizing it leaves a 0-byte segment.
func TestEmptySegmentAfterCrashIsDropped(t *testing.T) {
	dir := t.TempDir()
	s, err := Open(dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	appendN(t, s, "a", 3)
	s.Close()
	// the file a crash after O_CREATE but before Truncate leaves
	f, err := os.Create(filepath.Join(dir, "log", segmentName(DefaultSegmentSize)))
	if err != nil {
		t.Fatal(err)
	}
	f.Close()
	s, err = Open(dir, nil)
	if err != nil {
		t.Fatalf("open: %v", err)
	}
	defer s.Close()
	_, err = s.Append(context.Background(), "a", annals.Any, annals.Event{Type: "X"})
	if err != nil {
		t.Fatalf("append after reopen: %v", err)
	}
}

// Retrying an append that was written near a segment's end rotates, then hangs.
func TestRepeatedAppendAcrossRotation(t *testing.T) {
	dir := t.TempDir()
	opts := &Options{Limits: annals.Limits{MaxEventSize: 256 << 10, MaxAppendSize: 256 << 10}, SegmentSize: 1536 << 10}
	s, err := Open(dir, opts)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	ctx := context.Background()
	data := make([]byte, 200<<10)
	var last annals.Event
	for i := range 7 {
		last = annals.Event{ID: annals.NewUUID(), Type: "Big", Data: data}
		if _, err := s.Append(ctx, "big", annals.Any, last); err != nil {
			t.Fatalf("append %d: %v", i, err)
		}
	}
	cctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	res, err := s.Append(cctx, "big", annals.Any, last)
	if err != nil || res.Revision != 6 {
		t.Fatalf("retry: got %+v, %v; want the first result (revision 6)", res, err)
	}
}

type slowFS struct{ OSFS }

func (fs slowFS) OpenFile(name string, flag int, perm os.FileMode) (File, error) {
	f, err := fs.OSFS.OpenFile(name, flag, perm)
	if err != nil {
		return nil, err
	}
	return slowFile{f}, nil
}

type slowFile struct{ File }

func (f slowFile) Datasync() error { time.Sleep(20 * time.Millisecond); return f.File.Datasync() }

// A stream state evicted during Tombstone's second lookup is reloaded without the tombstone.
func TestTombstoneSurvivesStateEviction(t *testing.T) {
	dir := t.TempDir()
	s, err := Open(dir, &Options{CachedStreams: 2, FS: slowFS{}})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	ctx := context.Background()
	bad := 0
	for i := range 20 {
		x := fmt.Sprintf("x-%d", i)
		appendN(t, s, x, 1)
		appendN(t, s, fmt.Sprintf("y-%d", i), 1)
		done := make(chan uint64)
		go func() {
			p, err := s.Tombstone(ctx, x, annals.Any)
			if err != nil {
				t.Error(err)
			}
			done <- p.Position
		}()
		// The pause makes the append likely to land inside Tombstone's window; the test waits
		// for nothing with it and its check holds whenever the append runs.
		time.Sleep(3 * time.Millisecond)
		res, err := s.Append(ctx, x, annals.Any, annals.Event{Type: "After"})
		tp := <-done
		if err == nil && res.Position > tp {
			bad++
			t.Logf("append to %s at position %d accepted after its tombstone at %d", x, res.Position, tp)
		}
	}
	if bad > 0 {
		t.Errorf("%d appends accepted after a tombstone", bad)
	}
}

// An index-side error during recovery is treated as a torn tail, zeroing acknowledged data.
func TestIndexErrorNeverTouchesTheLog(t *testing.T) {
	dir := t.TempDir()
	s, err := Open(dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	appendN(t, s, "a", 1)
	acked := appendN(t, s, "b", 1)
	s.Close()
	db, err := pebble.Open(filepath.Join(dir, "index"), &pebble.Options{})
	if err != nil {
		t.Fatal(err)
	}
	db.Set(stateKey("b"), []byte{1, 2, 3}, pebble.Sync) // a damaged derived entry
	db.Delete(watermarkKey, pebble.Sync)                // re-index (as after deleting part of the index)
	db.Close()
	s, err = Open(dir, nil)
	if err != nil {
		if !errors.Is(err, annals.ErrCorrupt) {
			t.Fatalf("open: got %v, want ErrCorrupt or success", err)
		}
		// Refusing to open is fine; what matters is that the log was not touched.
		if err := os.RemoveAll(filepath.Join(dir, "index")); err != nil {
			t.Fatal(err)
		}
		if s, err = Open(dir, nil); err != nil {
			t.Fatalf("open with a rebuilt index: %v", err)
		}
	}
	evs := readAllEvents(t, s)
	s.Close()
	if len(evs) < int(acked[0].Position) {
		t.Fatalf("%d events after reopen, want %d: an index error was treated as a torn tail", len(evs), acked[0].Position)
	}
}

func TestTornGroupIsDroppedWhole(t *testing.T) {
	dir := t.TempDir()
	s, err := Open(dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	acked := appendN(t, s, "cart-1", 5)
	s.Close()
	path, end := lastSegment(t, dir)
	g := make([]byte, groupHeaderSize)
	for i := range 3 {
		e := annals.Event{ID: annals.NewUUID(), Type: "Tick", Data: []byte(`{"x":1}`)}
		g = appendRecord(g, uint64(6+i), uint64(5+i), time.Now().UnixNano(), "cart-1", &e)
	}
	putGroupHeader(g, groupHeader{bodyLen: uint32(len(g) - groupHeaderSize), count: 3, synced: uint64(end), firstPos: 6})
	g[len(g)-3] ^= 0xFF // the last record's tail did not reach the disk
	writeAt(t, path, g, end)
	s, err = Open(dir, nil)
	if err != nil {
		t.Fatalf("open: %v", err)
	}
	var n int
	for _, err := range s.ReadAll(context.Background(), nil) {
		if err != nil {
			t.Errorf("read after torn-tail repair: %v", err)
			break
		}
		n++
	}
	if n != len(acked) {
		t.Errorf("read %d events, want the %d acknowledged", n, len(acked))
	}
	res, err := s.Append(context.Background(), "cart-1", annals.Any, annals.Event{Type: "Again"})
	if err != nil || res.Position != 6 {
		t.Errorf("next append: got %+v, %v; want position 6 (no gap)", res, err)
	}
	for _, err := range s.ReadAll(context.Background(), nil) {
		if err != nil {
			t.Errorf("read after next append: %v", err)
			break
		}
	}
	s.Close()
	if _, err := Check(context.Background(), dir); err != nil {
		t.Errorf("check: %v", err)
	}
}
