package filestore

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"

	"github.com/annalsdb/annals"
)

// smallOptions make segments of a little over 1 MiB, so that a test rotates through several.
func smallOptions(fs FS) *Options {
	return &Options{FS: fs, Limits: annals.Limits{MaxEventSize: 32 << 10, MaxAppendSize: 64 << 10}, SegmentSize: 2*64<<10 + 1<<20}
}

// bigEvent is an event of about 8 KiB.
func bigEvent(i int) annals.Event {
	return annals.Event{Type: "Big", Data: fmt.Appendf(nil, `{"i":%d,"pad":"%s"}`, i, strings.Repeat("x", 8<<10))}
}

// TestFaultsWhileAppending makes each operation the write path uses fail, with a full disk and
// with an I/O error: the append that meets it fails with an error matching the cause and
// annals.ErrClosed, Ready reports it, and every append acknowledged before is there after a
// reopen.
func TestFaultsWhileAppending(t *testing.T) {
	for _, op := range []string{"write", "datasync", "create", "open", "truncate", "syncdir"} {
		for _, errno := range []syscall.Errno{syscall.ENOSPC, syscall.EIO} {
			t.Run(op+"/"+errno.Error(), func(t *testing.T) {
				root := t.TempDir()
				dir := filepath.Join(root, "data")
				fs := newFaultFS(t, root)
				s, err := Open(dir, smallOptions(fs))
				if err != nil {
					t.Fatal(err)
				}
				defer s.Close()
				var acked []annals.AppendResult
				for i := range 50 {
					acked = append(acked, mustAppendBig(t, s, i))
				}
				fs.fail(op, fs.count(op), errno)
				for i := 50; ; i++ {
					if i == 2000 {
						t.Fatalf("%d appends and no %s failed (%d calls)", i, op, fs.count(op))
					}
					res, err := s.Append(context.Background(), "big", annals.Any, bigEvent(i))
					if err == nil {
						acked = append(acked, res)
						continue
					}
					if !errors.Is(err, errno) || !errors.Is(err, annals.ErrClosed) {
						t.Fatalf("append after a failed %s: got %v, want an error matching %v and ErrClosed", op, err, errno)
					}
					break
				}
				if err := s.Ready(); !errors.Is(err, errno) {
					t.Errorf("Ready after a failed %s: got %v, want an error matching %v", op, err, errno)
				}
				if got := readAllEvents(t, s); len(got) != len(acked) {
					t.Errorf("reads after the fault: %d events, want the %d acknowledged", len(got), len(acked))
				}
				s.Close()
				fs.heal()
				reopenAndVerify(t, dir, acked)
			})
		}
	}
}

func mustAppendBig(t *testing.T, s *Store, i int) annals.AppendResult {
	t.Helper()
	res, err := s.Append(context.Background(), "big", annals.Any, bigEvent(i))
	if err != nil {
		t.Fatalf("append %d: %v", i, err)
	}
	return res
}

// TestFaultsAtOpen makes each operation Open uses fail: Open returns an error matching the
// cause (never a panic or a signal), and once the fault is gone, the store opens with every
// acknowledged event.
func TestFaultsAtOpen(t *testing.T) {
	for _, tc := range []struct {
		op       string
		existing bool // open a store that holds events (and an empty last segment)
	}{
		{"mkdir", false}, {"create", false}, {"syncdir", false}, {"truncate", false},
		{"datasync", false}, {"write", false},
		{"open", true}, {"read", true}, {"write", true}, {"remove", true}, {"syncdir", true},
	} {
		for _, errno := range []syscall.Errno{syscall.ENOSPC, syscall.EIO} {
			name := tc.op + "/" + errno.Error()
			if tc.existing {
				name = "existing/" + name
			}
			t.Run(name, func(t *testing.T) {
				root := t.TempDir()
				dir := filepath.Join(root, "a", "data")
				var acked []annals.AppendResult
				if tc.existing {
					s, err := Open(dir, smallOptions(nil))
					if err != nil {
						t.Fatal(err)
					}
					for i := range 200 { // more than one segment
						acked = append(acked, mustAppendBig(t, s, i))
					}
					if err := s.Close(); err != nil {
						t.Fatal(err)
					}
					// An empty segment after the last, as a crash while creating it leaves.
					bases, err := listSegments(filepath.Join(dir, "log"))
					if err != nil || len(bases) < 2 {
						t.Fatalf("segments: %v, %v; want at least 2", bases, err)
					}
					empty := filepath.Join(dir, "log", segmentName(bases[len(bases)-1]+uint64(smallOptions(nil).SegmentSize)))
					if err := os.WriteFile(empty, nil, 0o644); err != nil {
						t.Fatal(err)
					}
				}
				fs := newFaultFS(t, root)
				fs.fail(tc.op, 0, errno)
				s, err := Open(dir, smallOptions(fs))
				if fs.count(tc.op) == 0 {
					t.Fatalf("Open did no %s", tc.op)
				}
				if err == nil {
					s.Close()
					t.Fatalf("Open with a failing %s: no error", tc.op)
				}
				if !errors.Is(err, errno) {
					t.Fatalf("Open with a failing %s: got %v, want an error matching %v", tc.op, err, errno)
				}
				fs.heal()
				if !tc.existing {
					if s, err := Open(dir, smallOptions(fs)); err != nil {
						t.Fatalf("Open once the fault is gone: %v", err)
					} else {
						s.Close()
					}
				}
				reopenAndVerify(t, dir, acked)
			})
		}
	}
}

