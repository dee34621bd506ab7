package pgstore

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"iter"
	"math"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/annalsdb/annals"
	"github.com/annalsdb/annals/internal/rules"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgtype"
)

// pageBytes bounds the event bytes one page of a read holds in memory. A read's first page
// has at most Options.ReadBatch events; each full page doubles the next one, up to
// maxPageFactor times ReadBatch, so that long reads pay few round trips and short ones fetch
// little.
const (
	pageBytes     = 8 << 20
	maxPageFactor = 16
	// maxPrealloc bounds the events a page's slice is allocated for up front; smallPage is
	// what it starts at when the page's size is not known.
	maxPrealloc = 1 << 16
	smallPage   = 64
)

var (
	noLowerTime = pgtype.Timestamptz{InfinityModifier: pgtype.NegativeInfinity, Valid: true}
	noUpperTime = pgtype.Timestamptz{InfinityModifier: pgtype.Infinity, Valid: true}
)

// scanEvents reads rows of [eventColumns] into events, up to pageBytes. It reports whether it
// stopped early because of that bound, so that a short page does not look like the end.
//
// hint is how many rows the page is expected to hold (exactly, when the caller knows it):
// the slice is allocated for that many (at most maxPrealloc) and doubles when full. Growing
// it by plain appends from a few events copied each event many times over, a third of a
// long read's CPU. Each row is decoded in place into its element (see decodeEvent), so that
// no event is allocated on its own and copied.
func scanEvents(rows pgx.Rows, hint int) (evs []annals.RecordedEvent, cut bool, err error) {
	defer rows.Close()
	evs = make([]annals.RecordedEvent, 0, max(1, min(hint, maxPrealloc)))
	var pos, rev int64
	var id pgtype.UUID
	var tm time.Time
	size := 0
	// Streams and types repeat from event to event: share their strings within a page.
	names := map[string]string{}
	streams, types, cts := interner{m: names}, interner{m: names}, interner{m: names}
	fast := binaryEventRows(rows.FieldDescriptions())
	var stream, typ, ct []byte
	for rows.Next() {
		if len(evs) == cap(evs) {
			evs = append(make([]annals.RecordedEvent, 0, 2*cap(evs)), evs...)
		}
		evs = evs[:len(evs)+1]
		e := &evs[len(evs)-1]
		if v := rows.RawValues(); fast && decodeEvent(v, e) {
			// The strings are interned from pgx's buffer, valid until the next row.
			e.Stream, e.Type, e.ContentType = streams.get(v[1]), types.get(v[4]), cts.get(v[5])
		} else {
			if err := rows.Scan(&pos, &stream, &rev, &id, &typ, &ct, &e.Data, &e.Metadata, &tm); err != nil {
				return nil, false, err
			}
			e.Position, e.Revision, e.ID, e.Time = uint64(pos), uint64(rev), id.Bytes, tm.UTC()
			e.Stream, e.Type, e.ContentType = streams.get(stream), types.get(typ), cts.get(ct)
		}
		if size += len(e.Data) + len(e.Metadata); size >= pageBytes {
			return evs, true, nil
		}
	}
	return evs, false, rows.Err()
}

// interner shares the strings of a page (m, which interners of several columns may share); it
// checks the last string it returned first, since a column usually repeats its value.
type interner struct {
	m    map[string]string
	last string
}

func (n *interner) get(b []byte) string {
	if string(b) == n.last {
		return n.last
	}
	s, ok := n.m[string(b)]
	if !ok {
		s = string(b)
		n.m[s] = s
	}
	n.last = s
	return s
}

// eventOIDs are the types of [eventColumns], in order.
var eventOIDs = [...]uint32{pgtype.Int8OID, pgtype.TextOID, pgtype.Int8OID, pgtype.UUIDOID, pgtype.TextOID,
	pgtype.TextOID, pgtype.ByteaOID, pgtype.ByteaOID, pgtype.TimestamptzOID}

// binaryEventRows reports whether rows of [eventColumns] come in the binary formats
// decodeEvent reads (pgx's default; not with the simple protocol). Text is the same in both.
func binaryEventRows(fds []pgconn.FieldDescription) bool {
	if len(fds) != len(eventOIDs) {
		return false
	}
	for i, fd := range fds {
		// text is the same in both formats, and pgx asks for it as text.
		if fd.DataTypeOID != eventOIDs[i] || (fd.Format != pgtype.BinaryFormatCode && fd.DataTypeOID != pgtype.TextOID) {
			return false
		}
	}
	return true
}

