package filestore

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"

	"github.com/annalsdb/annals"
	"golang.org/x/sys/unix"
)

// A segment is one file of the log. Segments are created at their full size, filled with zeros
// (so that an fdatasync after a write has no file metadata to flush), and named after the log
// offset of their first byte. Reads go through a read-only memory map of the whole file.
type segment struct {
	base uint64 // log offset of the segment's first byte
	size int64
	path string
	f    File   // open read-write; written only by the sequencer and the zeroer
	data []byte // read-only map of the whole file

	syncers [2]File // the syncer's and the zeroer's own descriptors; see Store.datasync
}

const segmentExt = ".log"

func segmentName(base uint64) string { return fmt.Sprintf("%020d%s", base, segmentExt) }

// listSegments returns the bases of the segments in dir, in order.
func listSegments(dir string) ([]uint64, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	var bases []uint64
	for _, e := range entries {
		name := e.Name()
		if !strings.HasSuffix(name, segmentExt) {
			continue
		}
		base, err := strconv.ParseUint(strings.TrimSuffix(name, segmentExt), 10, 64)
		if err != nil {
			return nil, fmt.Errorf("%w: unexpected file %s in the log directory", annals.ErrCorrupt, name)
		}
		bases = append(bases, base)
	}
	slices.Sort(bases)
	return bases, nil
}

// openSegment opens an existing segment file (flag: os.O_RDWR, or os.O_RDONLY for Check) and
// maps it.
func openSegment(fsys FS, dir string, base uint64, flag int) (*segment, error) {
	path := filepath.Join(dir, segmentName(base))
	fi, err := os.Stat(path)
	if err != nil {
		return nil, err
	}
	f, err := fsys.OpenFile(path, flag, 0)
	if err != nil {
		return nil, err
	}
	s := &segment{base: base, size: fi.Size(), path: path, f: f}
	if err := s.mmap(); err != nil {
		f.Close()
		return nil, err
	}
	if flag&os.O_RDWR != 0 {
		if err := s.openSyncers(fsys); err != nil {
			s.close()
			return nil, err
		}
	}
	return s, nil
}

// openSyncers opens the descriptors Store.datasync uses, up front: a descriptor opened after
// a write-back error would not report it.
func (s *segment) openSyncers(fsys FS) error {
	for who := range 2 {
		f, err := fsys.OpenFile(s.path, os.O_RDWR, 0)
		if err != nil {
			return fmt.Errorf("open segment %s: %w", s.path, err)
		}
		s.syncers[who] = f
	}
	return nil
}

func (s *segment) mmap() error {
	if s.size == 0 {
		return nil
	}
	data, err := unix.Mmap(int(s.f.Fd()), 0, int(s.size), unix.PROT_READ, unix.MAP_SHARED)
	if err != nil {
		return fmt.Errorf("map segment %s: %w", s.path, err)
	}
	s.data = data
	return nil
}

func (s *segment) close() error {
	var err error
	if s.data != nil {
		err = unix.Munmap(s.data)
		s.data = nil
	}
	if cerr := s.f.Close(); err == nil {
		err = cerr
	}
	for _, f := range s.syncers {
		if f != nil {
			if cerr := f.Close(); err == nil {
				err = cerr
			}
		}
	}
	return err
}

// end is the log offset just past the segment.
func (s *segment) end() uint64 { return s.base + uint64(s.size) }

// segmentList is an immutable, ordered list of segments; a new one replaces it when a segment is
// added.
type segmentList []*segment

// find returns the segment holding log offset off, or nil.
func (l segmentList) find(off uint64) *segment {
	i := sort.Search(len(l), func(i int) bool { return l[i].end() > off })
	if i == len(l) || l[i].base > off {
		return nil
	}
	return l[i]
}

// The store reads a segment through its map only where groups have been written. Beyond the
// written end a segment is sparse, and on tmpfs a fault on a page of a hole allocates it (and
// raises SIGBUS when the file system is full), so recovery and Check read what may lie beyond
// it with pread, and skip holes with SEEK_DATA.

// scanChunk is how much of a segment scanData reads at once.
const scanChunk = 1 << 20

// scanData calls fn with the segment's bytes from local offset from to its end, in chunks read
// with pread, skipping holes (which read as zeros). A chunk is followed by groupHeaderSize bytes
// of the next, so that a group header that straddles two chunks is whole in one of them. fn
// returns false to stop.
func (s *segment) scanData(from int64, fn func(off int64, b []byte) bool) error {
	buf := make([]byte, scanChunk+groupHeaderSize)
	fd := int(s.f.Fd())
	for off := from; off < s.size; {
		data, err := unix.Seek(fd, off, unix.SEEK_DATA)
		if errors.Is(err, unix.ENXIO) {
			return nil // nothing but a hole up to the end
		}
		if err != nil {
			return fmt.Errorf("read %s: %w", s.path, err)
		}
		hole, err := unix.Seek(fd, data, unix.SEEK_HOLE)
		if err != nil {
			return fmt.Errorf("read %s: %w", s.path, err)
		}
		hole = min(hole, s.size)
		for ; data < hole; data += scanChunk {
			n, err := s.f.ReadAt(buf[:min(int64(len(buf)), s.size-data)], data)
			if err != nil && !errors.Is(err, io.EOF) {
				return fmt.Errorf("read %s: %w", s.path, err)
			}
			if !fn(data, buf[:n]) {
				return nil
			}
		}
		off = max(hole, off+1)
	}
	return nil
}

