package filestore

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"

	"github.com/annalsdb/annals"
)

// faultFS is the operating system's file system with switches that make every later write or
// sync fail, as a full disk or a failing device would.
type faultFS struct {
	OSFS
	failWrites atomic.Bool // WriteAt returns ENOSPC
	failSyncs  atomic.Bool // Datasync returns EIO
}

func (fs *faultFS) OpenFile(name string, flag int, perm os.FileMode) (File, error) {
	f, err := fs.OSFS.OpenFile(name, flag, perm)
	if err != nil {
		return nil, err
	}
	return &faultFile{File: f, fs: fs}, nil
}

type faultFile struct {
	File
	fs *faultFS
}

func (f *faultFile) WriteAt(p []byte, off int64) (int, error) {
	if f.fs.failWrites.Load() {
		return 0, syscall.ENOSPC
	}
	return f.File.WriteAt(p, off)
}

func (f *faultFile) Datasync() error {
	if f.fs.failSyncs.Load() {
		return syscall.EIO
	}
	return f.File.Datasync()
}

func appendN(t *testing.T, s annals.Store, stream string, n int) []annals.AppendResult {
	t.Helper()
	var out []annals.AppendResult
	for i := range n {
		res, err := s.Append(context.Background(), stream, annals.Any, annals.Event{Type: "Tick", Data: []byte(`{"i":` + string(rune('0'+i%10)) + `}`)})
		if err != nil {
			t.Fatalf("append %d: %v", i, err)
		}
		out = append(out, res)
	}
	return out
}

func readAllEvents(t *testing.T, s annals.Store) []annals.RecordedEvent {
	t.Helper()
	var out []annals.RecordedEvent
	for ev, err := range s.ReadAll(context.Background(), nil) {
		if err != nil {
			t.Fatalf("read all: %v", err)
		}
		out = append(out, ev)
	}
	return out
}

// reopenAndVerify reopens dir with the real file system and checks that the first n events are
// the acknowledged ones and the directory checks out.
func reopenAndVerify(t *testing.T, dir string, acked []annals.AppendResult) {
	t.Helper()
	s, err := Open(dir, nil)
	if err != nil {
		t.Fatalf("reopen: %v", err)
	}
	evs := readAllEvents(t, s)
	if len(evs) < len(acked) {
		t.Fatalf("after reopen: %d events, want at least the %d acknowledged", len(evs), len(acked))
	}
	for i, res := range acked {
		if evs[i].Position != res.Position || evs[i].Revision != res.Revision {
			t.Fatalf("event %d: got position %d revision %d, want %d %d", i, evs[i].Position, evs[i].Revision, res.Position, res.Revision)
		}
	}
	if _, err := s.Append(context.Background(), "after", annals.NoStream, annals.Event{Type: "Again"}); err != nil {
		t.Fatalf("append after reopen: %v", err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if rep, err := Check(context.Background(), dir); err != nil || rep.TornTail != "" {
		t.Fatalf("check after reopen: %+v, %v", rep, err)
	}
}

func TestInjectedFaults(t *testing.T) {
	for _, tc := range []struct {
		name    string
		trigger func(*faultFS)
		want    string
	}{
		{"failed fdatasync", func(fs *faultFS) { fs.failSyncs.Store(true) }, "input/output error"},
		{"full disk", func(fs *faultFS) { fs.failWrites.Store(true) }, "no space left on device"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			fs := &faultFS{}
			s, err := Open(dir, &Options{FS: fs})
			if err != nil {
				t.Fatal(err)
			}
			acked := appendN(t, s, "cart-1", 10)
			tc.trigger(fs)
			_, err = s.Append(context.Background(), "cart-1", annals.Any, annals.Event{Type: "Lost"})
			if !errors.Is(err, annals.ErrClosed) || !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), "reopen") {
				t.Fatalf("append after the fault: got %v, want an ErrClosed saying %q and to reopen", err, tc.want)
			}
			// The store stays stopped, even once the fault is gone.
			fs.failSyncs.Store(false)
			fs.failWrites.Store(false)
			if _, err := s.Append(context.Background(), "cart-1", annals.Any, annals.Event{Type: "Lost"}); !errors.Is(err, annals.ErrClosed) {
				t.Fatalf("second append after the fault: got %v, want ErrClosed", err)
			}
			if got := readAllEvents(t, s); len(got) != len(acked) {
				t.Fatalf("reads after the fault: %d events, want %d", len(got), len(acked))
			}
			s.Close()
			reopenAndVerify(t, dir, acked)
		})
	}
}

