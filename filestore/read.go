package filestore

import (
	"fmt"
	"time"

	"github.com/annalsdb/annals"
)

// walkRun decodes the count consecutive records starting at log offset off, calling fn for
// each until it returns false. A run never crosses a segment.
func (s *Store) walkRun(off uint64, count uint32, fn func(*rawRecord) bool) error {
	seg := s.segs.Load().find(off)
	if seg == nil {
		return fmt.Errorf("%w: log offset %d is in no segment (rebuild the index: delete the index directory)", annals.ErrCorrupt, off)
	}
	var rec rawRecord // passed to fn, it lives on the heap: one for the run, not one per record
	for at := off - seg.base; count > 0; count-- {
		var err error
		if rec, err = decodeAt(seg, at); err != nil {
			return err
		}
		if !fn(&rec) {
			return nil
		}
		at += uint64(rec.size)
	}
	return nil
}

// decodeAt decodes the record at offset at of seg, checking its checksum.
func decodeAt(seg *segment, at uint64) (rawRecord, error) {
	if at >= uint64(len(seg.data)) {
		return rawRecord{}, fmt.Errorf("%w: %s: a run of records passes the end of the segment", annals.ErrCorrupt, seg.path)
	}
	rec, err := decodeRecord(seg.data[at:])
	if err != nil {
		return rec, fmt.Errorf("%w: %s offset %d: %w", annals.ErrCorrupt, seg.path, at, err)
	}
	return rec, nil
}

// streamFilter is what a read keeps, beyond the range of revisions or positions.
type streamFilter struct {
	asOf   time.Time
	cutoff time.Time // events recorded at or before it are too old (MaxAge, [rules.Young])
	filter *annals.Filter
}

func (f *streamFilter) keep(rec *rawRecord) bool {
	if !f.asOf.IsZero() && rec.nanos > f.asOf.UnixNano() {
		return false
	}
	if !f.cutoff.IsZero() && rec.nanos <= f.cutoff.UnixNano() {
		return false
	}
	return f.filter == nil || f.filter.Match(string(rec.stream), string(rec.typ))
}
