package filestore

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"iter"
	"slices"
	"strings"
	"time"

	"github.com/annalsdb/annals"
	"github.com/annalsdb/annals/internal/rules"
	"github.com/cockroachdb/pebble/v2"
)

// Reads run in batches: each batch holds the read lock (so that Close cannot unmap the log
// under it), copies up to readBatch events out of the log, and releases the lock before the
// events are yielded. A consumer may therefore take as long as it likes, or call Close.
const readBatch = 256

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

// streamRun is an s entry: a run of a stream's events.
type streamRun struct {
	firstRev uint64
	run
}

func parseStreamRun(it *pebble.Iterator) (streamRun, error) {
	k := it.Key()
	r, err := decodeRun(it.Value())
	return streamRun{firstRev: binary.BigEndian.Uint64(k[len(k)-8:]), run: r}, err
}

// lastRun returns the stream's last run in the index.
func (s *Store) lastRun(stream string) (streamRun, bool, error) {
	lo, hi := nameBounds(prefixStream, stream)
	it, err := s.db.NewIter(&pebble.IterOptions{LowerBound: lo, UpperBound: hi})
	if err != nil {
		return streamRun{}, false, err
	}
	defer it.Close()
	if !it.Last() {
		return streamRun{}, false, it.Error()
	}
	r, err := parseStreamRun(it)
	return r, err == nil, err
}

// scanStream calls fn for the stream's records with revisions from … to-1 in order, until fn
// returns false. It takes no lock and applies no visibility bound.
func (s *Store) scanStream(stream string, from, to uint64, fn func(*rawRecord) bool) error {
	lo, hi := nameBounds(prefixStream, stream)
	it, err := s.db.NewIter(&pebble.IterOptions{LowerBound: lo, UpperBound: hi})
	if err != nil {
		return err
	}
	defer it.Close()
	valid := it.SeekLT(nameKey(prefixStream, stream, from+1))
	if !valid {
		valid = it.First()
	}
	segs := s.segs.Load()
	var rec rawRecord // passed to fn, it lives on the heap: one for the scan, not one per record
	for ; valid; valid = it.Next() {
		r, err := parseStreamRun(it)
		if err != nil {
			return err
		}
		if r.firstRev >= to {
			break
		}
		seg := segs.find(r.offset)
		if seg == nil {
			return fmt.Errorf("%w: log offset %d is in no segment (rebuild the index: delete the index directory)", annals.ErrCorrupt, r.offset)
		}
		at := r.offset - seg.base
		for rev := r.firstRev; rev < r.firstRev+uint64(r.count); rev++ {
			if rec, err = decodeAt(seg, at); err != nil {
				return err
			}
			if rec.rev != rev || string(rec.stream) != stream {
				return fmt.Errorf("%w: stream %q: index and log disagree at revision %d (rebuild the index: delete the index directory)", annals.ErrCorrupt, stream, rev)
			}
			at += uint64(rec.size)
			if rev < from {
				continue
			}
			if rev >= to || !fn(&rec) {
				return nil
			}
		}
	}
	return it.Error()
}

// streamView is what a read needs to know about a stream, as of one head.
type streamView struct {
	next       uint64 // the revision after the last visible one
	state      streamIndexState
	tombstoned bool // as of the head the view was taken at
	meta       annals.StreamMetadata
	// metaRev is the revision of the last event of the meta stream, metaExists whether it has one
	// (left zero unless view was asked for them).
	metaRev    uint64
	metaExists bool
}

// rule is the stream's state as the shared rules see it.
func (v *streamView) rule(stream string) rules.Stream {
	return rules.Stream{Name: stream, Next: v.next, Base: v.state.base, Tombstoned: v.tombstoned}
}

// lowest returns the first revision that reads may return, before maxAge
// ([rules.VisibleFrom]).
func (v *streamView) lowest() uint64 {
	rs := v.rule("")
	return rules.VisibleFrom(&rs, &v.meta)
}

