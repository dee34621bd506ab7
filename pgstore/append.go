package pgstore

import (
	"context"
	"errors"
	"fmt"
	"slices"

	"github.com/annalsdb/annals"
	"github.com/annalsdb/annals/internal/rules"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgtype"
)

// opKind says what a request writes.
type opKind uint8

const (
	opAppend opKind = iota
	opMetadata
	opDelete
	opTombstone
)

// maxBatchBytes bounds the event bytes of one batch (a single append may still be up to the
// append size limit).
const maxBatchBytes = 32 << 20

// request is one write waiting for, or in, a batch.
type request struct {
	kind     opKind
	stream   string
	expected annals.ExpectedRevision
	events   []annals.Event // validated; for system operations, the one system event
	size     int
	ctx      context.Context
	done     chan struct{}
	res      annals.AppendResult
	err      error
}

// keys returns the streams whose rows the request reads and writes.
func (r *request) keys() []string {
	if r.kind == opAppend {
		return []string{r.stream}
	}
	return []string{r.stream, annals.MetaStream(r.stream)}
}

func (r *request) finish(res annals.AppendResult, err error) {
	r.res, r.err = res, err
	close(r.done)
}

// streamRow is a stream's row as a batch locked it, with the batch's changes.
type streamRow struct {
	next, base uint64
	tombstoned bool
	metaRev    int64
	lastID     pgtype.UUID
	created    bool // the batch inserted the row
	dirty      bool // the batch changed it
}

// rule is the state of the stream named name as the shared rules see it.
func (st *streamRow) rule(name string) rules.Stream {
	rs := rules.Stream{Name: name, Next: st.next, Base: st.base, Tombstoned: st.tombstoned}
	if st.lastID.Valid {
		rs.LastID = st.lastID.Bytes
	}
	return rs
}

// pendingEvent is an event a batch writes.
type pendingEvent struct {
	stream   string
	revision uint64
	event    *annals.Event
}

// outcome is the result of one request of a batch. When last >= 0 the request wrote events and
// its position is the batch's base position + last + 1.
type outcome struct {
	res  annals.AppendResult
	err  error
	last int
}

// Append implements [annals.Store.Append]. Concurrent appends are committed together, up to
// Options.MaxBatch in one transaction; the call returns once that transaction committed.
func (s *Store) Append(ctx context.Context, stream string, expected annals.ExpectedRevision, events ...annals.Event) (annals.AppendResult, error) {
	events, err := rules.ValidateAppend(s.opts.Limits, stream, expected, events)
	if err != nil {
		return annals.AppendResult{}, err
	}
	return s.submit(ctx, &request{kind: opAppend, stream: stream, expected: expected, events: events})
}

// AppendSystem implements [annals.SystemAppender]: [Store.Append] to a system stream, with
// the same errors, idempotency, durability and batching.
func (s *Store) AppendSystem(ctx context.Context, stream string, expected annals.ExpectedRevision, events ...annals.Event) (annals.AppendResult, error) {
	events, err := rules.ValidateSystemAppend(s.opts.Limits, stream, expected, events)
	if err != nil {
		return annals.AppendResult{}, err
	}
	return s.submit(ctx, &request{kind: opAppend, stream: stream, expected: expected, events: events})
}

// AppendTx appends events to stream within tx, a transaction of the caller's on the store's
// database, so that the events commit or roll back with the caller's other writes. The
// checks and results are those of [Store.Append]; the result is valid once tx commits, and if
// tx rolls back nothing was written (the positions are handed out again).
//
// AppendTx locks the log's head row, which every append needs: until tx ends, all other
// appends to the store wait. Commit or roll back promptly after it. tx must use the READ
// COMMITTED isolation level (PostgreSQL's default). A database error leaves tx aborted.
func (s *Store) AppendTx(ctx context.Context, tx pgx.Tx, stream string, expected annals.ExpectedRevision, events ...annals.Event) (annals.AppendResult, error) {
	events, err := rules.ValidateAppend(s.opts.Limits, stream, expected, events)
	if err != nil {
		return annals.AppendResult{}, err
	}
	if err := s.begin(ctx); err != nil {
		return annals.AppendResult{}, err
	}
	r := &request{kind: opAppend, stream: stream, expected: expected, events: events}
	outs, _, _, err := s.writeBatch(ctx, tx, []*request{r}, false)
	if err != nil {
		return annals.AppendResult{}, s.fail(ctx, "append", err)
	}
	return outs[0].res, outs[0].err
}

