package filestore

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"

	"github.com/annalsdb/annals"
	"github.com/cockroachdb/pebble/v2"
)

// CheckReport summarizes a data directory verified by [Check].
type CheckReport struct {
	Segments     int
	Events       uint64 // events in the log
	Bytes        int64  // bytes of log data (groups), not counting the unused end of segments
	LastPosition uint64
	Streams      int // streams with at least one event, system streams included
	// Indexed is how many events the index covers; the rest are indexed on the next Open.
	Indexed uint64
	// TornTail, when not empty, says where a crash left a partly written group at the end of
	// the log. It is not an error: those writes were never acknowledged, and the next Open
	// truncates them.
	TornTail string
}

// Check verifies the data directory dir without changing it: every record's checksum, that
// positions run 1, 2, 3, … with no gap, that each stream's revisions run 0, 1, 2, …, that
// times never decrease, and that every index entry points at the events it claims. The
// directory must not be open in another process.
//
// It returns an error matching [annals.ErrCorrupt], naming the file and offset, at the first
// damage it finds.
func Check(ctx context.Context, dir string) (CheckReport, error) {
	var rep CheckReport
	if _, err := os.Stat(filepath.Join(dir, "log")); err != nil {
		return rep, fmt.Errorf("no data directory at %s: %w", dir, err)
	}
	lockf, err := lockDir(OSFS{}, dir)
	if err != nil {
		return rep, err
	}
	defer lockf.Close()
	logDir := filepath.Join(dir, "log")
	bases, err := listSegments(logDir)
	if err != nil {
		return rep, err
	}
	var segs segmentList
	defer func() {
		for _, seg := range segs {
			seg.close()
		}
	}()
	for _, base := range bases {
		seg, err := openSegment(OSFS{}, logDir, base, os.O_RDONLY)
		if err != nil {
			return rep, err
		}
		segs = append(segs, seg)
	}
	rep.Segments = len(segs)
	if err := checkLog(ctx, segs, &rep); err != nil {
		return rep, err
	}
	if err := checkIndex(ctx, dir, segs, &rep); err != nil {
		return rep, err
	}
	return rep, nil
}

// checkLog walks every group of the log.
func checkLog(ctx context.Context, segs segmentList, rep *CheckReport) error {
	next := map[string]uint64{}
	nextPos := uint64(1)
	var lastNanos int64
	var buf []byte
	for i, seg := range segs {
		for off := int64(0); off < seg.size; {
			if err := ctx.Err(); err != nil {
				return err
			}
			at := seg.base + uint64(off)
			// Read with pread, not through the map: see scanData.
			g, err := seg.readGroup(off, &buf)
			if err == nil && g == nil {
				break
			}
			var recs []rawRecord
			if err == nil {
				_, recs, err = decodeGroup(g, at)
			}
			if err != nil {
				// The bytes are bad: a torn tail if nothing after shows them synced.
				if i == len(segs)-1 {
					later, serr := syncedLater(seg, uint64(off))
					if serr != nil {
						return serr
					}
					if !later {
						rep.TornTail = fmt.Sprintf("%s offset %d: %v", seg.path, off, err)
						break
					}
				}
				return fmt.Errorf("segment %s offset %d: %w", seg.path, off, err)
			}
			if err := checkRecords(recs, next, &nextPos, &lastNanos); err != nil {
				return fmt.Errorf("segment %s offset %d: %w", seg.path, off, err)
			}
			rep.Bytes += int64(len(g))
			off += int64(len(g))
		}
	}
	rep.Events = nextPos - 1
	rep.LastPosition = nextPos - 1
	rep.Streams = len(next)
	return nil
}

// checkRecords checks that a group's records continue the log: positions without a gap, each
// stream's revisions without a gap, times that never decrease.
func checkRecords(recs []rawRecord, next map[string]uint64, nextPos *uint64, lastNanos *int64) error {
	for j := range recs {
		rec := &recs[j]
		stream := string(rec.stream)
		switch {
		case rec.pos != *nextPos:
			return fmt.Errorf("%w: record %d has position %d, want %d", annals.ErrCorrupt, j, rec.pos, *nextPos)
		case rec.rev != next[stream]:
			return fmt.Errorf("%w: record %d of stream %q has revision %d, want %d", annals.ErrCorrupt, j, stream, rec.rev, next[stream])
		case rec.nanos < *lastNanos:
			return fmt.Errorf("%w: record %d has a time before its predecessor's", annals.ErrCorrupt, j)
		}
		next[stream] = rec.rev + 1
		*nextPos++
		*lastNanos = rec.nanos
	}
	return nil
}