// TestPowerCut cuts the power (drops every write and directory entry not synced) while
// writers append to a data directory that Open created, several levels deep, and finds every
// acknowledged append after reopening.
func TestPowerCut(t *testing.T) {
	for round := range 3 {
		t.Run(fmt.Sprint(round), func(t *testing.T) {
			root := t.TempDir()
			dir := filepath.Join(root, "a", "b", "data")
			fs := newFaultFS(t, root)
			if round == 1 {
				// Created by someone else, who synced its parents but not it.
				if err := os.MkdirAll(filepath.Join(root, "a", "b"), 0o755); err != nil {
					t.Fatal(err)
				}
				fs.synced[filepath.Join(root, "a")] = true
				fs.synced[filepath.Join(root, "a", "b")] = true
				if err := os.Mkdir(dir, 0o755); err != nil {
					t.Fatal(err)
				}
			}
			s, err := Open(dir, smallOptions(fs))
			if err != nil {
				t.Fatal(err)
			}
			type acked struct {
				id  annals.UUID
				res annals.AppendResult
			}
			var mu sync.Mutex
			var all []acked
			cut := make(chan struct{})
			var cutOnce sync.Once
			var wg sync.WaitGroup
			for w := range 4 {
				wg.Go(func() {
					for i := 0; ; i++ {
						e := bigEvent(i)
						e.ID = annals.NewUUID()
						res, err := s.Append(context.Background(), fmt.Sprintf("w-%d", w), annals.Any, e)
						if err != nil {
							return // the power is off
						}
						mu.Lock()
						all = append(all, acked{e.ID, res})
						if len(all) == 100+150*round {
							cutOnce.Do(func() { close(cut) })
						}
						mu.Unlock()
					}
				})
			}
			<-cut
			fs.cut()
			wg.Wait()
			s.Close()
			fs.crash(t)

			s, err = Open(dir, nil)
			if err != nil {
				t.Fatalf("reopen after the power cut: %v", err)
			}
			defer s.Close()
			found := map[annals.UUID]annals.RecordedEvent{}
			for _, ev := range readAllEvents(t, s) {
				found[ev.ID] = ev
			}
			for _, a := range all {
				ev, ok := found[a.id]
				if !ok {
					t.Fatalf("acknowledged event at position %d lost in the power cut (%d of %d acknowledged events found)", a.res.Position, len(found), len(all))
				}
				if ev.Position != a.res.Position || ev.Revision != a.res.Revision {
					t.Fatalf("acknowledged event at position %d revision %d is at %d %d after the power cut", a.res.Position, a.res.Revision, ev.Position, ev.Revision)
				}
			}
		})
	}
}

func TestReady(t *testing.T) {
	s, err := Open(t.TempDir(), nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Ready(); err != nil {
		t.Fatalf("Ready of a new store: %v", err)
	}
	// Pebble reports a failure it cannot recover from through Fatalf; the store stops.
	pebbleLogger{log: s.log, s: s}.Fatalf("MANIFEST flush failed: %v", fmt.Errorf("write MANIFEST: %w", syscall.ENOSPC))
	if err := s.Ready(); !errors.Is(err, syscall.ENOSPC) || !errors.Is(err, annals.ErrClosed) {
		t.Fatalf("Ready after an index failure: got %v, want an error matching ENOSPC and ErrClosed", err)
	}
	if _, err := s.Append(context.Background(), "a", annals.Any, annals.Event{Type: "T"}); !errors.Is(err, syscall.ENOSPC) {
		t.Fatalf("Append after an index failure: got %v, want an error matching ENOSPC", err)
	}
	s.Close()
	if err := s.Ready(); err == nil {
		t.Fatal("Ready after Close: nil")
	}
}