// pgEpoch is PostgreSQL's epoch of timestamps, in Unix microseconds.
const pgEpoch = 946684800 * 1_000_000

// decodeEvent decodes the binary values of one row of [eventColumns] into e, except the
// strings (the caller interns them), as rows.Scan would but without its per-column
// dispatch, and with data and metadata in one allocation. It reports false, having written
// nothing, for a value it does not handle (a NULL, an infinite time): the caller scans then.
func decodeEvent(v [][]byte, e *annals.RecordedEvent) bool {
	if len(v[0]) != 8 || len(v[2]) != 8 || len(v[3]) != 16 || len(v[8]) != 8 || v[6] == nil || v[7] == nil {
		return false
	}
	us := int64(binary.BigEndian.Uint64(v[8]))
	if us == math.MaxInt64 || us == math.MinInt64 {
		return false
	}
	e.Position, e.Revision = binary.BigEndian.Uint64(v[0]), binary.BigEndian.Uint64(v[2])
	e.ID = [16]byte(v[3])
	e.Time = time.UnixMicro(us + pgEpoch).UTC()
	// Capacities end at each value's length, so that appending to one cannot overwrite
	// the other.
	nd := len(v[6])
	buf := make([]byte, nd+len(v[7]))
	copy(buf, v[6])
	copy(buf[nd:], v[7])
	e.Data, e.Metadata = buf[:nd:nd], buf[nd:]
	return true
}

// asOfBound returns the upper time bound of a read as of t: times are stored in microseconds,
// so an event is recorded at or before t exactly when its time is at or before t truncated.
func asOfBound(t time.Time) pgtype.Timestamptz {
	if t.IsZero() {
		return noUpperTime
	}
	return pgtype.Timestamptz{Time: t.Truncate(time.Microsecond), Valid: true}
}

// streamView is what a read of a stream needs to know of it when it starts.
type streamView struct {
	found, tombstoned bool
	next, base        uint64
	meta              annals.StreamMetadata
	// lo is the first revision the stream's soft deletion and metadata leave visible.
	lo uint64
	// after hides events recorded at or before it (the stream's maxAge); -infinity for none.
	after pgtype.Timestamptz
}

// queueView queues the read of the state of stream into b, to fill v, with the stream's
// metadata applied as of now.
func (s *Store) queueView(b *pgx.Batch, stream string, v *streamView) {
	v.after = noLowerTime
	b.Queue(s.sql.streamState, stream, annals.MetaStream(stream)).Query(func(rows pgx.Rows) error {
		var next, base int64
		var data []byte
		var now time.Time
		for rows.Next() {
			if err := rows.Scan(&next, &base, &v.tombstoned, &data, &now); err != nil {
				return err
			}
			v.found = true
		}
		if err := rows.Err(); err != nil || !v.found {
			return err
		}
		v.next, v.base = uint64(next), uint64(base)
		if data != nil {
			if err := json.Unmarshal(data, &v.meta); err != nil {
				return fmt.Errorf("%w: metadata of stream %q does not decode: %w", annals.ErrCorrupt, stream, err)
			}
		}
		rs := v.rule(stream)
		v.lo = rules.VisibleFrom(&rs, &v.meta)
		if cutoff, ok := rules.AgeCutoff(&v.meta, now); ok {
			v.after = pgtype.Timestamptz{Time: cutoff, Valid: true}
		}
		return nil
	})
}

// viewStream reads the state of stream (see queueView).
func (s *Store) viewStream(ctx context.Context, stream string) (streamView, error) {
	var v streamView
	b := &pgx.Batch{}
	s.queueView(b, stream, &v)
	return v, s.pool.SendBatch(ctx, b).Close()
}

