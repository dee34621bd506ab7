package filestore

import (
	"context"
	"encoding/binary"
	"fmt"
	"iter"
	"math"
	"slices"

	"github.com/annalsdb/annals"
	"github.com/annalsdb/annals/internal/rules"
	"github.com/cockroachdb/pebble/v2"
)

// ReadAll implements [annals.Store.ReadAll].
func (s *Store) ReadAll(ctx context.Context, opts *annals.ReadOptions) iter.Seq2[annals.RecordedEvent, error] {
	return func(yield func(annals.RecordedEvent, error) bool) {
		o, err := rules.ReadOptions(opts)
		h, err := s.readHead(ctx, err)
		if err != nil {
			yield(annals.RecordedEvent{}, err)
			return
		}
		hi := h.pos + 1
		if o.Until > 0 {
			hi = min(hi, o.Until)
		}
		f := streamFilter{asOf: o.AsOf, filter: o.Filter}
		s.newCursor("", o.Backwards, o.From, 1, hi, f, o.Limit).read(ctx, o.Limit, yield)
	}
}

// logBatch reads the next batch of the log, a group at a time: about want events, looking at
// no more than about logScan of them.
func (k *cursor) logBatch(want int, out []annals.RecordedEvent) ([]annals.RecordedEvent, error) {
	var it *pebble.Iterator // opened on first use
	defer func() {
		if it != nil {
			it.Close()
		}
	}()
	segs := k.s.segs.Load()
	scanned := 0
	for !k.done() && scanned < logScan && len(out) < want {
		g, err := k.group(segs, &it)
		if err != nil {
			return out, err
		}
		start := len(out)
		if out, err = k.appendGroup(&g, &scanned, out); err != nil {
			return out, err
		}
		if k.backwards {
			slices.Reverse(out[start:])
		}
		k.consume(g.h.firstPos, g.h.firstPos+uint64(g.h.count))
	}
	return out, nil
}

// logCursor is where a forward read of the log left off: the group that follows the last one
// it read starts at log offset off, if that group is in the same segment, and at position pos.
// It lets the next batch go on without an index lookup.
type logCursor struct {
	pos, off uint64
}

// logGroup is a group of records in the log: its header, and its body (the records), which
// starts groupHeaderSize bytes after log offset off, in seg.
type logGroup struct {
	seg  *segment
	h    groupHeader
	body []byte
	off  uint64
}

// group returns the group that holds the position the cursor is at. Forwards it follows the
// log from group to group, from where the last group read ended, and looks a group up in the
// index only where it cannot (at the start of a read and of each segment); backwards it looks
// the first group up and steps back through the index from there.
func (k *cursor) group(segs *segmentList, it **pebble.Iterator) (logGroup, error) {
	pos := k.at()
	var g logGroup
	ok := false
	if !k.backwards && k.log.pos == pos {
		// Position pos is visible, so the group that holds it is durable: if a valid group
		// header that says so is where the last group ended, that is it.
		g.off = k.log.off
		g.seg, g.h, g.body, ok = groupAt(segs, g.off)
		ok = ok && g.h.count > 0 && g.h.firstPos == pos
	}
	if !ok {
		var err error
		if g.off, err = k.findGroup(it, pos); err != nil {
			return g, err
		}
		if g.seg, g.h, g.body, ok = groupAt(segs, g.off); !ok {
			return g, fmt.Errorf("%w: log offset %d: no valid group there, where the index says position %d is (rebuild the index: delete the index directory)", annals.ErrCorrupt, g.off, pos)
		}
		if g.h.firstPos+uint64(g.h.count) <= pos {
			return g, fmt.Errorf("%w: position %d is missing from the group index (rebuild the index: delete the index directory)", annals.ErrCorrupt, pos)
		}
	}
	k.log = logCursor{pos: g.h.firstPos + uint64(g.h.count), off: g.off + groupHeaderSize + uint64(len(g.body))}
	return g, nil
}

// groupAt returns the segment, header and body (the records) of the group at log offset off;
// ok is false when there is no valid group header there, or the body passes the segment's end.
func groupAt(segs *segmentList, off uint64) (seg *segment, h groupHeader, body []byte, ok bool) {
	if seg = segs.find(off); seg == nil {
		return nil, h, nil, false
	}
	local := off - seg.base
	if h, ok = parseGroupHeader(seg.data[local:]); !ok {
		return seg, h, nil, false
	}
	start := local + groupHeaderSize
	if uint64(h.bodyLen) > uint64(len(seg.data))-start {
		return seg, h, nil, false
	}
	return seg, h, seg.data[start : start+uint64(h.bodyLen)], true
}

// findGroup returns the log offset of the group that holds position pos, from the group
// index: it opens *it and seeks on first use, and then seeks again forwards, or steps back to
// the group before the last one backwards.
func (k *cursor) findGroup(it **pebble.Iterator, pos uint64) (uint64, error) {
	var valid bool
	switch {
	case *it == nil:
		var err error
		if *it, err = k.s.db.NewIter(&pebble.IterOptions{LowerBound: []byte{prefixGroup}, UpperBound: []byte{prefixGroup + 1}}); err != nil {
			return 0, err
		}
		valid = k.seek(*it, groupKey(pos+1))
	case k.backwards:
		valid = (*it).Prev()
	default:
		valid = k.seek(*it, groupKey(pos+1))
	}
	if !valid {
		if err := (*it).Error(); err != nil {
			return 0, err
		}
		return 0, fmt.Errorf("%w: position %d is missing from the group index (rebuild the index: delete the index directory)", annals.ErrCorrupt, pos)
	}
	v := (*it).Value()
	if len(v) != 8 {
		return 0, fmt.Errorf("%w: group index entry of %d bytes, want 8 (rebuild the index: delete the index directory)", annals.ErrCorrupt, len(v))
	}
	return binary.LittleEndian.Uint64(v), nil
}

// appendGroup decodes the records of the group g and appends those in the cursor's range that
// its filter keeps, in log order, counting in scanned those it looked at. Forwards, the first
// record after the read's AsOf ends the range: the log is in the order of time.
func (k *cursor) appendGroup(g *logGroup, scanned *int, out []annals.RecordedEvent) ([]annals.RecordedEvent, error) {
	at := g.off - g.seg.base + groupHeaderSize
	end := at + uint64(len(g.body))
	lo, hi := k.lo, k.hi
	endNanos := int64(math.MaxInt64) // forwards, a record after it ends the read
	if !k.backwards && !k.f.asOf.IsZero() {
		endNanos = k.f.asOf.UnixNano()
	}
	for range g.h.count {
		rec, err := decodeRecord(g.seg.data[at:end])
		if err != nil {
			return out, fmt.Errorf("%w: %s offset %d: %w", annals.ErrCorrupt, g.seg.path, at, err)
		}
		at += uint64(rec.size)
		if rec.pos < lo {
			continue
		}
		if rec.pos >= hi {
			break
		}
		if rec.nanos > endNanos {
			k.hi = rec.pos
			break
		}
		*scanned++
		if k.f.keep(&rec) {
			out = append(out, k.c.event(&rec))
		}
	}
	return out, nil
}
