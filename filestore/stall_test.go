package filestore

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"

	"github.com/annalsdb/annals"
	"github.com/annalsdb/annals/internal/testwait"
	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/vfs"
)

// indexFullFS is the operating system's file system for the log, and gives the index (Pebble)
// small memtables and a file system on which creating a table fails with ENOSPC while full is
// set: the index runs out of space while the log still has room.
type indexFullFS struct {
	OSFS
	full atomic.Bool
}

func (fs *indexFullFS) tuneIndex(o *pebble.Options) {
	o.MemTableSize = 256 << 10
	o.MemTableStopWritesThreshold = 2
	o.FS = fullIndexVFS{FS: vfs.Default, full: &fs.full}
}

type fullIndexVFS struct {
	vfs.FS
	full *atomic.Bool
}

func (f fullIndexVFS) Create(name string, c vfs.DiskWriteCategory) (vfs.File, error) {
	if f.full.Load() && strings.HasSuffix(name, ".sst") {
		return nil, &iofsPathError{op: "create", path: name, err: syscall.ENOSPC}
	}
	return f.FS.Create(name, c)
}

type iofsPathError struct {
	op, path string
	err      error
}

func (e *iofsPathError) Error() string { return e.op + " " + e.path + ": " + e.err.Error() }
func (e *iofsPathError) Unwrap() error { return e.err }

// TestIndexFullWhileLogHasRoom: when the index cannot flush for lack of space, Pebble holds its
// writes back; appends then fail with an error matching ENOSPC and ErrClosed instead of
// waiting without end behind the blocked indexer, Ready reports it, and Close returns.
func TestIndexFullWhileLogHasRoom(t *testing.T) {
	dir := t.TempDir()
	fs := &indexFullFS{}
	s, err := Open(dir, &Options{FS: fs})
	if err != nil {
		t.Fatal(err)
	}
	acked := appendN(t, s, "before", 10)
	db := s.db
	fs.full.Store(true)
	appendErr := make(chan error, 1)
	go func() {
		for i := 0; ; i++ {
			events := make([]annals.Event, 50)
			for j := range events {
				events[j] = annals.Event{Type: "Filler", Data: fmt.Appendf(nil, `{"i":%d}`, i)}
			}
			if _, err := s.Append(context.Background(), fmt.Sprintf("fill-%d", i), annals.NoStream, events...); err != nil {
				appendErr <- err
				return
			}
		}
	}()
	err = testwait.Recv(t, "an append to fail while the index cannot flush", appendErr)
	if !errors.Is(err, syscall.ENOSPC) || !errors.Is(err, annals.ErrClosed) {
		t.Fatalf("append while the index cannot flush: got %v, want an error matching ENOSPC and ErrClosed", err)
	}
	if err := s.Ready(); !errors.Is(err, syscall.ENOSPC) {
		t.Errorf("Ready while the index cannot flush: got %v, want an error matching ENOSPC", err)
	}
	closed := make(chan error, 1)
	go func() { closed <- s.Close() }()
	if err := testwait.Recv(t, "Close to return while the index cannot flush", closed); err == nil {
		t.Errorf("Close while the index is blocked: nil, want an error saying it was left open")
	}
	// With room again, the blocked indexer ends and the index can be closed; everything
	// acknowledged is there after a reopen.
	fs.full.Store(false)
	testwait.Recv(t, "the indexer to end once there is room", s.indexDone)
	if err := db.Close(); err != nil {
		t.Logf("close the index: %v", err)
	}
	reopenAndVerify(t, dir, acked)
}