// checkIndex verifies every index entry against the log.
func checkIndex(ctx context.Context, dir string, segs segmentList, rep *CheckReport) (err error) {
	indexDir := filepath.Join(dir, "index")
	if _, err := os.Stat(indexDir); err != nil {
		return nil // no index yet: the next Open builds it
	}
	fatal := &fatalSlot{}
	db, err := pebble.Open(indexDir, &pebble.Options{ReadOnly: true, Logger: pebbleLogger{log: slog.Default(), fatal: fatal}})
	if err != nil {
		return fmt.Errorf("open index: %w", errors.Join(err, fatal.get()))
	}
	defer db.Close()
	// A failure Pebble reports through Fatalf (see pebbleLogger) is the result, whatever the
	// walk below finds.
	defer func() {
		if ferr := fatal.get(); ferr != nil {
			err = ferr
		}
	}()
	mark, _, err := readWatermark(db)
	if err != nil {
		return err
	}
	if mark.nextPos-1 > rep.LastPosition && rep.TornTail != "" {
		// What looked like a torn tail had been indexed, so it had been synced.
		return fmt.Errorf("%w: %s (the index covers it, so it had been synced)", annals.ErrCorrupt, rep.TornTail)
	}
	if mark.nextPos-1 > rep.LastPosition {
		return fmt.Errorf("%w: the index covers positions up to %d but the log ends at %d", annals.ErrCorrupt, mark.nextPos-1, rep.LastPosition)
	}
	rep.Indexed = mark.nextPos - 1
	s := &Store{}
	s.segs.Store(&segs)
	it, err := db.NewIter(nil)
	if err != nil {
		return err
	}
	defer it.Close()
	var streamEvents uint64
	for valid := it.First(); valid; valid = it.Next() {
		if err := ctx.Err(); err != nil {
			return err
		}
		k := it.Key()
		var err error
		switch k[0] {
		case prefixStream, prefixCategory, prefixType:
			var n uint64
			n, err = checkRunEntry(s, k, it.Value())
			if k[0] == prefixStream {
				streamEvents += n
			}
		case prefixGroup:
			pos := binary.BigEndian.Uint64(k[1:])
			off := binary.LittleEndian.Uint64(it.Value())
			seg := segs.find(off)
			if seg == nil {
				err = fmt.Errorf("log offset %d is in no segment", off)
			} else if h, ok := parseGroupHeader(seg.data[off-seg.base:]); !ok || h.firstPos != pos {
				err = fmt.Errorf("no group of position %d at log offset %d", pos, off)
			}
		}
		if err != nil {
			return fmt.Errorf("%w: index entry %q: %w", annals.ErrCorrupt, k, err)
		}
	}
	if err := it.Error(); err != nil {
		return err
	}
	if streamEvents != rep.Indexed {
		return fmt.Errorf("%w: the stream index holds %d events, the watermark says %d", annals.ErrCorrupt, streamEvents, rep.Indexed)
	}
	return nil
}

// checkRunEntry verifies that an s, c or t entry points at the records it names, and returns
// how many.
func checkRunEntry(s *Store, key, value []byte) (uint64, error) {
	r, err := decodeRun(value)
	if err != nil {
		return 0, err
	}
	name := string(key[1 : len(key)-9])
	n := binary.BigEndian.Uint64(key[len(key)-8:])
	var i uint64
	var mismatch error
	err = s.walkRun(r.offset, r.count, func(rec *rawRecord) bool {
		var ok bool
		switch key[0] {
		case prefixStream:
			ok = string(rec.stream) == name && rec.rev == n+i && rec.pos == r.firstPos+i
		case prefixCategory:
			ok = annals.Category(string(rec.stream)) == name && rec.pos == n+i
		case prefixType:
			ok = string(rec.typ) == name && rec.pos == n+i
		}
		if !ok {
			mismatch = fmt.Errorf("record at position %d does not match", rec.pos)
			return false
		}
		i++
		return true
	})
	if err == nil {
		err = mismatch
	}
	if err == nil && i != uint64(r.count) {
		err = errors.New("run ends early")
	}
	return i, err
}