// SetMetadata implements [annals.Store.SetMetadata]. A conflict names the metadata stream.
func (s *Store) SetMetadata(ctx context.Context, stream string, expected annals.ExpectedRevision, meta annals.StreamMetadata) (annals.AppendResult, error) {
	ev, err := rules.MetadataEvent(s.opts.Limits, stream, expected, meta)
	if err != nil {
		return annals.AppendResult{}, err
	}
	return s.submit(ctx, &request{kind: opMetadata, stream: stream, expected: expected, events: []annals.Event{ev}})
}

// Delete implements [annals.Store.Delete], with the checks of [rules.Delete].
func (s *Store) Delete(ctx context.Context, stream string, expected annals.ExpectedRevision) (annals.DeleteResult, error) {
	return s.systemOp(ctx, opDelete, stream, expected)
}

// Tombstone implements [annals.Store.Tombstone], with the checks of [rules.Tombstone].
func (s *Store) Tombstone(ctx context.Context, stream string, expected annals.ExpectedRevision) (annals.DeleteResult, error) {
	return s.systemOp(ctx, opTombstone, stream, expected)
}

func (s *Store) systemOp(ctx context.Context, kind opKind, stream string, expected annals.ExpectedRevision) (annals.DeleteResult, error) {
	if err := rules.ValidateDelete(stream, expected); err != nil {
		return annals.DeleteResult{}, err
	}
	res, err := s.submit(ctx, &request{kind: kind, stream: stream, expected: expected})
	if err != nil {
		return annals.DeleteResult{}, err
	}
	return annals.DeleteResult{Position: res.Position}, nil
}

// submit queues r for a writer and waits for its result, or for ctx.
func (s *Store) submit(ctx context.Context, r *request) (annals.AppendResult, error) {
	if err := s.begin(ctx); err != nil {
		return annals.AppendResult{}, err
	}
	for i := range r.events {
		r.size += r.events[i].Size()
	}
	r.ctx = ctx
	r.done = make(chan struct{})
	s.q.Lock()
	if s.q.closed {
		s.q.Unlock()
		return annals.AppendResult{}, annals.ErrClosed
	}
	s.q.pending = append(s.q.pending, r)
	s.q.cond.Signal()
	s.q.Unlock()
	select {
	case <-r.done:
		return r.res, r.err
	case <-ctx.Done():
		return annals.AppendResult{}, ctx.Err()
	}
}

// writer runs batches until the store closes.
func (s *Store) writer() {
	defer s.writers.Done()
	for {
		batch := s.take()
		if batch == nil {
			return
		}
		s.run(batch)
	}
}

// take waits for pending requests and takes a batch of them, in order, at most one per stream
// (so that each request's checks see the state the previous batches committed), up to
// MaxBatch requests and maxBatchBytes, answering the cancelled ones as it goes. It returns nil
// only when the store is closed.
func (s *Store) take() []*request {
	s.q.Lock()
	defer s.q.Unlock()
	for {
		for len(s.q.pending) == 0 {
			if s.q.closed {
				return nil
			}
			s.q.cond.Wait()
		}
		var batch []*request
		used := map[string]bool{}
		size := 0
		rest := s.q.pending[:0]
		for _, r := range s.q.pending {
			if err := r.ctx.Err(); err != nil {
				r.finish(annals.AppendResult{}, err)
				continue
			}
			ok := len(batch) < s.opts.MaxBatch && (len(batch) == 0 || size+r.size <= maxBatchBytes)
			keys := r.keys()
			for _, k := range keys {
				ok = ok && !used[k]
			}
			if !ok {
				rest = append(rest, r)
				continue
			}
			for _, k := range keys {
				used[k] = true
			}
			batch = append(batch, r)
			size += r.size
		}
		clear(s.q.pending[len(rest):])
		s.q.pending = rest
		if len(rest) > 0 {
			s.q.cond.Signal()
		}
		// Every request waiting was cancelled: wait for more rather than stop the writer.
		if len(batch) > 0 {
			return batch
		}
	}
}

// run commits a batch and answers its requests. When the batch fails as a whole (a database
// error), each request is retried alone, so that one request's failure is its own.
func (s *Store) run(batch []*request) {
	err := s.commit(batch)
	if err == nil || len(batch) == 1 {
		if err != nil {
			batch[0].finish(annals.AppendResult{}, s.fail(s.ctx, "append", err))
		}
		return
	}
	for _, r := range batch {
		if err := s.commit([]*request{r}); err != nil {
			r.finish(annals.AppendResult{}, s.fail(s.ctx, "append", err))
		}
	}
}