// lastSegment returns the path of the newest log segment of dir and its used length.
func lastSegment(t *testing.T, dir string) (string, int64) {
	t.Helper()
	rep, err := Check(context.Background(), dir)
	if err != nil {
		t.Fatal(err)
	}
	paths, _ := filepath.Glob(filepath.Join(dir, "log", "*"+segmentExt))
	if len(paths) != 1 {
		t.Fatalf("want one segment, got %v", paths)
	}
	return paths[0], rep.Bytes
}

func TestTornTailIsRepaired(t *testing.T) {
	dir := t.TempDir()
	s, err := Open(dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	acked := appendN(t, s, "cart-1", 5)
	s.Close()
	path, end := lastSegment(t, dir)
	// A group whose header made it to disk but whose body did not, as a crash can leave.
	torn := make([]byte, groupHeaderSize+100)
	putGroupHeader(torn, groupHeader{bodyLen: 5000, count: 3, synced: uint64(end), firstPos: 6})
	for i := groupHeaderSize; i < len(torn); i++ {
		torn[i] = 0xA5
	}
	writeAt(t, path, torn, end)
	rep, err := Check(context.Background(), dir)
	if err != nil || rep.TornTail == "" {
		t.Fatalf("check before reopen: got %+v, %v; want a torn tail reported, no error", rep, err)
	}
	reopenAndVerify(t, dir, acked)
}

func TestCorruptionIsReported(t *testing.T) {
	dir := t.TempDir()
	s, err := Open(dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	appendN(t, s, "cart-1", 5)
	s.Close()
	path, _ := lastSegment(t, dir)
	// Flip a byte inside the first event's data.
	writeAt(t, path, []byte{0xFF}, groupHeaderSize+recordHeader+fixedPayload+10)

	_, err = Check(context.Background(), dir)
	if !errors.Is(err, annals.ErrCorrupt) || !strings.Contains(err.Error(), filepath.Base(path)) {
		t.Fatalf("check: got %v, want ErrCorrupt naming %s", err, filepath.Base(path))
	}
	s, err = Open(dir, nil)
	if err != nil {
		t.Fatalf("open: %v (the damage is in indexed data; reads report it)", err)
	}
	defer s.Close()
	var readErr error
	for _, err := range s.ReadStream(context.Background(), "cart-1", nil) {
		if err != nil {
			readErr = err
		}
	}
	if !errors.Is(readErr, annals.ErrCorrupt) || !strings.Contains(readErr.Error(), "offset") {
		t.Fatalf("read: got %v, want ErrCorrupt with the offset", readErr)
	}
}

func TestCorruptSyncedDataFailsOpen(t *testing.T) {
	dir := t.TempDir()
	s, err := Open(dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	appendN(t, s, "cart-1", 3) // three groups; each later one records the earlier as synced
	s.Close()
	path, _ := lastSegment(t, dir)
	if err := os.RemoveAll(filepath.Join(dir, "index")); err != nil {
		t.Fatal(err) // so that Open must recover the whole log
	}
	writeAt(t, path, []byte{0xFF}, groupHeaderSize+recordHeader+fixedPayload+10)
	_, err = Open(dir, nil)
	if !errors.Is(err, annals.ErrCorrupt) || !strings.Contains(err.Error(), "synced") {
		t.Fatalf("open: got %v, want ErrCorrupt (synced data damaged, not a torn tail)", err)
	}
}

func TestIndexRebuild(t *testing.T) {
	dir := t.TempDir()
	s, err := Open(dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	appendN(t, s, "cart-1", 7)
	appendN(t, s, "order-1", 3)
	if _, err := s.Delete(context.Background(), "order-1", annals.Any); err != nil {
		t.Fatal(err)
	}
	before := readAllEvents(t, s)
	s.Close()
	if err := os.RemoveAll(filepath.Join(dir, "index")); err != nil {
		t.Fatal(err)
	}
	s, err = Open(dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	after := readAllEvents(t, s)
	if len(after) != len(before) {
		t.Fatalf("after rebuild: %d events, want %d", len(after), len(before))
	}
	n := 0
	for _, err := range s.ReadAll(context.Background(), &annals.ReadOptions{Filter: &annals.Filter{Categories: []string{"cart"}}}) {
		if err != nil {
			t.Fatal(err)
		}
		n++
	}
	if n != 7 {
		t.Fatalf("category read after rebuild: %d events, want 7", n)
	}
	for _, err := range s.ReadStream(context.Background(), "order-1", nil) {
		if !errors.Is(err, annals.ErrStreamNotFound) {
			t.Fatalf("deleted stream after rebuild: got %v, want ErrStreamNotFound", err)
		}
	}
}

func writeAt(t *testing.T, path string, b []byte, off int64) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.WriteAt(b, off); err != nil {
		t.Fatal(err)
	}
}