// zeroFrom reports whether the segment holds only zeros from local offset off to its end.
func (s *segment) zeroFrom(off int64) (bool, error) {
	zero := true
	err := s.scanData(off, func(_ int64, b []byte) bool {
		zero = allZero(b)
		return zero
	})
	return zero, err
}

// lastNonZero returns the local offset of the segment's last byte that is not zero at or after
// off, or -1.
func (s *segment) lastNonZero(off int64) (int64, error) {
	last := int64(-1)
	err := s.scanData(off, func(at int64, b []byte) bool {
		for j := len(b) - 1; j >= 0; j-- {
			if b[j] != 0 {
				last = max(last, at+int64(j))
				break
			}
		}
		return true
	})
	return last, err
}

// readGroup reads the group at local offset off with pread into *buf (grown as needed) and
// returns it; nil when the segment holds only zeros from off (no more groups), or an error
// matching annals.ErrCorrupt for bytes that are no valid group.
func (s *segment) readGroup(off int64, buf *[]byte) ([]byte, error) {
	at := s.base + uint64(off)
	if off+groupHeaderSize > s.size {
		if zero, err := s.zeroFrom(off); err != nil || zero {
			return nil, err
		}
		return nil, fmt.Errorf("%w: group at log offset %d runs past the end of its segment", annals.ErrCorrupt, at)
	}
	if cap(*buf) < groupHeaderSize {
		*buf = make([]byte, 64<<10)
	}
	hb := (*buf)[:groupHeaderSize]
	if _, err := s.f.ReadAt(hb, off); err != nil {
		return nil, fmt.Errorf("read %s: %w", s.path, err)
	}
	h, ok := parseGroupHeader(hb)
	if !ok {
		if zero, err := s.zeroFrom(off); err != nil || zero {
			return nil, err
		}
		return nil, fmt.Errorf("%w: no valid group header at log offset %d", annals.ErrCorrupt, at)
	}
	n := int64(groupHeaderSize) + int64(h.bodyLen)
	if n > s.size-off {
		return nil, fmt.Errorf("%w: group at log offset %d runs past the end of its segment", annals.ErrCorrupt, at)
	}
	if int64(cap(*buf)) < n {
		*buf = make([]byte, n)
	}
	g := (*buf)[:n]
	if _, err := s.f.ReadAt(g[groupHeaderSize:], off+groupHeaderSize); err != nil {
		return nil, fmt.Errorf("read %s: %w", s.path, err)
	}
	copy(g, hb)
	return g, nil
}

// syncedLater reports whether a valid group after offset off of seg shows, by its synced field,
// that data beyond off had been synced: an invalid group at off is then damage, not a torn
// tail.
func syncedLater(seg *segment, off uint64) (bool, error) {
	magic := binary.LittleEndian.AppendUint32(nil, groupMagic)
	found := false
	err := seg.scanData(int64(off)+1, func(at int64, b []byte) bool {
		// A header that starts in the last groupHeaderSize bytes is seen whole in the next chunk.
		limit := max(len(b)-groupHeaderSize, 0)
		if len(b) < scanChunk {
			limit = len(b)
		}
		for i := 0; i < limit; {
			j := bytes.Index(b[i:], magic)
			if j < 0 || i+j >= limit {
				break
			}
			i += j
			if h, ok := parseGroupHeader(b[i:]); ok && at+int64(i) > int64(off) && h.synced > seg.base+off {
				found = true
				return false
			}
			i++
		}
		return true
	})
	return found, err
}

func allZero(b []byte) bool {
	var zeros [4096]byte
	for len(b) > 0 {
		n := min(len(b), len(zeros))
		if !bytes.Equal(b[:n], zeros[:n]) {
			return false
		}
		b = b[n:]
	}
	return true
}

// createSegment creates an empty (sparse) segment file at log offset base, syncs it and its
// directory, and adds it to the list.
func (s *Store) createSegment(base uint64) (*segment, error) {
	path := filepath.Join(s.logDir, segmentName(base))
	f, err := s.fs.OpenFile(path, os.O_CREATE|os.O_EXCL|os.O_RDWR, 0o644)
	if err != nil {
		return nil, fmt.Errorf("create segment: %w", err)
	}
	err = f.Truncate(s.opts.SegmentSize)
	if err == nil {
		err = f.Datasync()
	}
	if err == nil {
		err = s.fs.SyncDir(s.logDir)
	}
	if err != nil {
		// A segment shorter than its size must not stay: mapping it and reading past its end
		// would raise SIGBUS. An empty one left by a crash here is removed by the next Open.
		f.Close()
		if rerr := s.fs.Remove(path); rerr == nil {
			s.fs.SyncDir(s.logDir)
		}
		return nil, fmt.Errorf("create segment %s: %w", path, err)
	}
	seg := &segment{base: base, size: s.opts.SegmentSize, path: path, f: f}
	if err := seg.mmap(); err != nil {
		f.Close()
		return nil, err
	}
	if err := seg.openSyncers(s.fs); err != nil {
		seg.close()
		return nil, err
	}
	old := *s.segs.Load()
	segs := append(old[:len(old):len(old)], seg)
	s.segs.Store(&segs)
	return seg, nil
}