// commit runs reqs in one transaction and, when it commits, answers them. A lost race with
// another process (a deadlock, or a row created meanwhile) is retried a few times.
func (s *Store) commit(reqs []*request) error {
	var err error
	for range 5 {
		var outs []outcome
		var head uint64
		outs, head, err = s.transact(reqs)
		if err == nil {
			if head > 0 {
				s.advance(head, false)
			}
			for i, r := range reqs {
				r.finish(outs[i].res, outs[i].err)
			}
			return nil
		}
		if !retryable(err) {
			return err
		}
	}
	return err
}

// retryable reports whether err is a lost race between transactions that running the same
// transaction again resolves.
func retryable(err error) bool {
	pgErr, ok := errors.AsType[*pgconn.PgError](err)
	return ok && (pgErr.Code == "40P01" || pgErr.Code == "40001" || pgErr.Code == "23505")
}

// transact runs one transaction of reqs on a pooled connection. It returns the log's new head,
// 0 when nothing was written.
func (s *Store) transact(reqs []*request) ([]outcome, uint64, error) {
	ctx := s.ctx
	conn, err := s.pool.Acquire(ctx)
	if err != nil {
		return nil, 0, err
	}
	defer conn.Release()
	if len(reqs) == 1 {
		o, head, ok, err := s.fastAppend(ctx, conn.Conn(), reqs[0], true)
		if err != nil {
			conn.Exec(ctx, "ROLLBACK") // on failure Release drops the connection
			return nil, 0, err
		}
		if ok {
			return []outcome{o}, head, nil
		}
	}
	outs, head, committed, err := s.writeBatch(ctx, conn.Conn(), reqs, true)
	if err != nil || !committed {
		// Nothing to keep: the batch wrote no event (the empty stream rows it created go too).
		// A connection that cannot roll back is closed, and Release drops it.
		if _, rerr := conn.Exec(ctx, "ROLLBACK"); err == nil {
			err = rerr
		}
		return outs, 0, err
	}
	return outs, head, nil
}

// fastAppend tries to write r, when it is an append, with one statement that checks the
// expectation in SQL (see queries.fast), in one round trip with BEGIN and, with own, COMMIT.
// It reports ok when it wrote r; when it did not (the check needs more than SQL there knows, or
// failed), nothing was written and writeBatch must decide r.
func (s *Store) fastAppend(ctx context.Context, q querier, r *request, own bool) (o outcome, head uint64, ok bool, err error) {
	if r.kind != opAppend || r.expected == annals.NoStream {
		return o, 0, false, nil
	}
	n := len(r.events)
	ids := make([]pgtype.UUID, n)
	types, cts := make([]string, n), make([]string, n)
	data, meta := make([][]byte, n), make([][]byte, n)
	for i := range r.events {
		e := &r.events[i]
		ids[i] = pgtype.UUID{Bytes: e.ID, Valid: true}
		types[i], cts[i], data[i], meta[i] = e.Type, e.ContentType, nonNil(e.Data), nonNil(e.Metadata)
	}
	var rev0, base int64
	b := &pgx.Batch{}
	if own {
		b.Queue("BEGIN")
	}
	b.Queue(s.sql.fast, int64(n), r.stream, ids[n-1], ids, types, cts, data, meta, int64(r.expected), annals.Category(r.stream)).
		Query(func(rows pgx.Rows) error {
			_, err := pgx.ForEachRow(rows, []any{&rev0, &base}, func() error {
				ok = true
				return nil
			})
			return err
		})
	b.Queue(s.sql.notify, s.channelName)
	if own {
		b.Queue("COMMIT").Exec(func(tag pgconn.CommandTag) error {
			if tag.String() != "COMMIT" {
				return fmt.Errorf("commit: the transaction was rolled back (%s)", tag)
			}
			return nil
		})
	}
	if err := q.SendBatch(ctx, b).Close(); err != nil {
		return o, 0, false, err
	}
	if !ok {
		return o, 0, false, nil
	}
	last := uint64(base) + uint64(n)
	return outcome{res: annals.AppendResult{Revision: uint64(rev0) + uint64(n) - 1, Position: last}, last: -1}, last, true, nil
}

