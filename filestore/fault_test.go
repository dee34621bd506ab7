package filestore

import (
	"context"
	"errors"
	iofs "io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"

	"github.com/annalsdb/annals"
)

// faultFS is the operating system's file system with switches that make an operation fail, as
// a full disk or a failing device would, and a model of a power cut: it remembers what was
// written since the last sync of each file and which entries were created since the last sync
// of their directory, and cut puts every file back as a power cut would leave it.
//
// The model covers what the store writes through FS. The index is written by Pebble through
// its own file system and syncs what it needs; it is derived from the log and rebuilt from it.
// log/DURABLE is written through a memory map and never synced: it only tells followers how
// far to read, and Open rewrites it.
type faultFS struct {
	OSFS
	failWrites atomic.Bool // WriteAt returns ENOSPC
	failSyncs  atomic.Bool // Datasync returns EIO

	mu     sync.Mutex
	root   string               // the tree the power cut model covers
	before map[string]bool      // the entries under root when the model began
	synced map[string]bool      // entries present when their directory was last synced
	faults map[string]faultRule // by operation: see fail
	calls  map[string]int       // operations done, by name
	files  map[string]*fileUndo // unsynced writes, by path
	frozen bool                 // after cut: nothing more reaches the disk
}

// faultRule makes an operation fail with err once it has been done after times.
type faultRule struct {
	after int
	err   error
}

// fileUndo restores a file to its state at its last sync.
type fileUndo struct {
	synced bool    // the file's size at its last sync is known
	size   int64   // its size then
	undo   []chunk // the bytes writes since then overwrote, oldest first
	// dropped counts the chunks dropped from the front of undo by syncs.
	dropped int
}

type chunk struct {
	off  int64
	data []byte
}

