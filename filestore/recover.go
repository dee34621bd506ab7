package filestore

import (
	"fmt"

	"github.com/annalsdb/annals"
)

// recover brings the index up to date with the log: it indexes every group after the index's
// watermark, and repairs a torn tail in the last segment. It returns the new watermark.
//
// Only the last segment can hold a torn tail: the writer syncs a segment completely before it
// writes to the next. Within the last segment, an invalid group at offset X is a torn tail when
// no valid group after it claims (in its "synced" field) that data beyond X had been synced;
// otherwise acknowledged data is damaged and recover returns annals.ErrCorrupt.
func (s *Store) recover() (watermark, error) {
	mark, found, err := readWatermark(s.db)
	if err != nil {
		return mark, fmt.Errorf("read index watermark: %w", err)
	}
	segs := *s.segs.Load()
	if !found {
		mark = watermark{nextPos: 1, end: segs[0].base}
	}
	if last := segs[len(segs)-1]; mark.end > last.end() {
		return mark, fmt.Errorf("%w: the index covers the log up to offset %d, but the log ends at %d (a segment is missing?)", annals.ErrCorrupt, mark.end, last.end())
	}
	ix := newIndexBuilder(s.db, mark)
	pending := 0
	var buf []byte
	for i, seg := range segs {
		if seg.end() <= ix.mark.end {
			continue
		}
		if seg.base > ix.mark.end {
			// The previous segment ended in zeros; the log continues here.
			ix.mark.end = seg.base
		}
		last := i == len(segs)-1
		for off := ix.mark.end - seg.base; off < uint64(seg.size); off = ix.mark.end - seg.base {
			at := seg.base + off
			// Read with pread, not through the map: see scanData.
			g, err := seg.readGroup(int64(off), &buf)
			if err == nil && g == nil {
				break // zeros: the end of this segment's data
			}
			var h groupHeader
			var recs []rawRecord
			if err == nil {
				h, recs, err = decodeGroup(g, at)
			}
			if err != nil {
				// The bytes are bad: a torn tail, or damage.
				if !last {
					return mark, fmt.Errorf("segment %s offset %d: %w", seg.path, off, err)
				}
				if err := s.repairTail(seg, off, err); err != nil {
					return mark, err
				}
				break
			}
			if err := ix.addGroup(h, recs, at); err != nil {
				return mark, fmt.Errorf("segment %s offset %d: %w", seg.path, off, err)
			}
			if pending += len(recs); pending >= 64<<10 {
				if err := ix.commit(); err != nil {
					return mark, err
				}
				pending = 0
			}
		}
	}
	if err := ix.commit(); err != nil {
		return mark, err
	}
	return ix.mark, nil
}

// repairTail handles an invalid group at offset off of the last segment (cause says why): a
// torn tail is zeroed out and synced, damage to synced data is reported.
func (s *Store) repairTail(seg *segment, off uint64, cause error) error {
	later, err := syncedLater(seg, off)
	if err != nil {
		return err
	}
	if later {
		return fmt.Errorf("segment %s offset %d: %w (a later group shows it had been synced)", seg.path, off, cause)
	}
	last, err := seg.lastNonZero(int64(off))
	if err != nil {
		return err
	}
	zeros := make([]byte, max(last+1-int64(off), 1))
	if _, err := seg.f.WriteAt(zeros, int64(off)); err != nil {
		return fmt.Errorf("repair torn tail of %s: %w", seg.path, err)
	}
	if err := seg.f.Datasync(); err != nil {
		return fmt.Errorf("repair torn tail of %s: sync: %w", seg.path, err)
	}
	s.log.Warn("annals: repaired a torn tail left by a crash (those writes were never acknowledged)",
		"segment", seg.path, "offset", off, "bytes", len(zeros), "cause", cause.Error())
	return nil
}
