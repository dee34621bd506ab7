package filestore

import (
	"bytes"
	"encoding/binary"
	"fmt"
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

// syncedLater reports whether a valid group after offset off of seg shows, by its synced field,
// that data beyond off had been synced: an invalid group at off is then damage, not a torn
// tail.
func syncedLater(seg *segment, off uint64) bool {
	magic := binary.LittleEndian.AppendUint32(nil, groupMagic)
	for at := off + 1; at < uint64(len(seg.data)); at++ {
		i := bytes.Index(seg.data[at:], magic)
		if i < 0 {
			return false
		}
		at += uint64(i)
		if h, ok := parseGroupHeader(seg.data[at:]); ok && h.synced > seg.base+off {
			return true
		}
	}
	return false
}