// newFaultFS returns a faultFS whose power cut model covers the tree under root (which the
// test creates and syncs itself).
func newFaultFS(t *testing.T, root string) *faultFS {
	fs := &faultFS{root: filepath.Clean(root), before: map[string]bool{}, synced: map[string]bool{},
		faults: map[string]faultRule{}, calls: map[string]int{}, files: map[string]*fileUndo{}}
	err := filepath.WalkDir(fs.root, func(path string, _ iofs.DirEntry, err error) error {
		fs.before[path] = true
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return fs
}

// fail makes every call of op after the first after ones fail with err. The operations are
// open, create, mkdir, remove, syncdir, read, write, truncate and datasync.
func (fs *faultFS) fail(op string, after int, err error) {
	fs.mu.Lock()
	defer fs.mu.Unlock()
	fs.faults[op] = faultRule{after: after, err: err}
}

// heal removes every fault.
func (fs *faultFS) heal() {
	fs.mu.Lock()
	defer fs.mu.Unlock()
	clear(fs.faults)
	fs.failWrites.Store(false)
	fs.failSyncs.Store(false)
}

func (fs *faultFS) count(op string) int {
	fs.mu.Lock()
	defer fs.mu.Unlock()
	return fs.calls[op]
}

// check counts a call of op and returns its injected error, if any.
func (fs *faultFS) check(op string) error {
	fs.mu.Lock()
	defer fs.mu.Unlock()
	if fs.frozen {
		return syscall.EIO
	}
	fs.calls[op]++
	if r, ok := fs.faults[op]; ok && fs.calls[op] > r.after {
		return r.err
	}
	return nil
}

func (fs *faultFS) OpenFile(name string, flag int, perm os.FileMode) (File, error) {
	op := "open"
	_, statErr := os.Lstat(name)
	isNew := flag&os.O_CREATE != 0 && statErr != nil
	if isNew {
		op = "create"
	}
	if err := fs.check(op); err != nil {
		return nil, &os.PathError{Op: op, Path: name, Err: err}
	}
	f, err := fs.OSFS.OpenFile(name, flag, perm)
	if err != nil {
		return nil, err
	}
	fs.mu.Lock()
	if fs.files[name] == nil {
		fs.files[name] = &fileUndo{}
	}
	fs.mu.Unlock()
	return &faultFile{File: f, fs: fs, name: name}, nil
}

func (fs *faultFS) Mkdir(name string, perm os.FileMode) error {
	if err := fs.check("mkdir"); err != nil {
		return &os.PathError{Op: "mkdir", Path: name, Err: err}
	}
	return fs.OSFS.Mkdir(name, perm)
}

func (fs *faultFS) Remove(name string) error {
	if err := fs.check("remove"); err != nil {
		return &os.PathError{Op: "remove", Path: name, Err: err}
	}
	if err := fs.OSFS.Remove(name); err != nil {
		return err
	}
	fs.mu.Lock()
	delete(fs.files, name)
	fs.mu.Unlock()
	return nil
}

func (fs *faultFS) SyncDir(dir string) error {
	if err := fs.check("syncdir"); err != nil {
		return err
	}
	if err := fs.OSFS.SyncDir(dir); err != nil {
		return err
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		return err
	}
	fs.mu.Lock()
	for _, e := range entries {
		fs.synced[filepath.Join(filepath.Clean(dir), e.Name())] = true
	}
	fs.mu.Unlock()
	return nil
}

// cut stops everything from reaching the disk, as a power cut does: every later operation
// fails with EIO and changes nothing. Call crash once the store is closed.
func (fs *faultFS) cut() {
	fs.mu.Lock()
	defer fs.mu.Unlock()
	fs.frozen = true
}

// crash puts the files back as the cut left them on disk: unsynced writes undone, entries
// created under root and never synced in their directory gone (with everything under them).
// Pebble's index directory is left as it is: Pebble syncs it through its own file system.
func (fs *faultFS) crash(t *testing.T) {
	t.Helper()
	fs.mu.Lock()
	defer fs.mu.Unlock()
	for name, u := range fs.files {
		if len(u.undo) == 0 && !u.synced {
			continue
		}
		f, err := os.OpenFile(name, os.O_RDWR, 0)
		if err != nil {
			if os.IsNotExist(err) {
				continue
			}
			t.Fatal(err)
		}
		for i := len(u.undo) - 1; i >= 0; i-- {
			if _, err := f.WriteAt(u.undo[i].data, u.undo[i].off); err != nil {
				t.Fatal(err)
			}
		}
		if u.synced {
			if err := f.Truncate(u.size); err != nil {
				t.Fatal(err)
			}
		}
		f.Close()
	}
	var lost []string
	err := filepath.WalkDir(fs.root, func(path string, d iofs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if fs.before[path] || fs.synced[path] {
			if d.IsDir() && d.Name() == "index" {
				return filepath.SkipDir
			}
			return nil
		}
		lost = append(lost, path)
		if d.IsDir() {
			return filepath.SkipDir
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, path := range lost {
		t.Logf("power cut: %s was never synced in its directory: gone", path)
		if err := os.RemoveAll(path); err != nil {
			t.Fatal(err)
		}
	}
}

type faultFile struct {
	File
	fs   *faultFS
	name string
}

// remember saves what a write of n bytes at off (or a truncation to off, n < 0) changes, so
// that crash can undo it.
func (f *faultFile) remember(off int64, n int) error {
	fs := f.fs
	fs.mu.Lock()
	defer fs.mu.Unlock()
	u := fs.files[f.name]
	fi, err := os.Stat(f.name)
	if err != nil {
		return err
	}
	if !u.synced && len(u.undo) == 0 {
		// The first change since the file was opened: its size now is the synced one as far
		// as this model knows (a file is synced whole when created, see createSegment).
		u.synced, u.size = true, fi.Size()
	}
	end := fi.Size()
	if n >= 0 {
		end = min(end, off+int64(n))
	}
	if off < end {
		old := make([]byte, end-off)
		if _, err := f.File.ReadAt(old, off); err != nil {
			return err
		}
		u.undo = append(u.undo, chunk{off, old})
	}
	return nil
}

func (f *faultFile) ReadAt(p []byte, off int64) (int, error) {
	if err := f.fs.check("read"); err != nil {
		return 0, err
	}
	return f.File.ReadAt(p, off)
}

func (f *faultFile) WriteAt(p []byte, off int64) (int, error) {
	if f.fs.failWrites.Load() {
		return 0, syscall.ENOSPC
	}
	if err := f.fs.check("write"); err != nil {
		return 0, err
	}
	if err := f.remember(off, len(p)); err != nil {
		return 0, err
	}
	return f.File.WriteAt(p, off)
}

func (f *faultFile) Truncate(size int64) error {
	if err := f.fs.check("truncate"); err != nil {
		return err
	}
	if err := f.remember(size, -1); err != nil {
		return err
	}
	return f.File.Truncate(size)
}

func (f *faultFile) Datasync() error {
	if f.fs.failSyncs.Load() {
		return syscall.EIO
	}
	if err := f.fs.check("datasync"); err != nil {
		return err
	}
	// What was written before the sync began is durable once it returns; a write that races
	// with it may not be.
	f.fs.mu.Lock()
	u := f.fs.files[f.name]
	mark := u.dropped + len(u.undo)
	fi, err := os.Stat(f.name)
	f.fs.mu.Unlock()
	if err != nil {
		return err
	}
	if err := f.File.Datasync(); err != nil {
		return err
	}
	f.fs.mu.Lock()
	defer f.fs.mu.Unlock()
	if k := mark - u.dropped; k > 0 { // another descriptor's sync may have dropped some
		u.undo = append([]chunk(nil), u.undo[k:]...)
		u.dropped += k
	}
	u.synced, u.size = true, fi.Size()
	return nil
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
			fs := newFaultFS(t, dir)
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