// ageCutoff returns the time at or before which maxAge hides events, as of now
// ([rules.AgeCutoff]), or the zero time.
func (v *streamView) ageCutoff() time.Time {
	cutoff, _ := rules.AgeCutoff(&v.meta, time.Now())
	return cutoff
}

// view reads the stream's state as of head h, with metaRev and metaExists only if withMetaRev
// (GetMetadata needs them; they cost another index lookup). The caller holds the read lock.
func (s *Store) view(stream string, h *head, withMetaRev bool) (streamView, error) {
	var v streamView
	var err error
	if v.state, err = getStreamState(s.db, stream); err != nil {
		return v, err
	}
	v.tombstoned = v.state.tombstonedAt(h.pos)
	if v.next, err = s.visibleNext(stream, h); err != nil {
		return v, err
	}
	if v.state.metaOffset != 0 {
		var jerr error
		if err := s.walkRun(v.state.metaOffset, 1, func(rec *rawRecord) bool {
			jerr = json.Unmarshal(rec.data, &v.meta)
			return true
		}); err != nil {
			return v, err
		}
		if jerr != nil {
			return v, fmt.Errorf("%w: metadata of stream %q at log offset %d: %w", annals.ErrCorrupt, stream, v.state.metaOffset, jerr)
		}
	}
	if !withMetaRev {
		return v, nil
	}
	metaNext, err := s.visibleNext(annals.MetaStream(stream), h)
	if err != nil {
		return v, err
	}
	if metaNext > 0 {
		v.metaRev, v.metaExists = metaNext-1, true
	}
	return v, nil
}

// visibleNext returns the revision after the stream's last event visible at h.
func (s *Store) visibleNext(stream string, h *head) (uint64, error) {
	lo, hi := nameBounds(prefixStream, stream)
	it, err := s.db.NewIter(&pebble.IterOptions{LowerBound: lo, UpperBound: hi})
	if err != nil {
		return 0, err
	}
	defer it.Close()
	for valid := it.Last(); valid; valid = it.Prev() {
		r, err := parseStreamRun(it)
		if err != nil {
			return 0, err
		}
		if r.firstPos <= h.pos {
			return r.firstRev + uint64(r.count), nil
		}
	}
	return 0, it.Error()
}

// streamFilter is what a stream read keeps, beyond the revision range.
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

// ReadStream implements [annals.Store.ReadStream].
func (s *Store) ReadStream(ctx context.Context, stream string, opts *annals.ReadOptions) iter.Seq2[annals.RecordedEvent, error] {
	return func(yield func(annals.RecordedEvent, error) bool) {
		o, err := rules.StreamReadOptions(stream, opts)
		if err == nil {
			err = ctx.Err()
		}
		if err != nil {
			yield(annals.RecordedEvent{}, err)
			return
		}
		h, err := s.visibleHead(ctx)
		if err != nil {
			yield(annals.RecordedEvent{}, err)
			return
		}
		if err := s.readLock(); err != nil {
			yield(annals.RecordedEvent{}, err)
			return
		}
		v, err := s.view(stream, h, false)
		s.readUnlock()
		if err == nil {
			rs := v.rule(stream)
			err = rules.Readable(&rs, "read")
		}
		if err != nil {
			yield(annals.RecordedEvent{}, err)
			return
		}
		hi := v.next
		if o.Until > 0 {
			hi = min(hi, o.Until)
		}
		f := streamFilter{asOf: o.AsOf, filter: o.Filter, cutoff: v.ageCutoff()}
		s.newCursor(stream, o.Backwards, o.From, v.lowest(), hi, f, o.Limit).read(ctx, o.Limit, yield)
	}
}

// batchCap is the capacity to give the batches of a read of at most n events, limit (0 =
// none) of which it returns: the batches hold readBatch events, and a little more where a
// run or group goes on.
func batchCap(n uint64, limit int) int {
	if limit > 0 {
		n = min(n, uint64(limit))
	}
	return int(min(n, readBatch+readBatch/4))
}

// batchWant is how many events the next batch of a read should hold, left (0 = no limit) of
// which the read still returns: a read of the last event reads one, not a whole batch.
func batchWant(left int) int {
	if left > 0 {
		return min(left, readBatch)
	}
	return readBatch
}