// querier is a connection or a transaction.
type querier interface {
	SendBatch(ctx context.Context, b *pgx.Batch) pgx.BatchResults
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
}

// writeBatch runs reqs in a transaction on q: it locks the rows of their streams, decides each
// request, and writes the events of those that succeed, with the log's head updated last.
//
// With own set, q is a connection outside any transaction: writeBatch sends BEGIN in the same
// round trip as the locks and, when there are events to write, COMMIT in the same round trip
// as the writes, and reports committed; otherwise the caller must roll back. Without own, q is
// the caller's transaction, which the caller ends. It returns an error only for a database
// failure, after which the transaction is aborted and the outcomes are void.
func (s *Store) writeBatch(ctx context.Context, tx querier, reqs []*request, own bool) (outs []outcome, head uint64, committed bool, err error) {
	var keys []string
	for _, r := range reqs {
		keys = append(keys, r.keys()...)
	}
	slices.Sort(keys)
	keys = slices.Compact(keys)

	states := make(map[string]*streamRow, len(keys))
	created := map[string]bool{}
	b := &pgx.Batch{}
	if own {
		b.Queue("BEGIN")
	}
	b.Queue(s.sql.ensure, keys).Query(func(rows pgx.Rows) error {
		var name string
		_, err := pgx.ForEachRow(rows, []any{&name}, func() error {
			created[name] = true
			return nil
		})
		return err
	})
	b.Queue(s.sql.lock, keys).Query(func(rows pgx.Rows) error {
		var name string
		var next, base int64
		var row streamRow
		_, err := pgx.ForEachRow(rows, []any{&name, &next, &base, &row.tombstoned, &row.metaRev, &row.lastID}, func() error {
			st := row
			st.next, st.base, st.created = uint64(next), uint64(base), created[name]
			states[name] = &st
			return nil
		})
		return err
	})
	if err := tx.SendBatch(ctx, b).Close(); err != nil {
		return nil, 0, false, err
	}
	for _, k := range keys {
		if states[k] == nil {
			return nil, 0, false, fmt.Errorf("row of stream %q not locked", k)
		}
	}

	var pend []pendingEvent
	outs = make([]outcome, len(reqs))
	for i, r := range reqs {
		if outs[i], err = s.decide(ctx, tx, r, states, &pend); err != nil {
			return nil, 0, false, err
		}
	}

	b = &pgx.Batch{}
	var unused []string
	var names []string
	var nexts, bases, metas []int64
	var tombs []bool
	var last []pgtype.UUID
	for _, k := range keys {
		st := states[k]
		switch {
		case st.dirty:
			names = append(names, k)
			nexts, bases, metas = append(nexts, int64(st.next)), append(bases, int64(st.base)), append(metas, st.metaRev)
			tombs, last = append(tombs, st.tombstoned), append(last, st.lastID)
		case st.created:
			unused = append(unused, k)
		}
	}
	if len(pend) == 0 {
		if len(unused) > 0 && !own {
			b.Queue(s.sql.deleteUnused, unused)
			err = tx.SendBatch(ctx, b).Close()
		}
		return outs, 0, false, err
	}
	b.Queue(s.sql.update, names, nexts, bases, tombs, metas, last)
	if len(unused) > 0 {
		b.Queue(s.sql.deleteUnused, unused)
	}
	n := len(pend)
	streams, types, cats, cts := make([]string, n), make([]string, n), make([]string, n), make([]string, n)
	revs := make([]int64, n)
	ids := make([]pgtype.UUID, n)
	data, meta := make([][]byte, n), make([][]byte, n)
	for i, p := range pend {
		e := p.event
		streams[i], types[i], cats[i], cts[i] = p.stream, e.Type, annals.Category(p.stream), e.ContentType
		revs[i] = int64(p.revision)
		ids[i] = pgtype.UUID{Bytes: e.ID, Valid: true}
		data[i], meta[i] = nonNil(e.Data), nonNil(e.Metadata)
	}
	var base int64
	b.Queue(s.sql.insert, int64(n), streams, revs, ids, types, cats, cts, data, meta).QueryRow(func(row pgx.Row) error {
		return row.Scan(&base)
	})
	b.Queue(s.sql.notify, s.channelName)
	if own {
		b.Queue("COMMIT").Exec(func(tag pgconn.CommandTag) error {
			if tag.String() != "COMMIT" {
				return fmt.Errorf("commit: the transaction was rolled back (%s)", tag)
			}
			return nil
		})
	}
	if err := tx.SendBatch(ctx, b).Close(); err != nil {
		return nil, 0, false, err
	}
	for i := range outs {
		if o := &outs[i]; o.last >= 0 {
			o.res.Position = uint64(base) + uint64(o.last) + 1
		}
	}
	return outs, uint64(base) + uint64(n), own, nil
}

