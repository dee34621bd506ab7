package filestore

import (
	"context"

	"github.com/annalsdb/annals"
	"github.com/cockroachdb/pebble/v2"
)

// Reads run in batches: each batch holds the read lock (so that Close cannot unmap the log
// under it), copies up to readBatch events out of the log, and releases the lock before the
// events are yielded. A consumer may therefore take as long as it likes, or call Close.
const readBatch = 256

// A batch also ends after it has looked at streamScan events of a stream, or logScan events
// of the log, however few of them its filter kept, so that a read that skips most events holds
// the read lock for a bounded time.
const (
	streamScan = readBatch * 4
	logScan    = readBatch * 16
)

// cursor is a read of one stream (by revision) or of the log (by position) in one direction: it
// carries the direction and the range left to read, and hands out the events in batches, each
// read under the read lock, so that the read goes on where the last batch ended and the
// consumer runs with no lock held.
//
// The code that reads a batch is the same in both directions: it walks the index with
// [cursor.seek] and [cursor.step], decodes each run or group of records in log order, keeps
// those in the range, and gives what it read back with [cursor.consume]. Backwards, each run
// or group it appended is then reversed in place.
type cursor struct {
	s         *Store
	stream    string // "" for the log
	backwards bool
	// lo and hi bound what is left to read (lo inclusive, hi exclusive): forwards the read takes
	// from lo up, backwards from hi down. It is done when lo >= hi.
	lo, hi uint64
	f      streamFilter
	c      *copier
	log    logCursor              // where a forward read of the log left off
	batch  []annals.RecordedEvent // reused from batch to batch
	found  []rawRecord            // reused by index reads
}

// newCursor returns a cursor over lo … hi-1 that starts at from: forwards at max(from, lo),
// backwards at min(from, hi-1). For the log, lo is 1.
func (s *Store) newCursor(stream string, backwards bool, from, lo, hi uint64, f streamFilter, limit int) *cursor {
	if backwards && from < hi {
		hi = from + 1
	} else if !backwards {
		lo = max(from, lo)
	}
	k := &cursor{s: s, stream: stream, backwards: backwards, lo: lo, hi: hi, f: f, c: newCopier()}
	if hi > lo {
		k.batch = make([]annals.RecordedEvent, 0, batchCap(hi-lo, limit))
	}
	return k
}

// done reports whether the range is read.
func (k *cursor) done() bool { return k.lo >= k.hi }

// at returns the revision or position the next batch starts at; the range is not empty.
func (k *cursor) at() uint64 {
	if k.backwards {
		return k.hi - 1
	}
	return k.lo
}

// seek puts it on the index entry (keyed by the first revision or position of its run or group)
// that holds the revision or position at: the last entry whose key is below key, at+1 encoded
// (and forwards, when there is none, the first entry).
func (k *cursor) seek(it *pebble.Iterator, key []byte) bool {
	if it.SeekLT(key) {
		return true
	}
	return !k.backwards && it.First()
}

// step moves it to the next index entry in the cursor's direction.
func (k *cursor) step(it *pebble.Iterator) bool {
	if k.backwards {
		return it.Prev()
	}
	return it.Next()
}

// beyond reports whether a run or group that holds first … end-1 lies past the range in the
// cursor's direction, and so does every one after it.
func (k *cursor) beyond(first, end uint64) bool {
	if k.backwards {
		return end <= k.lo
	}
	return first >= k.hi
}

// consume takes first … end-1, read whole, off the near end of the range.
func (k *cursor) consume(first, end uint64) {
	if k.backwards {
		k.hi = max(min(k.hi, first), k.lo)
	} else {
		k.lo = min(max(k.lo, end), k.hi)
	}
}

// finish ends the read: the index holds nothing more in range.
func (k *cursor) finish() {
	if k.backwards {
		k.hi = k.lo
	} else {
		k.lo = k.hi
	}
}

// read yields the events of the cursor's range, up to limit (0 = none).
func (k *cursor) read(ctx context.Context, limit int, yield func(annals.RecordedEvent, error) bool) {
	left := limit
	for !k.done() {
		batch, err := k.nextBatch(ctx, batchWant(left))
		if err != nil {
			yield(annals.RecordedEvent{}, err)
			return
		}
		if !yieldAll(batch, &left, yield) {
			return
		}
	}
}

// nextBatch returns the next batch of about want events (it may be empty while the range goes
// on, and backwards it may hold more, up to the end of a run or group), and moves the cursor
// past it.
func (k *cursor) nextBatch(ctx context.Context, want int) ([]annals.RecordedEvent, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if err := k.s.readLock(); err != nil {
		return nil, err
	}
	defer k.s.readUnlock()
	var err error
	out := k.batch[:0]
	if k.stream != "" {
		out, err = k.streamBatch(want, out)
	} else if prefix, names, ok := indexFor(k.f.filter); ok {
		out, err = k.indexBatch(prefix, names, want, out)
	} else {
		out, err = k.logBatch(want, out)
	}
	k.batch = out
	return out, err
}

// follow moves the end of a forward cursor to hi (a subscription's new head) and yields what
// was appended up to there, in batches of readBatch; it returns false when the subscription
// must end (the consumer stopped, or an error was yielded).
func (k *cursor) follow(ctx context.Context, hi uint64, yield func(annals.RecordedEvent, error) bool) bool {
	k.hi = max(k.hi, hi)
	for !k.done() {
		batch, err := k.nextBatch(ctx, readBatch)
		if err != nil {
			yield(annals.RecordedEvent{}, err)
			return false
		}
		for _, ev := range batch {
			if !yield(ev, nil) {
				return false
			}
		}
	}
	return true
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