// yieldAll yields the batch, counting down the limit (0 = none); false means stop.
func yieldAll(batch []annals.RecordedEvent, left *int, yield func(annals.RecordedEvent, error) bool) bool {
	for _, ev := range batch {
		if !yield(ev, nil) {
			return false
		}
		if *left > 0 {
			if *left--; *left == 0 {
				return false
			}
		}
	}
	return true
}

// streamBatch reads forwards from revision from, below hi, up to want (at most readBatch)
// events, and returns them with the revision to continue from (hi when done).
func (s *Store) streamBatch(ctx context.Context, stream string, from, hi uint64, want int, f *streamFilter, c *copier, out []annals.RecordedEvent) ([]annals.RecordedEvent, uint64, error) {
	if err := ctx.Err(); err != nil {
		return out, from, err
	}
	if err := s.readLock(); err != nil {
		return out, from, err
	}
	defer s.readUnlock()
	lower, upper := nameBounds(prefixStream, stream)
	it, err := s.db.NewIter(&pebble.IterOptions{LowerBound: lower, UpperBound: upper})
	if err != nil {
		return out, from, err
	}
	defer it.Close()
	valid := it.SeekLT(nameKey(prefixStream, stream, from+1))
	if !valid {
		valid = it.First()
	}
	segs := s.segs.Load()
	var runs [64]streamRun
	scanned := 0
	for valid {
		// Gather the next runs, enough for the batch, and touch their first records all at
		// once: a stream's records lie all over the log, and fetching them one by one as they
		// are decoded would wait for memory once per event instead of once per gathering.
		// (At least one run: when the batch is full, the next record in range says where the
		// next batch starts.)
		k, covered, need := 0, uint64(0), uint64(max(want-len(out), 1))
		for ; valid && k < len(runs) && covered < need; valid = it.Next() {
			r, err := parseStreamRun(it)
			if err != nil {
				return out, from, err
			}
			if r.firstRev >= hi {
				valid = false
				break
			}
			runs[k] = r
			k++
			if end := r.firstRev + uint64(r.count); end > from {
				covered += end - max(r.firstRev, from)
			}
		}
		c.touch(segs, runs[:k])
		for i := range runs[:k] {
			r := &runs[i]
			seg := segs.find(r.offset)
			if seg == nil {
				return out, from, fmt.Errorf("%w: log offset %d is in no segment (rebuild the index: delete the index directory)", annals.ErrCorrupt, r.offset)
			}
			at := r.offset - seg.base
			for rev := r.firstRev; rev < r.firstRev+uint64(r.count); rev++ {
				rec, err := decodeAt(seg, at)
				if err != nil {
					return out, from, err
				}
				if rec.rev != rev || string(rec.stream) != stream {
					return out, from, fmt.Errorf("%w: stream %q: index and log disagree at revision %d (rebuild the index: delete the index directory)", annals.ErrCorrupt, stream, rev)
				}
				at += uint64(rec.size)
				if rev < from {
					continue
				}
				if rev >= hi {
					return out, hi, nil
				}
				if scanned == readBatch*4 || len(out) >= want {
					return out, rev, nil
				}
				scanned++
				if f.keep(&rec) {
					out = append(out, c.event(&rec))
				}
			}
		}
	}
	if err := it.Error(); err != nil {
		return out, from, err
	}
	return out, hi, nil
}

// touch reads the first records of the runs, with no read depending on another, so that the
// processor fetches them from memory (and walks the page tables) all at once rather than one
// at a time as the records are decoded: first a byte of each, then, now that their lengths
// are at hand, a byte of each further cache line of each.
func (c *copier) touch(segs *segmentList, runs []streamRun) {
	var x byte
	for i := range runs {
		if seg := segs.find(runs[i].offset); seg != nil && runs[i].offset-seg.base < uint64(len(seg.data)) {
			x += seg.data[runs[i].offset-seg.base]
		}
	}
	for i := range runs {
		seg := segs.find(runs[i].offset)
		if seg == nil || runs[i].offset-seg.base+recordHeader > uint64(len(seg.data)) {
			continue
		}
		rec := seg.data[runs[i].offset-seg.base:]
		n := min(recordHeader+uint64(binary.LittleEndian.Uint32(rec)), uint64(len(rec)))
		for at := uint64(64); at < n; at += 64 {
			x += rec[at]
		}
	}
	c.touched += x
}

