package pgstore

import (
	"context"
	"fmt"
	"iter"
	"strconv"
	"time"

	"github.com/annalsdb/annals"
	"github.com/annalsdb/annals/internal/rules"
	"github.com/jackc/pgx/v5"
)

// wait blocks until changed is closed, ctx is done or the store closes, and returns the
// error that ends the subscription in the last two cases.
func (s *Store) wait(ctx context.Context, changed <-chan struct{}) error {
	select {
	case <-changed:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	case <-s.closed:
		return annals.ErrClosed
	}
}

// SubscribeAll implements [annals.Store.SubscribeAll].
//
// It reads the log in pages from storage, so that a slow consumer costs one page of memory and
// never holds up writers. Between pages it waits for the head of the log to pass what it has
// seen (the store learns that from its own commits, from NOTIFY, and from one poll per
// Options.PollInterval); an idle subscription runs no query. It never skips an event: every
// committed position is below the head, and positions commit in order (see the package doc),
// so a page that ends below the head it saw has seen everything up to that head.
func (s *Store) SubscribeAll(ctx context.Context, opts *annals.SubscribeOptions) iter.Seq2[annals.RecordedEvent, error] {
	return func(yield func(annals.RecordedEvent, error) bool) {
		o, err := rules.SubscribeOptions(opts)
		if err != nil {
			yield(annals.RecordedEvent{}, err)
			return
		}
		if err := s.begin(ctx); err != nil {
			yield(annals.RecordedEvent{}, err)
			return
		}
		from := max(o.From, 1)
		if o.From == annals.End {
			head, err := s.readHead(ctx)
			if err != nil {
				yield(annals.RecordedEvent{}, s.fail(ctx, "subscribe to $all", err))
				return
			}
			from = head + 1
		}
		var seen uint64
		first := true
		for {
			known, changed := s.watch()
			if first || known > seen {
				first = false
				if err := s.begin(ctx); err != nil {
					yield(annals.RecordedEvent{}, err)
					return
				}
				var head int64
				size := s.opts.ReadBatch
				fetch := func(ctx context.Context) ([]annals.RecordedEvent, bool, error) {
					limit := size
					size = min(2*size, maxPageFactor*s.opts.ReadBatch)
					query, args := s.allQuery(o.Filter, false, from, maxPosition, time.Time{}, limit)
					var evs []annals.RecordedEvent
					cut := false
					b := &pgx.Batch{}
					b.Queue(s.sql.head).QueryRow(func(row pgx.Row) error { return row.Scan(&head) })
					b.Queue(query, args...).Query(func(rows pgx.Rows) (err error) {
						evs, cut, err = scanEvents(rows, smallPage)
						return err
					})
					if err := s.pool.SendBatch(ctx, b).Close(); err != nil {
						return nil, false, err
					}
					if len(evs) > 0 {
						from = evs[len(evs)-1].Position + 1
					}
					more := cut || len(evs) == limit
					if !more {
						// The page was read after the head: it holds every match up to the head.
						from = max(from, uint64(head)+1)
					}
					return evs, more, nil
				}
				if !s.drain(ctx, "subscribe to $all", fetch, func(e annals.RecordedEvent) bool { return yield(e, nil) }, yield) {
					return
				}
				seen = uint64(head)
				s.advance(seen, false)
			}
			if err := s.wait(ctx, changed); err != nil {
				yield(annals.RecordedEvent{}, err)
				return
			}
		}
	}
}

// SubscribeStream implements [annals.Store.SubscribeStream], as [Store.SubscribeAll] does
// for the log. The stream's soft deletion and metadata choose where it starts, once; from then
// on it delivers every event of the stream. When the stream is tombstoned it delivers the
// events written before the tombstone, then ends with [annals.ErrStreamDeleted].
func (s *Store) SubscribeStream(ctx context.Context, stream string, opts *annals.SubscribeOptions) iter.Seq2[annals.RecordedEvent, error] {
	return func(yield func(annals.RecordedEvent, error) bool) {
		o, err := rules.StreamSubscribeOptions(stream, opts)
		if err != nil {
			yield(annals.RecordedEvent{}, err)
			return
		}
		if err := s.begin(ctx); err != nil {
			yield(annals.RecordedEvent{}, err)
			return
		}
		op := "subscribe to " + strconv.Quote(stream)
		v, err := s.viewStream(ctx, stream)
		if err != nil {
			yield(annals.RecordedEvent{}, s.fail(ctx, op, err))
			return
		}
		rs := v.rule(stream)
		if err := rs.Tombstone("subscribe to"); err != nil {
			yield(annals.RecordedEvent{}, err)
			return
		}
		// The stream's soft deletion and metadata choose where it starts, once; the pages
		// leave out what maxAge hides as of now (v.after), which no later event is.
		from := rules.SubscribeStart(&rs, &v.meta, o.From)
		var seen uint64
		first := true
		for {
			known, changed := s.watch()
			if first || known > seen {
				first = false
				if err := s.begin(ctx); err != nil {
					yield(annals.RecordedEvent{}, err)
					return
				}
				var head int64
				var tombstoned bool
				size := s.opts.ReadBatch
				fetch := func(ctx context.Context) ([]annals.RecordedEvent, bool, error) {
					limit := size
					size = min(2*size, maxPageFactor*s.opts.ReadBatch)
					var evs []annals.RecordedEvent
					cut := false
					// In this order, each statement with a later snapshot: once the stream
					// shows its tombstone, the page read after it holds all its events.
					b := &pgx.Batch{}
					b.Queue(s.sql.head).QueryRow(func(row pgx.Row) error { return row.Scan(&head) })
					b.Queue(s.sql.streamTombstoned, stream).QueryRow(func(row pgx.Row) error { return row.Scan(&tombstoned) })
					b.Queue(s.sql.streamPageFwd, stream, int64(from), int64(maxPosition), v.after, noUpperTime, limit).
						Query(func(rows pgx.Rows) (err error) {
							evs, cut, err = scanEvents(rows, smallPage)
							return err
						})
					if err := s.pool.SendBatch(ctx, b).Close(); err != nil {
						return nil, false, err
					}
					if len(evs) > 0 {
						from = evs[len(evs)-1].Revision + 1
					}
					return evs, cut || len(evs) == limit, nil
				}
				emit := func(e annals.RecordedEvent) bool { return !o.Filter.Match(e.Stream, e.Type) || yield(e, nil) }
				if !s.drain(ctx, op, fetch, emit, yield) {
					return
				}
				if tombstoned {
					yield(annals.RecordedEvent{}, fmt.Errorf("subscription to %q: %w", stream, annals.ErrStreamDeleted))
					return
				}
				seen = uint64(head)
				s.advance(seen, false)
			}
			if err := s.wait(ctx, changed); err != nil {
				yield(annals.RecordedEvent{}, err)
				return
			}
		}
	}
}