// ReadStream implements [annals.Store.ReadStream]. It reads the stream as it is when the
// iteration starts (events appended later are not read), in pages (see pageBytes) fetched
// one ahead of the consumer; no connection is held while the consumer runs.
func (s *Store) ReadStream(ctx context.Context, stream string, opts *annals.ReadOptions) iter.Seq2[annals.RecordedEvent, error] {
	return func(yield func(annals.RecordedEvent, error) bool) {
		o, err := rules.StreamReadOptions(stream, opts)
		if err != nil {
			yield(annals.RecordedEvent{}, err)
			return
		}
		if err := s.begin(ctx); err != nil {
			yield(annals.RecordedEvent{}, err)
			return
		}
		op := "read " + strconv.Quote(stream)
		before := asOfBound(o.AsOf)
		// One round trip for the stream's state and, optimistically, its first page: the
		// page is read after the state, and what the state hides is filtered out below.
		var v streamView
		var first []annals.RecordedEvent
		var firstCut bool
		b := &pgx.Batch{}
		s.queueView(b, stream, &v)
		if o.Backwards {
			b.Queue(s.sql.streamPageBwd, stream, int64(min(o.From, maxPosition)), int64(0), noLowerTime, before, s.opts.ReadBatch).
				Query(func(rows pgx.Rows) (err error) { first, firstCut, err = scanEvents(rows, smallPage); return err })
		} else {
			b.Queue(s.sql.streamPageFwd, stream, int64(min(o.From, maxPosition)), int64(maxPosition), noLowerTime, before, s.opts.ReadBatch).
				Query(func(rows pgx.Rows) (err error) { first, firstCut, err = scanEvents(rows, smallPage); return err })
		}
		err = s.pool.SendBatch(ctx, b).Close()
		if err != nil {
			err = s.fail(ctx, op, err)
		} else {
			rs := v.rule(stream)
			err = rules.Readable(&rs, "read")
		}
		if err != nil {
			yield(annals.RecordedEvent{}, err)
			return
		}
		hi := v.next // exclusive
		if o.Until > 0 {
			hi = min(hi, o.Until)
		}
		if hi <= v.lo {
			return
		}
		visible := func(e *annals.RecordedEvent) bool {
			return e.Revision >= v.lo && e.Revision < hi && (v.after.InfinityModifier == pgtype.NegativeInfinity || e.Time.After(v.after.Time))
		}
		// Where the pages after the first go on, and whether there are any.
		var cur uint64
		more := len(first) == s.opts.ReadBatch || firstCut
		if o.Backwards {
			cur = min(o.From, hi-1)
			if len(first) > 0 {
				last := first[len(first)-1].Revision
				more = more && last > v.lo
				cur = min(cur, last-1)
			}
			more = more && cur >= v.lo
		} else {
			cur = max(o.From, v.lo)
			if len(first) > 0 {
				cur = max(cur, first[len(first)-1].Revision+1)
			}
			more = more && cur < hi
		}
		size := 2 * s.opts.ReadBatch
		fetch := func(ctx context.Context) ([]annals.RecordedEvent, bool, error) {
			if first != nil || !more {
				evs, m := first, more
				first, more = nil, true
				return evs, m, nil
			}
			var rows pgx.Rows
			var err error
			limit := size
			size = min(2*size, maxPageFactor*s.opts.ReadBatch)
			// The page holds at most the revisions left in the range, usually exactly.
			var hint uint64
			if o.Backwards {
				hint = cur - v.lo + 1
				rows, err = s.pool.Query(ctx, s.sql.streamPageBwd, stream, int64(cur), int64(v.lo), v.after, before, limit)
			} else {
				hint = hi - cur
				rows, err = s.pool.Query(ctx, s.sql.streamPageFwd, stream, int64(cur), int64(hi), v.after, before, limit)
			}
			if err != nil {
				return nil, false, err
			}
			evs, cut, err := scanEvents(rows, int(min(hint, uint64(limit))))
			m := len(evs) == limit || cut
			if m {
				last := evs[len(evs)-1].Revision
				if o.Backwards {
					m = last > v.lo
					cur = last - 1
				} else {
					cur = last + 1
					m = cur < hi
				}
			}
			return evs, m, err
		}
		n := 0
		s.drain(ctx, op, fetch, func(e annals.RecordedEvent) bool {
			if !visible(&e) || !o.Filter.Match(e.Stream, e.Type) {
				return true
			}
			if !yield(e, nil) {
				return false
			}
			n++
			return o.Limit == 0 || n < o.Limit
		}, yield)
	}
}

// rule is the stream's state as the shared rules see it.
func (v *streamView) rule(stream string) rules.Stream {
	return rules.Stream{Name: stream, Next: v.next, Base: v.base, Tombstoned: v.tombstoned}
}