// streamBatchBack reads backwards from revision from down to lo, up to about want events
// (a whole index run at a time), and returns the revision to continue from and whether it is
// done.
func (s *Store) streamBatchBack(ctx context.Context, stream string, from, lo uint64, want int, f *streamFilter, c *copier, out []annals.RecordedEvent) ([]annals.RecordedEvent, uint64, bool, error) {
	if err := ctx.Err(); err != nil {
		return out, from, true, err
	}
	if err := s.readLock(); err != nil {
		return out, from, true, err
	}
	defer s.readUnlock()
	lower, upper := nameBounds(prefixStream, stream)
	it, err := s.db.NewIter(&pebble.IterOptions{LowerBound: lower, UpperBound: upper})
	if err != nil {
		return out, from, true, err
	}
	defer it.Close()
	var run []annals.RecordedEvent
	for valid := it.SeekLT(nameKey(prefixStream, stream, from+1)); valid; valid = it.Prev() {
		r, err := parseStreamRun(it)
		if err != nil {
			return out, from, true, err
		}
		run = run[:0]
		if err := s.walkRun(r.offset, r.count, func(rec *rawRecord) bool {
			if rec.rev >= lo && rec.rev <= from && f.keep(rec) {
				run = append(run, c.event(rec))
			}
			return rec.rev < from
		}); err != nil {
			return out, from, true, err
		}
		slices.Reverse(run)
		out = append(out, run...)
		if r.firstRev <= lo || r.firstRev == 0 {
			return out, 0, true, nil
		}
		from = r.firstRev - 1
		if len(out) >= want {
			return out, from, false, nil
		}
	}
	return out, from, true, it.Error()
}

