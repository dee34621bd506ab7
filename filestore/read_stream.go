package filestore

import (
	"context"
	"encoding/binary"
	"fmt"
	"iter"
	"slices"

	"github.com/annalsdb/annals"
	"github.com/annalsdb/annals/internal/rules"
	"github.com/cockroachdb/pebble/v2"
)

// ReadStream implements [annals.Store.ReadStream].
func (s *Store) ReadStream(ctx context.Context, stream string, opts *annals.ReadOptions) iter.Seq2[annals.RecordedEvent, error] {
	return func(yield func(annals.RecordedEvent, error) bool) {
		o, err := rules.StreamReadOptions(stream, opts)
		h, err := s.readHead(ctx, err)
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

// streamBatch reads the next batch of the cursor's stream: about want events (at most about
// readBatch), looking at no more than about streamScan of them.
func (k *cursor) streamBatch(want int, out []annals.RecordedEvent) ([]annals.RecordedEvent, error) {
	lower, upper := nameBounds(prefixStream, k.stream)
	it, err := k.s.db.NewIter(&pebble.IterOptions{LowerBound: lower, UpperBound: upper})
	if err != nil {
		return out, err
	}
	defer it.Close()
	valid := k.seek(it, nameKey(prefixStream, k.stream, k.at()+1))
	segs := k.s.segs.Load()
	var runs [64]streamRun
	scanned := 0
	for valid {
		// Gather the next runs, enough for the batch, and touch their first records all at
		// once: a stream's records lie all over the log, and fetching them one by one as they
		// are decoded would wait for memory once per event instead of once per gathering.
		n, covered, need := 0, uint64(0), uint64(max(want-len(out), 1))
		for ; valid && n < len(runs) && covered < need; valid = k.step(it) {
			r, err := parseStreamRun(it)
			if err != nil {
				return out, err
			}
			end := r.firstRev + uint64(r.count)
			if k.beyond(r.firstRev, end) {
				valid = false
				break
			}
			runs[n] = r
			n++
			covered += overlap(r.firstRev, end, k.lo, k.hi)
		}
		k.c.touch(segs, runs[:n])
		for i := range runs[:n] {
			r := &runs[i]
			start := len(out)
			var stopped bool
			if out, stopped, err = k.appendRun(segs, r, want, &scanned, out); err != nil || stopped {
				return out, err
			}
			if k.backwards {
				slices.Reverse(out[start:])
			}
			k.consume(r.firstRev, r.firstRev+uint64(r.count))
			if k.done() || len(out) >= want || scanned >= streamScan {
				return out, nil
			}
		}
	}
	if err := it.Error(); err != nil {
		return out, err
	}
	k.finish()
	return out, nil
}

// appendRun decodes the records of the run r, checking them against the index, and appends
// those in the cursor's range that its filter keeps, in log order. Forwards, it stops at the
// first record in range once the batch is full (want events, or streamScan looked at), leaves
// the cursor there and returns stopped; backwards, it always reads the run to its end (the
// caller then reverses what it appended).
func (k *cursor) appendRun(segs *segmentList, r *streamRun, want int, scanned *int, out []annals.RecordedEvent) (_ []annals.RecordedEvent, stopped bool, _ error) {
	seg := segs.find(r.offset)
	if seg == nil {
		return out, false, fmt.Errorf("%w: log offset %d is in no segment (rebuild the index: delete the index directory)", annals.ErrCorrupt, r.offset)
	}
	at := r.offset - seg.base
	for rev := r.firstRev; rev < r.firstRev+uint64(r.count); rev++ {
		rec, err := decodeAt(seg, at)
		if err != nil {
			return out, false, err
		}
		if rec.rev != rev || string(rec.stream) != k.stream {
			return out, false, fmt.Errorf("%w: stream %q: index and log disagree at revision %d (rebuild the index: delete the index directory)", annals.ErrCorrupt, k.stream, rev)
		}
		at += uint64(rec.size)
		if rev < k.lo {
			continue
		}
		if rev >= k.hi {
			break
		}
		if !k.backwards && (*scanned >= streamScan || len(out) >= want) {
			k.lo = rev
			return out, true, nil
		}
		*scanned++
		if k.f.keep(&rec) {
			out = append(out, k.c.event(&rec))
		}
	}
	return out, false, nil
}

// overlap returns how many of first … end-1 are in lo … hi-1.
func overlap(first, end, lo, hi uint64) uint64 {
	a, b := max(first, lo), min(end, hi)
	if a >= b {
		return 0
	}
	return b - a
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
