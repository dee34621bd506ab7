package filestore

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"iter"
	"os"
	"path/filepath"
	"sync/atomic"
	"time"
	"unsafe"

	"github.com/annalsdb/annals"
	"golang.org/x/sys/unix"
)

// The writer publishes how far the log is durable in log/DURABLE, a small file it keeps mapped
// and updates (without syncing it) after every sync. Another process can then follow the log
// without opening the store: see [Follow].
const durableFile = "DURABLE"

// durableMark is the writer's side of log/DURABLE.
type durableMark struct {
	data []byte
	f    File
}

// openDurableMark opens log/DURABLE and sets it to off. It writes the word with pwrite
// before mapping it, so that the page the map writes to is allocated: a write through a map
// to a page the file system cannot allocate (a full disk, or tmpfs) raises SIGBUS.
func openDurableMark(fsys FS, logDir string, off uint64) (*durableMark, error) {
	f, err := createFile(fsys, filepath.Join(logDir, durableFile), os.O_RDWR, 0o644)
	if err != nil {
		return nil, fmt.Errorf("open %s: %w", durableFile, err)
	}
	if _, err := f.WriteAt(binary.NativeEndian.AppendUint64(nil, off), 0); err != nil {
		f.Close()
		return nil, fmt.Errorf("open %s: %w", durableFile, err)
	}
	data, err := unix.Mmap(int(f.Fd()), 0, 8, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED)
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("map %s: %w", durableFile, err)
	}
	return &durableMark{data: data, f: f}, nil
}

func (d *durableMark) word() *atomic.Uint64 { return (*atomic.Uint64)(unsafe.Pointer(&d.data[0])) }

func (d *durableMark) set(off uint64) { d.word().Store(off) }

func (d *durableMark) close() error {
	return errors.Join(unix.Munmap(d.data), d.f.Close())
}

// FollowOptions shape [Follow].
type FollowOptions struct {
	// Stream, when not empty, follows one stream; otherwise Follow follows the global log.
	Stream string
	// From is the first revision (Stream) or position (global log) to deliver, inclusive;
	// [annals.End] delivers only what is appended from now on.
	From uint64
	// Filter keeps only the matching events.
	Filter *annals.Filter
	// Poll is how often Follow looks for new events once it has caught up; default 20 ms.
	Poll time.Duration
}

// Follow reads the log of the data directory dir from another process than the one that has
// the store open, and follows it live until ctx is done (then it yields ctx's error). It takes
// no lock and uses no index: it scans the log from the start (or, with From = End, from its
// end), so it suits tools such as "annals tail", not services (use [Store.SubscribeAll]).
// It delivers only events the writer has made durable, in log order, with no gap and no
// duplicate; stream metadata does not apply. It yields an error matching
// [annals.ErrCorrupt] for a damaged record.
func Follow(ctx context.Context, dir string, opts *FollowOptions) iter.Seq2[annals.RecordedEvent, error] {
	var o FollowOptions
	if opts != nil {
		o = *opts
	}
	if o.Poll <= 0 {
		o.Poll = 20 * time.Millisecond
	}
	return func(yield func(annals.RecordedEvent, error) bool) {
		if err := o.Filter.Validate(); err != nil {
			yield(annals.RecordedEvent{}, err)
			return
		}
		fl, err := openFollower(filepath.Join(dir, "log"))
		if err != nil {
			yield(annals.RecordedEvent{}, err)
			return
		}
		defer fl.close()
		if o.From == annals.End {
			fl.off = fl.durable()
			o.From = 0
		}
		c := newCopier()
		for {
			durable := fl.durable()
			for fl.off < durable {
				recs, err := fl.nextGroup()
				if err != nil {
					yield(annals.RecordedEvent{}, err)
					return
				}
				for i := range recs {
					rec := &recs[i]
					n := rec.pos
					if o.Stream != "" {
						if string(rec.stream) != o.Stream {
							continue
						}
						n = rec.rev
					}
					if n < o.From || !o.Filter.Match(string(rec.stream), string(rec.typ)) {
						continue
					}
					if !yield(c.event(rec), nil) {
						return
					}
				}
			}
			select {
			case <-ctx.Done():
				yield(annals.RecordedEvent{}, ctx.Err())
				return
			case <-time.After(o.Poll):
			}
		}
	}
}

// follower reads the log segment by segment, read-only.
type follower struct {
	logDir string
	mark   []byte
	markf  *os.File
	seg    *segment
	off    uint64 // log offset of the next group
	buf    []byte // the last group read; its records are yielded before the next is read
}

func openFollower(logDir string) (*follower, error) {
	f, err := os.Open(filepath.Join(logDir, durableFile))
	if err != nil {
		return nil, fmt.Errorf("no store at %s (append something first): %w", filepath.Dir(logDir), err)
	}
	mark, err := unix.Mmap(int(f.Fd()), 0, 8, unix.PROT_READ, unix.MAP_SHARED)
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("map %s: %w", durableFile, err)
	}
	return &follower{logDir: logDir, mark: mark, markf: f}, nil
}

func (fl *follower) durable() uint64 {
	return (*atomic.Uint64)(unsafe.Pointer(&fl.mark[0])).Load()
}

func (fl *follower) close() {
	if fl.seg != nil {
		fl.seg.close()
	}
	unix.Munmap(fl.mark)
	fl.markf.Close()
}

// nextGroup decodes the group at fl.off, moving to the next segment where one ends.
func (fl *follower) nextGroup() ([]rawRecord, error) {
	for {
		if fl.seg == nil || fl.off >= fl.seg.end() {
			if err := fl.openSegmentAt(fl.off); err != nil {
				return nil, err
			}
		}
		local := fl.off - fl.seg.base
		g, err := fl.seg.readGroup(int64(local), &fl.buf)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", fl.seg.path, err)
		}
		if g == nil { // the rest of this segment is unused: the log goes on in the next one
			fl.off = fl.seg.end()
			continue
		}
		_, recs, err := decodeGroup(g, fl.off)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", fl.seg.path, err)
		}
		fl.off += uint64(len(g))
		return recs, nil
	}
}

// openSegmentAt maps the segment holding log offset off.
func (fl *follower) openSegmentAt(off uint64) error {
	bases, err := listSegments(fl.logDir)
	if err != nil {
		return err
	}
	for i := len(bases) - 1; i >= 0; i-- {
		if bases[i] <= off {
			if fl.seg != nil {
				fl.seg.close()
				fl.seg = nil
			}
			seg, err := openSegment(OSFS{}, fl.logDir, bases[i], os.O_RDONLY)
			if err != nil {
				return err
			}
			if off >= seg.end() {
				seg.close()
				return fmt.Errorf("%w: log offset %d is in no segment", annals.ErrCorrupt, off)
			}
			fl.seg = seg
			return nil
		}
	}
	return fmt.Errorf("%w: log offset %d is in no segment", annals.ErrCorrupt, off)
}