// allQuery builds the query of one page of $all: events from position cur (inclusive)
// towards hi (exclusive, forwards) or 1 (backwards) that f and asOf keep, at most limit. A
// filter on categories or on event types (without stream prefixes) becomes one index range
// scan per category or type, merged by position; stream prefixes scan the log in order.
func (s *Store) allQuery(f *annals.Filter, backwards bool, cur, hi uint64, asOf time.Time, limit int) (string, []any) {
	args := []any{int64(cur), int64(hi), limit}
	arg := func(v any) string {
		args = append(args, v)
		return "$" + strconv.Itoa(len(args))
	}
	order, cond := "position", "position >= $1 AND position < $2"
	if backwards {
		order, cond = "position DESC", "position <= $1 AND position >= $2"
		args[1] = int64(1)
	}
	if !asOf.IsZero() {
		cond += " AND time <= " + arg(asOfBound(asOf))
	}
	branch := func(where string) string {
		return "SELECT " + eventColumns + " FROM " + s.schema + ".events WHERE " + where + " ORDER BY " + order + " LIMIT $3"
	}
	union := func(column string, values []string, extra string) string {
		var parts []string
		values = slices.Compact(slices.Sorted(slices.Values(values))) // a value twice would yield its events twice
		for _, v := range values {
			parts = append(parts, "("+branch(column+" = "+arg(v)+" AND "+cond+extra)+")")
		}
		if len(parts) == 1 {
			return parts[0]
		}
		return "SELECT * FROM (" + strings.Join(parts, " UNION ALL ") + ") u ORDER BY " + order + " LIMIT $3"
	}
	switch {
	case f == nil || (len(f.StreamPrefixes) == 0 && len(f.Categories) == 0 && len(f.EventTypes) == 0):
		return branch(cond), args
	case len(f.StreamPrefixes) == 0 && len(f.Categories) > 0:
		extra := ""
		if len(f.EventTypes) > 0 {
			extra = " AND type = ANY(" + arg(f.EventTypes) + "::text[])"
		}
		return union("category", f.Categories, extra), args
	case len(f.StreamPrefixes) == 0:
		return union("type", f.EventTypes, ""), args
	}
	var or []string
	for _, p := range f.StreamPrefixes {
		or = append(or, "starts_with(stream, "+arg(p)+"::text)")
	}
	if len(f.Categories) > 0 {
		or = append(or, "category = ANY("+arg(f.Categories)+"::text[])")
	}
	where := cond + " AND (" + strings.Join(or, " OR ") + ")"
	if len(f.EventTypes) > 0 {
		where += " AND type = ANY(" + arg(f.EventTypes) + "::text[])"
	}
	return branch(where), args
}

// ReadAll implements [annals.Store.ReadAll]. It reads the log as it is when the iteration
// starts (up to the head it sees then), in pages (see pageBytes) fetched one ahead of the
// consumer; no connection is held while the consumer runs.
func (s *Store) ReadAll(ctx context.Context, opts *annals.ReadOptions) iter.Seq2[annals.RecordedEvent, error] {
	return func(yield func(annals.RecordedEvent, error) bool) {
		o, err := rules.ReadOptions(opts)
		if err != nil {
			yield(annals.RecordedEvent{}, err)
			return
		}
		if err := s.begin(ctx); err != nil {
			yield(annals.RecordedEvent{}, err)
			return
		}
		head, err := s.readHead(ctx)
		if err != nil {
			yield(annals.RecordedEvent{}, s.fail(ctx, "read $all", err))
			return
		}
		hi := head + 1
		if o.Until > 0 {
			hi = min(hi, o.Until)
		}
		if hi <= 1 {
			return
		}
		cur := max(o.From, 1)
		if o.Backwards {
			cur = min(o.From, hi-1)
			if cur < 1 {
				return
			}
		} else if cur >= hi {
			return
		}
		fetched, size := 0, s.opts.ReadBatch
		fetch := func(ctx context.Context) ([]annals.RecordedEvent, bool, error) {
			limit := size
			size = min(2*size, maxPageFactor*s.opts.ReadBatch)
			if o.Limit > 0 {
				limit = min(limit, o.Limit-fetched)
			}
			query, args := s.allQuery(o.Filter, o.Backwards, cur, hi, o.AsOf, limit)
			// Positions have no gaps: unfiltered, the page holds the positions left in the
			// range (fewer only at the AsOf bound); a filter's matches are not known.
			hint := smallPage
			if f := o.Filter; f == nil || (len(f.StreamPrefixes) == 0 && len(f.Categories) == 0 && len(f.EventTypes) == 0) {
				left := hi - cur
				if o.Backwards {
					left = cur
				}
				hint = int(min(left, uint64(limit)))
			}
			rows, err := s.pool.Query(ctx, query, args...)
			if err != nil {
				return nil, false, err
			}
			evs, cut, err := scanEvents(rows, hint)
			fetched += len(evs)
			more := (len(evs) == limit || cut) && (o.Limit == 0 || fetched < o.Limit)
			if more {
				last := evs[len(evs)-1].Position
				if o.Backwards {
					more, cur = last > 1, last-1
				} else {
					cur = last + 1
					more = cur < hi
				}
			}
			return evs, more, err
		}
		s.drain(ctx, "read $all", fetch, func(e annals.RecordedEvent) bool { return yield(e, nil) }, yield)
	}
}

