package filestore

import (
	"cmp"
	"errors"
	"slices"

	"github.com/annalsdb/annals"
	"github.com/cockroachdb/pebble/v2"
)

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

// indexBatch reads the next batch of the log through the category or type index, merging the
// runs of the given names in position order (in the cursor's direction). It collects up to
// readBatch matches of each name, and returns those in the part of the range in which it
// collected every name's.
func (k *cursor) indexBatch(prefix byte, names []string, want int, out []annals.RecordedEvent) ([]annals.RecordedEvent, error) {
	found := k.found[:0]
	// lo … hi-1 narrows to the part of the range in which every name's matches were collected.
	lo, hi := k.lo, k.hi
	for _, name := range names {
		var err error
		if found, err = k.collect(prefix, name, found, &lo, &hi); err != nil {
			return out, err
		}
	}
	slices.SortFunc(found, func(a, b rawRecord) int {
		if k.backwards {
			return cmp.Compare(b.pos, a.pos)
		}
		return cmp.Compare(a.pos, b.pos)
	})
	found = slices.CompactFunc(found, func(a, b rawRecord) bool { return a.pos == b.pos })
	k.found = found
	for i := range found {
		rec := &found[i]
		if rec.pos < lo || rec.pos >= hi {
			break
		}
		if !k.backwards && !k.f.asOf.IsZero() && rec.nanos > k.f.asOf.UnixNano() {
			k.hi, hi = rec.pos, rec.pos // the log is in the order of time: the read ends here
			break
		}
		if k.f.keep(rec) {
			out = append(out, k.c.event(rec))
		}
	}
	k.consume(lo, hi)
	return out, nil
}

// collect appends to found the records of up to readBatch matches of name, from where the
// cursor is, in its direction, and narrows *lo … *hi-1 to the part of the range they cover.
func (k *cursor) collect(prefix byte, name string, found []rawRecord, lo, hi *uint64) ([]rawRecord, error) {
	lower, upper := nameBounds(prefix, name)
	it, err := k.s.db.NewIter(&pebble.IterOptions{LowerBound: lower, UpperBound: upper})
	if err != nil {
		return found, err
	}
	n := 0
	for valid := k.seek(it, nameKey(prefix, name, k.at()+1)); valid; valid = k.step(it) {
		r, err := decodeRun(it.Value())
		if err != nil {
			it.Close()
			return found, err
		}
		end := r.firstPos + uint64(r.count)
		if k.beyond(r.firstPos, end) {
			break
		}
		if n >= readBatch { // this name has more from here on
			if k.backwards {
				*lo = max(*lo, end)
			} else {
				*hi = min(*hi, r.firstPos)
			}
			break
		}
		err = k.s.walkRun(r.offset, r.count, func(rec *rawRecord) bool {
			if rec.pos >= k.lo && rec.pos < k.hi {
				found = append(found, *rec)
				n++
			}
			return rec.pos < k.hi
		})
		if err != nil {
			it.Close()
			return found, err
		}
	}
	return found, errors.Join(it.Error(), it.Close())
}