func nonNil(b []byte) []byte {
	if b == nil {
		return []byte{}
	}
	return b
}

// decide checks request r against the locked rows, with the shared rules (package rules),
// and when it is to be written, adds its events to pend and changes the rows.
func (s *Store) decide(ctx context.Context, tx querier, r *request, states map[string]*streamRow, pend *[]pendingEvent) (outcome, error) {
	st := states[r.stream]
	rs := st.rule(r.stream)
	fail := func(err error) (outcome, error) { return outcome{err: err, last: -1}, nil }
	if r.kind == opAppend {
		// A database error fails the whole batch; a refusal fails only this request.
		var dbErr error
		res, write, err := rules.Append(&rs, r.expected, r.events, func(from uint64, n int) ([]annals.UUID, []uint64, error) {
			ids, positions, err := s.storedIDs(ctx, tx, r.stream, from, n)
			dbErr = err
			return ids, positions, err
		})
		switch {
		case dbErr != nil:
			return outcome{last: -1}, dbErr
		case err != nil:
			return fail(err)
		case !write:
			return outcome{res: res, last: -1}, nil
		}
		for i := range r.events {
			*pend = append(*pend, pendingEvent{stream: r.stream, revision: st.next, event: &r.events[i]})
			st.next++
		}
		st.lastID = pgtype.UUID{Bytes: r.events[len(r.events)-1].ID, Valid: true}
		st.dirty = true
		return outcome{res: annals.AppendResult{Revision: st.next - 1}, last: len(*pend) - 1}, nil
	}

	metaStream := annals.MetaStream(r.stream)
	mst := states[metaStream]
	var data []byte
	switch r.kind {
	case opMetadata:
		mrs := mst.rule(metaStream)
		if err := rules.SetMetadata(&rs, &mrs, r.expected); err != nil {
			return fail(err)
		}
		st.metaRev = int64(mst.next)
	case opDelete:
		if err := rules.Delete(&rs, r.expected); err != nil {
			return fail(err)
		}
		data = fmt.Appendf(nil, `{"revision":%d}`, st.next-1)
		st.base = st.next
	case opTombstone:
		if err := rules.Tombstone(&rs, r.expected); err != nil {
			return fail(err)
		}
		data = []byte("{}")
		st.tombstoned = true
	}
	if r.kind != opMetadata {
		eventType := annals.DeletedEventType
		if r.kind == opTombstone {
			eventType = annals.TombstoneEventType
		}
		r.events = []annals.Event{{Type: eventType, ContentType: annals.ContentTypeJSON, Data: data}}
	}
	ev := &r.events[0]
	ev.ID = annals.NewUUID()
	st.dirty = true
	*pend = append(*pend, pendingEvent{stream: metaStream, revision: mst.next, event: ev})
	mst.next++
	mst.lastID = pgtype.UUID{Bytes: ev.ID, Valid: true}
	mst.dirty = true
	return outcome{res: annals.AppendResult{Revision: mst.next - 1}, last: len(*pend) - 1}, nil
}

// storedIDs returns the IDs and positions of the stream's events at revisions from … from+n-1
// (fewer when some are missing).
func (s *Store) storedIDs(ctx context.Context, tx querier, stream string, from uint64, n int) ([]annals.UUID, []uint64, error) {
	rows, err := tx.Query(ctx, s.sql.ids, stream, int64(from), int64(from+uint64(n)))
	if err != nil {
		return nil, nil, err
	}
	ids, positions := make([]annals.UUID, 0, n), make([]uint64, 0, n)
	var rev, pos int64
	var id pgtype.UUID
	_, err = pgx.ForEachRow(rows, []any{&rev, &id, &pos}, func() error {
		if uint64(rev) != from+uint64(len(ids)) {
			return fmt.Errorf("%w: stream %q: revision %d where %d was expected", annals.ErrCorrupt, stream, rev, from+uint64(len(ids)))
		}
		ids = append(ids, id.Bytes)
		positions = append(positions, uint64(pos))
		return nil
	})
	return ids, positions, err
}