// GetMetadata implements [annals.Store.GetMetadata]. stream may be a system stream (whose
// metadata is never set).
func (s *Store) GetMetadata(ctx context.Context, stream string) (annals.StreamMetadata, annals.ExpectedRevision, error) {
	var meta annals.StreamMetadata
	if err := annals.ValidateStreamID(stream); err != nil {
		return meta, annals.NoStream, err
	}
	if err := s.begin(ctx); err != nil {
		return meta, annals.NoStream, err
	}
	var tombstoned *bool
	var data []byte
	var metaNext *int64
	err := s.pool.QueryRow(ctx, s.sql.getMetadata, stream, annals.MetaStream(stream)).Scan(&tombstoned, &data, &metaNext)
	if err != nil {
		return meta, annals.NoStream, s.fail(ctx, "get metadata of "+strconv.Quote(stream), err)
	}
	rs := rules.Stream{Name: stream, Tombstoned: tombstoned != nil && *tombstoned}
	if err := rs.Tombstone("get metadata of"); err != nil {
		return meta, annals.NoStream, err
	}
	if data != nil {
		if err := json.Unmarshal(data, &meta); err != nil {
			return meta, annals.NoStream, fmt.Errorf("%w: metadata of stream %q does not decode: %w", annals.ErrCorrupt, stream, err)
		}
	}
	mrs := rules.Stream{Name: annals.MetaStream(stream)}
	if metaNext != nil {
		mrs.Next = uint64(*metaNext)
	}
	return meta, rules.MetadataRevision(&mrs), nil
}

// listUpper is above every stream id: 65 times the highest code point, 260 bytes, is more than
// any id can hold after a common prefix.
var listUpper = strings.Repeat("\U0010FFFF", 65)

// ListStreams implements [annals.Store.ListStreams]. It reads the streams a page of
// Options.ReadBatch at a time; each page is consistent, and a listing that spans pages may
// include a stream created after it started.
func (s *Store) ListStreams(ctx context.Context, opts *annals.ListOptions) iter.Seq2[annals.StreamInfo, error] {
	return func(yield func(annals.StreamInfo, error) bool) {
		o, err := rules.ListOptions(opts)
		if err != nil {
			yield(annals.StreamInfo{}, err)
			return
		}
		if err := s.begin(ctx); err != nil {
			yield(annals.StreamInfo{}, err)
			return
		}
		after, n := o.After, 0
		for {
			limit := s.opts.ReadBatch
			if o.Limit > 0 {
				limit = min(limit, o.Limit-n)
			}
			rows, err := s.pool.Query(ctx, s.sql.list, after, o.Prefix, o.Prefix+listUpper, limit)
			var page []annals.StreamInfo
			if err == nil {
				var name string
				var next, base int64
				_, err = pgx.ForEachRow(rows, []any{&name, &next, &base}, func() error {
					page = append(page, annals.StreamInfo{Stream: name, Revision: uint64(next) - 1, Count: uint64(next - base)})
					return nil
				})
			}
			if err != nil {
				yield(annals.StreamInfo{}, s.fail(ctx, "list streams", err))
				return
			}
			for _, info := range page {
				if err := ctx.Err(); err != nil {
					yield(annals.StreamInfo{}, err)
					return
				}
				if !yield(info, nil) {
					return
				}
				n++
			}
			if len(page) < limit || (o.Limit > 0 && n >= o.Limit) {
				return
			}
			after = page[len(page)-1].Stream
		}
	}
}

// maxPosition is the exclusive upper bound of reads that have none.
const maxPosition = math.MaxInt64
