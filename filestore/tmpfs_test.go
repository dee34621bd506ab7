package filestore

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"syscall"
	"testing"

	"github.com/annalsdb/annals"
	"golang.org/x/sys/unix"
)

// mountTmpfs mounts a tmpfs of the given size on a new directory, or skips the test when the
// process may not mount.
func mountTmpfs(t *testing.T, size string) string {
	t.Helper()
	dir := t.TempDir()
	if err := unix.Mount("tmpfs", dir, "tmpfs", 0, "size="+size); err != nil {
		t.Skipf("cannot mount a tmpfs (%v): this test needs root or CAP_SYS_ADMIN", err)
	}
	t.Cleanup(func() {
		if err := unix.Unmount(dir, 0); err != nil {
			t.Errorf("unmount %s: %v", dir, err)
		}
	})
	return dir
}

// TestFullTmpfs runs the store with its default segment size (larger than the file system) on
// a 64 MiB tmpfs until the file system is full: the store opens and works, the append that
// meets the full disk fails with an error matching ENOSPC (never a signal), Ready reports it,
// Check and a reopen on the full file system fail cleanly or work, and once there is room
// again every acknowledged append is there.
func TestFullTmpfs(t *testing.T) {
	mnt := mountTmpfs(t, "64m")
	dir := filepath.Join(mnt, "data")
	s, err := Open(dir, nil)
	if err != nil {
		t.Fatalf("open on a 64 MiB tmpfs: %v", err)
	}
	defer s.Close()
	var acked []annals.AppendResult
	var appendErr error
	for i := 0; i < 100_000; i++ {
		events := make([]annals.Event, 8)
		for j := range events {
			events[j] = bigEvent(i)
		}
		res, err := s.Append(context.Background(), fmt.Sprintf("fill-%d", i%10), annals.Any, events...)
		if err != nil {
			appendErr = err
			break
		}
		acked = append(acked, res)
	}
	if !errors.Is(appendErr, syscall.ENOSPC) {
		t.Fatalf("append on a full tmpfs: got %v, want an error matching ENOSPC", appendErr)
	}
	if len(acked) < 100 {
		t.Fatalf("only %d appends before the disk was full", len(acked))
	}
	if err := s.Ready(); !errors.Is(err, syscall.ENOSPC) {
		t.Errorf("Ready on a full tmpfs: got %v, want an error matching ENOSPC", err)
	}
	s.Close()

	// The file system is still full.
	if _, err := Check(context.Background(), dir); err != nil {
		t.Errorf("check on a full tmpfs: %v", err)
	}
	if s, err := Open(dir, nil); err == nil {
		if err := s.Ready(); err != nil {
			t.Logf("open on a full tmpfs works, not ready: %v", err)
		}
		s.Close()
	} else if !errors.Is(err, syscall.ENOSPC) {
		t.Errorf("open on a full tmpfs: got %v, want success or an error matching ENOSPC", err)
	} else {
		t.Logf("open on a full tmpfs: %v", err)
	}

	if err := unix.Mount("tmpfs", mnt, "tmpfs", unix.MS_REMOUNT, "size=256m"); err != nil {
		t.Fatalf("grow the tmpfs: %v", err)
	}
	s, err = Open(dir, nil)
	if err != nil {
		t.Fatalf("reopen with room: %v", err)
	}
	defer s.Close()
	if err := s.Ready(); err != nil {
		t.Errorf("Ready with room: %v", err)
	}
	evs := readAllEvents(t, s)
	last := acked[len(acked)-1]
	if uint64(len(evs)) < last.Position {
		t.Fatalf("after reopen: %d events, want at least the %d acknowledged", len(evs), last.Position)
	}
	for _, a := range acked {
		if e := evs[a.Position-1]; e.Position != a.Position || e.Revision != a.Revision {
			t.Fatalf("acknowledged append at position %d revision %d: found %d %d", a.Position, a.Revision, e.Position, e.Revision)
		}
	}
	if _, err := s.Append(context.Background(), "after", annals.NoStream, annals.Event{Type: "Again"}); err != nil {
		t.Fatalf("append with room: %v", err)
	}
}