// ReadAll implements [annals.Store.ReadAll].
func (s *Store) ReadAll(ctx context.Context, opts *annals.ReadOptions) iter.Seq2[annals.RecordedEvent, error] {
	return func(yield func(annals.RecordedEvent, error) bool) {
		o, err := rules.ReadOptions(opts)
		if err == nil {
			err = ctx.Err()
		}
		if err != nil {
			yield(annals.RecordedEvent{}, err)
			return
		}
		h, err := s.visibleHead(ctx)
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

// indexFor returns the index that serves a filter (categories or types) and the names to look
// up, or ok false when the log must be scanned.
func indexFor(f *annals.Filter) (prefix byte, names []string, ok bool) {
	switch {
	case f == nil || len(f.StreamPrefixes) > 0:
		return 0, nil, false
	case len(f.Categories) > 0:
		return prefixCategory, f.Categories, true
	case len(f.EventTypes) > 0:
		return prefixType, f.EventTypes, true
	}
	return 0, nil, false
}

// logCursor is where a forward read of the log left off: the group that follows the last one
// it read starts at log offset off, if that group is in the same segment, and at position pos.
// It lets the next batch go on without an index lookup.
type logCursor struct {
	pos, off uint64
}

// allBatch reads the log forwards from position from, below hi, and returns up to about
// readBatch events with the position to continue from (hi when done). It follows the log
// from group to group, from where cur says the last batch left off, and looks a group up in
// the index only where it cannot (at the start of a read and of each segment).
func (s *Store) allBatch(ctx context.Context, from, hi uint64, cur *logCursor, f *streamFilter, c *copier, out []annals.RecordedEvent) ([]annals.RecordedEvent, uint64, error) {
	if err := ctx.Err(); err != nil {
		return out, from, err
	}
	if err := s.readLock(); err != nil {
		return out, from, err
	}
	defer s.readUnlock()
	if prefix, names, ok := indexFor(f.filter); ok {
		return s.indexBatch(prefix, names, from, hi, f, c, out)
	}
	var it *pebble.Iterator // opened on first use
	defer func() {
		if it != nil {
			it.Close()
		}
	}()
	segs := s.segs.Load()
	next := from
	scanned := 0
	for next < hi && scanned < readBatch*16 && len(out) < readBatch {
		// Position next is visible, so the group that holds it is durable: if a valid group
		// header that says so is where the last group ended, that is it.
		off := cur.off
		var seg *segment
		var h groupHeader
		var body []byte
		ok := false
		if cur.pos == next {
			seg, h, body, ok = groupAt(segs, off)
			ok = ok && h.count > 0 && h.firstPos == next
		}
		if !ok {
			var err error
			if off, err = s.findGroup(&it, next, hi); err != nil {
				return out, next, err
			}
			if seg, h, body, ok = groupAt(segs, off); !ok {
				return out, next, fmt.Errorf("%w: log offset %d: no valid group there, where the index says position %d is (rebuild the index: delete the index directory)", annals.ErrCorrupt, off, next)
			}
			if h.firstPos+uint64(h.count) <= next {
				return out, next, fmt.Errorf("%w: positions %d to %d are missing from the group index (rebuild the index: delete the index directory)", annals.ErrCorrupt, next, hi-1)
			}
		}
		cur.pos, cur.off = h.firstPos+uint64(h.count), off+groupHeaderSize+uint64(len(body))
		at := off - seg.base + groupHeaderSize
		end := at + uint64(len(body))
		for range h.count {
			rec, err := decodeRecord(seg.data[at:end])
			if err != nil {
				return out, next, fmt.Errorf("%w: %s offset %d: %w", annals.ErrCorrupt, seg.path, at, err)
			}
			at += uint64(rec.size)
			if rec.pos < next {
				continue
			}
			if rec.pos >= hi || (!f.asOf.IsZero() && rec.nanos > f.asOf.UnixNano()) {
				return out, hi, nil
			}
			next = rec.pos + 1
			scanned++
			if f.keep(&rec) {
				out = append(out, c.event(&rec))
			}
		}
	}
	return out, next, nil
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

// findGroup returns the log offset of the group that holds position pos (below hi), from the
// group index, opening *it on first use.
func (s *Store) findGroup(it **pebble.Iterator, pos, hi uint64) (uint64, error) {
	if *it == nil {
		var err error
		if *it, err = s.db.NewIter(&pebble.IterOptions{LowerBound: []byte{prefixGroup}, UpperBound: []byte{prefixGroup + 1}}); err != nil {
			return 0, err
		}
	}
	valid := (*it).SeekLT(groupKey(pos + 1))
	if !valid {
		valid = (*it).First()
	}
	if !valid {
		if err := (*it).Error(); err != nil {
			return 0, err
		}
		return 0, fmt.Errorf("%w: positions %d to %d are missing from the group index (rebuild the index: delete the index directory)", annals.ErrCorrupt, pos, hi-1)
	}
	v := (*it).Value()
	if len(v) != 8 {
		return 0, fmt.Errorf("%w: group index entry of %d bytes, want 8 (rebuild the index: delete the index directory)", annals.ErrCorrupt, len(v))
	}
	return binary.LittleEndian.Uint64(v), nil
}

// walkGroup decodes the records of the group at log offset off.
func (s *Store) walkGroup(off uint64, fn func(*rawRecord) bool) error {
	seg := s.segs.Load().find(off)
	if seg == nil {
		return fmt.Errorf("%w: log offset %d is in no segment", annals.ErrCorrupt, off)
	}
	h, ok := parseGroupHeader(seg.data[off-seg.base:])
	if !ok {
		return fmt.Errorf("%w: %s offset %d: bad group header", annals.ErrCorrupt, seg.path, off-seg.base)
	}
	return s.walkRun(off+groupHeaderSize, h.count, fn)
}

// allBatchBack reads the log backwards from position from, a group at a time, and returns the
// position to continue from (0 when done).
func (s *Store) allBatchBack(ctx context.Context, from uint64, f *streamFilter, c *copier, out []annals.RecordedEvent) ([]annals.RecordedEvent, uint64, error) {
	if err := ctx.Err(); err != nil {
		return out, 0, err
	}
	if err := s.readLock(); err != nil {
		return out, 0, err
	}
	defer s.readUnlock()
	if prefix, names, ok := indexFor(f.filter); ok {
		return s.indexBatchBack(prefix, names, from, f, c, out)
	}
	it, err := s.db.NewIter(&pebble.IterOptions{LowerBound: []byte{prefixGroup}, UpperBound: []byte{prefixGroup + 1}})
	if err != nil {
		return out, 0, err
	}
	defer it.Close()
	var group []annals.RecordedEvent
	for valid := it.SeekLT(groupKey(from + 1)); valid; valid = it.Prev() {
		first := binary.BigEndian.Uint64(it.Key()[1:])
		group = group[:0]
		if err := s.walkGroup(binary.LittleEndian.Uint64(it.Value()), func(rec *rawRecord) bool {
			if rec.pos <= from && f.keep(rec) {
				group = append(group, c.event(rec))
			}
			return rec.pos < from
		}); err != nil {
			return out, 0, err
		}
		slices.Reverse(group)
		out = append(out, group...)
		from = first - 1
		if len(out) >= readBatch {
			return out, from, nil
		}
	}
	return out, 0, it.Error()
}

// indexBatch reads forwards through the category or type index, merging the runs of the given
// names in position order.
func (s *Store) indexBatch(prefix byte, names []string, from, hi uint64, f *streamFilter, c *copier, out []annals.RecordedEvent) ([]annals.RecordedEvent, uint64, error) {
	var found []rawRecord
	// frontier is the last position up to which every name's matches were collected.
	frontier := hi - 1
	for _, name := range names {
		lo, up := nameBounds(prefix, name)
		it, err := s.db.NewIter(&pebble.IterOptions{LowerBound: lo, UpperBound: up})
		if err != nil {
			return out, from, err
		}
		valid := it.SeekLT(nameKey(prefix, name, from+1))
		if !valid {
			valid = it.First()
		}
		n := 0
		for ; valid; valid = it.Next() {
			r, err := decodeRun(it.Value())
			if err != nil {
				it.Close()
				return out, from, err
			}
			if r.firstPos >= hi {
				break
			}
			if n >= readBatch {
				frontier = min(frontier, r.firstPos-1) // this name has more from here on
				break
			}
			err = s.walkRun(r.offset, r.count, func(rec *rawRecord) bool {
				if rec.pos >= from && rec.pos < hi {
					found = append(found, *rec)
					n++
				}
				return rec.pos < hi
			})
			if err != nil {
				it.Close()
				return out, from, err
			}
		}
		if err := errors.Join(it.Error(), it.Close()); err != nil {
			return out, from, err
		}
	}
	slices.SortFunc(found, func(a, b rawRecord) int { return cmpUint(a.pos, b.pos) })
	found = slices.CompactFunc(found, func(a, b rawRecord) bool { return a.pos == b.pos })
	for i := range found {
		rec := &found[i]
		if rec.pos > frontier {
			break
		}
		if !f.asOf.IsZero() && rec.nanos > f.asOf.UnixNano() {
			return out, hi, nil
		}
		if f.keep(rec) {
			out = append(out, c.event(rec))
		}
	}
	return out, frontier + 1, nil
}

// indexBatchBack is indexBatch backwards from position from; it returns the position to
// continue from, 0 when done.
func (s *Store) indexBatchBack(prefix byte, names []string, from uint64, f *streamFilter, c *copier, out []annals.RecordedEvent) ([]annals.RecordedEvent, uint64, error) {
	var found []rawRecord
	// frontier is the first position down to which every name's matches were collected.
	frontier := uint64(1)
	for _, name := range names {
		lo, up := nameBounds(prefix, name)
		it, err := s.db.NewIter(&pebble.IterOptions{LowerBound: lo, UpperBound: up})
		if err != nil {
			return out, 0, err
		}
		n := 0
		for valid := it.SeekLT(nameKey(prefix, name, from+1)); valid; valid = it.Prev() {
			r, err := decodeRun(it.Value())
			if err != nil {
				it.Close()
				return out, 0, err
			}
			if n >= readBatch {
				frontier = max(frontier, r.firstPos+uint64(r.count)) // more below here
				break
			}
			err = s.walkRun(r.offset, r.count, func(rec *rawRecord) bool {
				if rec.pos <= from {
					found = append(found, *rec)
					n++
				}
				return rec.pos < from
			})
			if err != nil {
				it.Close()
				return out, 0, err
			}
		}
		if err := errors.Join(it.Error(), it.Close()); err != nil {
			return out, 0, err
		}
	}
	slices.SortFunc(found, func(a, b rawRecord) int { return cmpUint(b.pos, a.pos) })
	found = slices.CompactFunc(found, func(a, b rawRecord) bool { return a.pos == b.pos })
	for i := range found {
		if found[i].pos < frontier {
			break
		}
		if f.keep(&found[i]) {
			out = append(out, c.event(&found[i]))
		}
	}
	return out, frontier - 1, nil
}

func cmpUint(a, b uint64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// SubscribeAll implements [annals.Store.SubscribeAll].
func (s *Store) SubscribeAll(ctx context.Context, opts *annals.SubscribeOptions) iter.Seq2[annals.RecordedEvent, error] {
	return func(yield func(annals.RecordedEvent, error) bool) {
		o, err := rules.SubscribeOptions(opts)
		if err == nil {
			err = ctx.Err()
		}
		if err != nil {
			yield(annals.RecordedEvent{}, err)
			return
		}
		h, err := s.visibleHead(ctx)
		if err != nil {
			yield(annals.RecordedEvent{}, err)
			return
		}
		from := o.From
		if from == annals.End {
			from = h.pos + 1
		}
		k := s.newCursor("", false, from, 1, 1, streamFilter{filter: o.Filter}, 0)
		for {
			h := s.head.Load()
			if !k.follow(ctx, h.pos+1, yield) {
				return
			}
			if err := s.wait(ctx, h); err != nil {
				yield(annals.RecordedEvent{}, err)
				return
			}
		}
	}
}

// wait blocks until a head newer than h is published, ctx is done, the store closes, or it
// has failed and h holds every append answered before.
func (s *Store) wait(ctx context.Context, h *head) error {
	failed := s.failedCh
	if h.pos < s.acked.Load() {
		failed = nil // deliver what was answered before a failure first
	}
	select {
	case <-h.changed:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	case <-s.closing:
		return annals.ErrClosed
	case <-failed:
		return s.failed()
	}
}

// SubscribeStream implements [annals.Store.SubscribeStream].
func (s *Store) SubscribeStream(ctx context.Context, stream string, opts *annals.SubscribeOptions) iter.Seq2[annals.RecordedEvent, error] {
	return func(yield func(annals.RecordedEvent, error) bool) {
		o, err := rules.StreamSubscribeOptions(stream, opts)
		if err == nil {
			err = ctx.Err()
		}
		if err != nil {
			yield(annals.RecordedEvent{}, err)
			return
		}
		if _, err := s.visibleHead(ctx); err != nil {
			yield(annals.RecordedEvent{}, err)
			return
		}
		var k *cursor
		for first := true; ; first = false {
			if err := s.readLock(); err != nil {
				yield(annals.RecordedEvent{}, err)
				return
			}
			h := s.head.Load()
			v, err := s.view(stream, h, false)
			s.readUnlock()
			rs := v.rule(stream)
			if err == nil && first {
				err = rs.Tombstone("subscribe to")
			}
			if err != nil {
				yield(annals.RecordedEvent{}, err)
				return
			}
			if first {
				// Soft deletion and metadata choose where the subscription starts (maxAge
				// leaves out what it hides then); from there on it delivers every event.
				start := rules.SubscribeStart(&rs, &v.meta, o.From)
				k = s.newCursor(stream, false, start, 0, start, streamFilter{filter: o.Filter, cutoff: v.ageCutoff()}, 0)
			}
			if !k.follow(ctx, v.next, yield) {
				return
			}
			k.f.cutoff = time.Time{}
			if v.tombstoned {
				yield(annals.RecordedEvent{}, fmt.Errorf("%w: %q was tombstoned", annals.ErrStreamDeleted, stream))
				return
			}
			if err := s.wait(ctx, h); err != nil {
				yield(annals.RecordedEvent{}, err)
				return
			}
		}
	}
}

// GetMetadata implements [annals.Store.GetMetadata].
func (s *Store) GetMetadata(ctx context.Context, stream string) (annals.StreamMetadata, annals.ExpectedRevision, error) {
	if err := annals.ValidateStreamID(stream); err != nil {
		return annals.StreamMetadata{}, 0, err
	}
	if err := ctx.Err(); err != nil {
		return annals.StreamMetadata{}, 0, err
	}
	h, err := s.visibleHead(ctx)
	if err != nil {
		return annals.StreamMetadata{}, 0, err
	}
	if err := s.readLock(); err != nil {
		return annals.StreamMetadata{}, 0, err
	}
	v, err := s.view(stream, h, true)
	s.readUnlock()
	if err != nil {
		return annals.StreamMetadata{}, 0, err
	}
	rs := v.rule(stream)
	if err := rs.Tombstone("get metadata of"); err != nil {
		return annals.StreamMetadata{}, 0, err
	}
	mrs := rules.Stream{Name: annals.MetaStream(stream)}
	if v.metaExists {
		mrs.Next = v.metaRev + 1
	}
	return v.meta, rules.MetadataRevision(&mrs), nil
}

// ListStreams implements [annals.Store.ListStreams].
func (s *Store) ListStreams(ctx context.Context, opts *annals.ListOptions) iter.Seq2[annals.StreamInfo, error] {
	return func(yield func(annals.StreamInfo, error) bool) {
		o, err := rules.ListOptions(opts)
		if err == nil {
			err = ctx.Err()
		}
		if err != nil {
			yield(annals.StreamInfo{}, err)
			return
		}
		if _, err := s.visibleHead(ctx); err != nil {
			yield(annals.StreamInfo{}, err)
			return
		}
		after := o.After
		left := o.Limit
		for {
			batch, more, err := s.listBatch(ctx, o.Prefix, after)
			if err != nil {
				yield(annals.StreamInfo{}, err)
				return
			}
			for _, info := range batch {
				if !yield(info, nil) {
					return
				}
				if left > 0 {
					if left--; left == 0 {
						return
					}
				}
				after = info.Stream
			}
			if !more {
				return
			}
		}
	}
}

// listBatch lists up to readBatch existing user streams after the stream id after.
func (s *Store) listBatch(ctx context.Context, prefix, after string) ([]annals.StreamInfo, bool, error) {
	if err := ctx.Err(); err != nil {
		return nil, false, err
	}
	if err := s.readLock(); err != nil {
		return nil, false, err
	}
	defer s.readUnlock()
	h := s.head.Load()
	it, err := s.db.NewIter(&pebble.IterOptions{LowerBound: stateKey(prefix), UpperBound: []byte{prefixState + 1}})
	if err != nil {
		return nil, false, err
	}
	defer it.Close()
	valid := it.First()
	if after != "" {
		valid = it.SeekGE(append(stateKey(after), 0))
	}
	var out []annals.StreamInfo
	for ; valid; valid = it.Next() {
		stream := string(it.Key()[1:])
		if !strings.HasPrefix(stream, prefix) {
			return out, false, nil
		}
		if strings.HasPrefix(stream, "$") {
			continue
		}
		st, err := decodeStreamIndexState(it.Value())
		if err != nil {
			return out, false, err
		}
		next, err := s.visibleNext(stream, h)
		if err != nil {
			return out, false, err
		}
		if st.tombstonedAt(h.pos) || next <= st.base {
			continue
		}
		out = append(out, annals.StreamInfo{Stream: stream, Revision: next - 1, Count: next - st.base})
		if len(out) == readBatch {
			return out, true, nil
		}
	}
	return out, false, it.Error()
}
