package filestore

import (
	"context"

	"github.com/annalsdb/annals"
)

// cursor is a read of one stream (by revision) or of the log (by position) in one direction: it
// carries the direction and the range, and hands out the events in batches, each read under
// the read lock, so that the read goes on where the last batch ended and the consumer runs
// with no lock held.
type cursor struct {
	s         *Store
	stream    string // "" for the log
	backwards bool
	// next is the revision or position the next batch starts at; lo and hi bound the range
	// (lo inclusive, hi exclusive). done is set once the range is read.
	next, lo, hi uint64
	done         bool
	f            streamFilter
	c            *copier
	log          logCursor // where a forward read of the log left off
	batch        []annals.RecordedEvent
}

// newCursor returns a cursor over lo … hi-1 that starts at from: forwards at max(from, lo),
// backwards at min(from, hi-1). For the log, lo is 1.
func (s *Store) newCursor(stream string, backwards bool, from, lo, hi uint64, f streamFilter, limit int) *cursor {
	k := &cursor{s: s, stream: stream, backwards: backwards, lo: lo, hi: hi, f: f, c: newCopier()}
	switch {
	case !backwards:
		k.next = max(from, lo)
		k.done = k.next >= hi
	case hi == 0:
		k.done = true
	default:
		k.next = min(from, hi-1)
		k.done = hi <= lo || k.next < lo
	}
	if hi > lo {
		k.batch = make([]annals.RecordedEvent, 0, batchCap(hi-lo, limit))
	}
	return k
}

// read yields the events of the cursor's range, up to limit (0 = none).
func (k *cursor) read(ctx context.Context, limit int, yield func(annals.RecordedEvent, error) bool) {
	left := limit
	for !k.done {
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

// nextBatch returns the next batch of at most about want events (it may be empty while the
// range goes on), and moves the cursor past it.
func (k *cursor) nextBatch(ctx context.Context, want int) ([]annals.RecordedEvent, error) {
	var err error
	out := k.batch[:0]
	switch {
	case k.stream != "" && !k.backwards:
		out, k.next, err = k.s.streamBatch(ctx, k.stream, k.next, k.hi, want, &k.f, k.c, out)
		k.done = k.next >= k.hi
	case k.stream != "":
		out, k.next, k.done, err = k.s.streamBatchBack(ctx, k.stream, k.next, k.lo, want, &k.f, k.c, out)
	case !k.backwards:
		out, k.next, err = k.s.allBatch(ctx, k.next, k.hi, &k.log, &k.f, k.c, out)
		k.done = k.next >= k.hi
	default:
		out, k.next, err = k.s.allBatchBack(ctx, k.next, &k.f, k.c, out)
		k.done = k.next < k.lo
	}
	k.batch = out
	return out, err
}

// follow moves the end of a forward cursor to hi (a subscription's new head) and yields what
// was appended up to there, in batches of readBatch; it returns false when the subscription
// must end (the consumer stopped, or an error was yielded).
func (k *cursor) follow(ctx context.Context, hi uint64, yield func(annals.RecordedEvent, error) bool) bool {
	k.hi = max(k.hi, hi)
	k.done = k.next >= k.hi
	for !k.done {
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
