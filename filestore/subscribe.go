package filestore

import (
	"context"
	"fmt"
	"iter"
	"time"

	"github.com/annalsdb/annals"
	"github.com/annalsdb/annals/internal/rules"
)

// SubscribeAll implements [annals.Store.SubscribeAll].
func (s *Store) SubscribeAll(ctx context.Context, opts *annals.SubscribeOptions) iter.Seq2[annals.RecordedEvent, error] {
	return func(yield func(annals.RecordedEvent, error) bool) {
		o, err := rules.SubscribeOptions(opts)
		h, err := s.readHead(ctx, err)
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
		if _, err := s.readHead(ctx, err); err != nil {
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
