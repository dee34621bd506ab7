// Package memstore is an in-memory [annals.Store]: the reference behaviour of Annals and the
// oracle that randomized tests compare the other backends with.
//
// It is written to be obviously correct rather than fast: one mutex guards the whole store, the
// global log is a slice, and each stream keeps the positions of its events. Nothing is durable:
// the events live as long as the Store value. Use it in tests and examples, or wherever an
// event store that forgets everything on exit is what you want.
//
// # Shared rules
//
// The decisions every backend shares (input validation, the order of checks, where a repeated
// append is recognised, what metadata and soft deletion hide, where a stream subscription
// starts) are made by the functions of internal/rules, which memstore, filestore and pgstore
// all call; the annals package documentation states them. What is left to memstore:
//
//   - A stream read's MaxAge keeps the events recorded after now-MaxAge, where now is taken when
//     the iteration starts.
//   - Reads and subscriptions check ctx before each event.
package memstore

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"iter"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/annalsdb/annals"
	"github.com/annalsdb/annals/internal/rules"
	"github.com/annalsdb/annals/lease"
)

var (
	_ annals.Store = (*Store)(nil)
	_ lease.Keeper = (*Store)(nil)
)

type keeper = lease.Memory

// Options configure [New]. A nil *Options means all defaults.
type Options struct {
	// Limits bounds event and append sizes; zero fields take the defaults of [annals.Limits]
	// (1 MiB per event, 16 MiB per append).
	Limits annals.Limits
}

// Store is an in-memory event store that implements [annals.Store] exactly as documented
// there. All methods are safe for concurrent use. Nothing is durable: an append is visible to
// every reader when it returns, and lost when the process ends.
type Store struct {
	limits annals.Limits
	// keeper makes the Store a lease.Keeper in the process (Acquire, Renew, Release, Leases):
	// the leases of the runners of a service that runs on this store.
	keeper

	mu struct {
		sync.Mutex
		closed bool
		// log is the global log: log[i] has position i+1. Elements are never changed once
		// appended, so readers may keep a copy of the slice header and read it without the lock.
		log []annals.RecordedEvent
		// streams holds every stream that was ever written or named by a system event.
		streams map[string]*streamState
		// changed is closed and replaced after every write, and closed (not replaced) by Close.
		changed chan struct{}
		// lastTime is the Time of the last event in the log.
		lastTime time.Time
	}
}

// streamState is what the store knows of one stream. Its fields are guarded by Store.mu.
type streamState struct {
	// positions[r] is the position of the event at revision r. Like the log, it only grows.
	positions []uint64
	// base is the first revision of the current incarnation: the revision after the last soft
	// delete. The stream exists when it has events at or after base.
	base       uint64
	tombstoned bool
	// metaPos is the position of the last $metadata event of the stream; 0 when there is none.
	metaPos uint64
}

func (st *streamState) next() uint64 { return uint64(len(st.positions)) }

func (st *streamState) exists() bool { return st.next() > st.base }

// rule is the state of the stream named name as the shared rules see it.
func (st *streamState) rule(name string) rules.Stream {
	return rules.Stream{Name: name, Next: st.next(), Base: st.base, Tombstoned: st.tombstoned}
}

// New returns an empty store. A nil opts means the defaults.
func New(opts *Options) *Store {
	var o Options
	if opts != nil {
		o = *opts
	}
	s := &Store{limits: rules.Limits(o.Limits)}
	s.mu.streams = make(map[string]*streamState)
	s.mu.changed = make(chan struct{})
	return s
}

// Close stops the store: running subscriptions end with [annals.ErrClosed], and every later
// call returns it. Iterations already under way finish. Close always returns nil and may be
// called more than once.
func (s *Store) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.mu.closed {
		s.mu.closed = true
		close(s.mu.changed)
	}
	return nil
}

// begin takes the lock for an operation: it returns ctx's error or [annals.ErrClosed], with the
// lock released, when the operation must not go ahead.
func (s *Store) begin(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	s.mu.Lock()
	if s.mu.closed {
		s.mu.Unlock()
		return annals.ErrClosed
	}
	return nil
}

// streamLocked returns the state of stream, or a fresh empty state (not yet in the map) when the
// store has none.
func (s *Store) streamLocked(stream string) *streamState {
	if st, ok := s.mu.streams[stream]; ok {
		return st
	}
	return &streamState{}
}

// Append implements [annals.Store.Append]. It never blocks but on the store's mutex; ctx is
// checked once, before anything is done.
func (s *Store) Append(ctx context.Context, stream string, expected annals.ExpectedRevision, events ...annals.Event) (annals.AppendResult, error) {
	events, err := rules.ValidateAppend(s.limits, stream, expected, events)
	if err != nil {
		return annals.AppendResult{}, err
	}
	return s.append(ctx, stream, expected, events)
}

// AppendSystem implements [annals.SystemAppender]: [Store.Append] to a system stream.
func (s *Store) AppendSystem(ctx context.Context, stream string, expected annals.ExpectedRevision, events ...annals.Event) (annals.AppendResult, error) {
	events, err := rules.ValidateSystemAppend(s.limits, stream, expected, events)
	if err != nil {
		return annals.AppendResult{}, err
	}
	return s.append(ctx, stream, expected, events)
}

// append writes events that were validated.
func (s *Store) append(ctx context.Context, stream string, expected annals.ExpectedRevision, events []annals.Event) (annals.AppendResult, error) {
	for i := range events {
		events[i].Data = bytes.Clone(events[i].Data)
		events[i].Metadata = bytes.Clone(events[i].Metadata)
	}
	if err := s.begin(ctx); err != nil {
		return annals.AppendResult{}, err
	}
	defer s.mu.Unlock()
	st := s.streamLocked(stream)
	rs := st.rule(stream)
	stored := func(from uint64, n int) ([]annals.UUID, []uint64, error) {
		ids := make([]annals.UUID, n)
		for i := range ids {
			ids[i] = s.mu.log[st.positions[from+uint64(i)]-1].ID
		}
		return ids, st.positions[from : from+uint64(n)], nil
	}
	res, write, err := rules.Append(&rs, expected, events, stored)
	if !write {
		return res, err
	}
	return s.writeLocked(stream, st, events), nil
}

// writeLocked appends events to stream, which is in state st, and wakes the subscriptions.
func (s *Store) writeLocked(stream string, st *streamState, events []annals.Event) annals.AppendResult {
	now := time.Now().UTC()
	if now.Before(s.mu.lastTime) {
		now = s.mu.lastTime
	}
	s.mu.lastTime = now
	for _, e := range events {
		pos := uint64(len(s.mu.log)) + 1
		s.mu.log = append(s.mu.log, annals.RecordedEvent{
			ID:          e.ID,
			Stream:      stream,
			Type:        e.Type,
			ContentType: e.ContentType,
			Data:        e.Data,
			Metadata:    e.Metadata,
			Revision:    st.next(),
			Position:    pos,
			Time:        now,
		})
		st.positions = append(st.positions, pos)
	}
	s.mu.streams[stream] = st
	close(s.mu.changed)
	s.mu.changed = make(chan struct{})
	return annals.AppendResult{Revision: st.next() - 1, Position: uint64(len(s.mu.log))}
}

// writeSystemLocked appends one system event to the metadata stream of stream and returns its
// result.
func (s *Store) writeSystemLocked(stream, eventType string, data []byte) annals.AppendResult {
	meta := annals.MetaStream(stream)
	ev := annals.Event{ID: annals.NewUUID(), Type: eventType, ContentType: annals.ContentTypeJSON, Data: data}
	return s.writeLocked(meta, s.streamLocked(meta), []annals.Event{ev})
}

// SetMetadata implements [annals.Store.SetMetadata]. A conflict names the metadata stream.
func (s *Store) SetMetadata(ctx context.Context, stream string, expected annals.ExpectedRevision, meta annals.StreamMetadata) (annals.AppendResult, error) {
	ev, err := rules.MetadataEvent(s.limits, stream, expected, meta)
	if err != nil {
		return annals.AppendResult{}, err
	}
	if err := s.begin(ctx); err != nil {
		return annals.AppendResult{}, err
	}
	defer s.mu.Unlock()
	metaStream := annals.MetaStream(stream)
	st, mst := s.streamLocked(stream), s.streamLocked(metaStream)
	rs, mrs := st.rule(stream), mst.rule(metaStream)
	if err := rules.SetMetadata(&rs, &mrs, expected); err != nil {
		return annals.AppendResult{}, err
	}
	res := s.writeLocked(metaStream, mst, []annals.Event{ev})
	st.metaPos = res.Position
	s.mu.streams[stream] = st
	return res, nil
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
	defer s.mu.Unlock()
	st := s.streamLocked(stream)
	rs := st.rule(stream)
	if err := rs.Tombstone("get metadata of"); err != nil {
		return meta, annals.NoStream, err
	}
	meta = s.metadataLocked(st)
	metaStream := annals.MetaStream(stream)
	mrs := s.streamLocked(metaStream).rule(metaStream)
	return meta, rules.MetadataRevision(&mrs), nil
}

// metadataLocked decodes the stream's last metadata (a fresh copy), or returns the zero value.
func (s *Store) metadataLocked(st *streamState) annals.StreamMetadata {
	var meta annals.StreamMetadata
	if st.metaPos == 0 {
		return meta
	}
	if err := json.Unmarshal(s.mu.log[st.metaPos-1].Data, &meta); err != nil {
		panic(fmt.Sprintf("memstore: stored metadata at position %d does not decode: %v", st.metaPos, err))
	}
	return meta
}

// Delete implements [annals.Store.Delete], with the checks of [rules.Delete].
func (s *Store) Delete(ctx context.Context, stream string, expected annals.ExpectedRevision) (annals.DeleteResult, error) {
	if err := rules.ValidateDelete(stream, expected); err != nil {
		return annals.DeleteResult{}, err
	}
	if err := s.begin(ctx); err != nil {
		return annals.DeleteResult{}, err
	}
	defer s.mu.Unlock()
	st := s.streamLocked(stream)
	rs := st.rule(stream)
	if err := rules.Delete(&rs, expected); err != nil {
		return annals.DeleteResult{}, err
	}
	data, err := json.Marshal(struct {
		Revision uint64 `json:"revision"`
	}{st.next() - 1})
	if err != nil {
		panic(err)
	}
	res := s.writeSystemLocked(stream, annals.DeletedEventType, data)
	st.base = st.next()
	return annals.DeleteResult{Position: res.Position}, nil
}

// Tombstone implements [annals.Store.Tombstone], with the checks of [rules.Tombstone].
func (s *Store) Tombstone(ctx context.Context, stream string, expected annals.ExpectedRevision) (annals.DeleteResult, error) {
	if err := rules.ValidateDelete(stream, expected); err != nil {
		return annals.DeleteResult{}, err
	}
	if err := s.begin(ctx); err != nil {
		return annals.DeleteResult{}, err
	}
	defer s.mu.Unlock()
	st := s.streamLocked(stream)
	rs := st.rule(stream)
	if err := rules.Tombstone(&rs, expected); err != nil {
		return annals.DeleteResult{}, err
	}
	res := s.writeSystemLocked(stream, annals.TombstoneEventType, []byte("{}"))
	st.tombstoned = true
	s.mu.streams[stream] = st
	return annals.DeleteResult{Position: res.Position}, nil
}

// visibleFromLocked returns the first revision of st that a read may return at the time now,
// according to its soft deletion and metadata ([rules.VisibleFrom], then maxAge). Since Time
// never decreases along the log, the events that maxAge hides come before all the others.
func (s *Store) visibleFromLocked(st *streamState, now time.Time) uint64 {
	meta := s.metadataLocked(st)
	rs := st.rule("")
	lo := rules.VisibleFrom(&rs, &meta)
	if cutoff, ok := rules.AgeCutoff(&meta, now); ok {
		for lo < rs.Next && !rules.Young(s.mu.log[st.positions[lo]-1].Time, cutoff) {
			lo++
		}
	}
	return lo
}

// cloneEvent returns ev with its own copies of Data and Metadata, so that callers cannot change
// the stored event.
func cloneEvent(ev annals.RecordedEvent) annals.RecordedEvent {
	ev.Data = bytes.Clone(ev.Data)
	ev.Metadata = bytes.Clone(ev.Metadata)
	return ev
}

// keep reports whether a read with options o returns ev (apart from the range of revisions or
// positions).
func keep(o *annals.ReadOptions, ev *annals.RecordedEvent) bool {
	if !o.AsOf.IsZero() && ev.Time.After(o.AsOf) {
		return false
	}
	return o.Filter.Match(ev.Stream, ev.Type)
}

// readRange yields the events at the given log indexes (built by next) that o keeps, up to
// o.Limit, checking ctx before each.
func readRange(ctx context.Context, log []annals.RecordedEvent, o *annals.ReadOptions, indexes iter.Seq[uint64], yield func(annals.RecordedEvent, error) bool) {
	n := 0
	for i := range indexes {
		if err := ctx.Err(); err != nil {
			yield(annals.RecordedEvent{}, err)
			return
		}
		ev := &log[i]
		if !keep(o, ev) {
			continue
		}
		if !yield(cloneEvent(*ev), nil) {
			return
		}
		if n++; o.Limit > 0 && n == o.Limit {
			return
		}
	}
}

// span yields lo … hi-1 forwards, or from … lo backwards (from < hi).
func span(lo, hi, from uint64, backwards bool) iter.Seq[uint64] {
	return func(yield func(uint64) bool) {
		if !backwards {
			for i := max(lo, from); i < hi; i++ {
				if !yield(i) {
					return
				}
			}
			return
		}
		if hi == 0 || lo >= hi {
			return
		}
		for i := min(from, hi-1); i >= lo; i-- {
			if !yield(i) || i == 0 {
				return
			}
		}
	}
}

// ReadStream implements [annals.Store.ReadStream]. It reads the stream as it is when the
// iteration starts; events appended later are not read.
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
		st := s.streamLocked(stream)
		lo := s.visibleFromLocked(st, time.Now())
		rs := st.rule(stream)
		err = rules.Readable(&rs, "read")
		log, positions := s.mu.log, st.positions
		s.mu.Unlock()
		if err != nil {
			yield(annals.RecordedEvent{}, err)
			return
		}
		hi := uint64(len(positions))
		if o.Until > 0 {
			hi = min(hi, o.Until)
		}
		indexes := func(yield func(uint64) bool) {
			for rev := range span(lo, hi, o.From, o.Backwards) {
				if !yield(positions[rev] - 1) {
					return
				}
			}
		}
		readRange(ctx, log, &o, indexes, yield)
	}
}

// ReadAll implements [annals.Store.ReadAll]. It reads the log as it is when the iteration
// starts; events appended later are not read.
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
		log := s.mu.log
		s.mu.Unlock()
		// Position p is log index p-1.
		hi := uint64(len(log)) + 1
		if o.Until > 0 {
			hi = min(hi, o.Until)
		}
		indexes := func(yield func(uint64) bool) {
			for pos := range span(1, hi, o.From, o.Backwards) {
				if !yield(pos - 1) {
					return
				}
			}
		}
		readRange(ctx, log, &o, indexes, yield)
	}
}

// wait blocks until changed is closed or ctx is done, and returns ctx's error in the latter
// case.
func wait(ctx context.Context, changed <-chan struct{}) error {
	select {
	case <-changed:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// SubscribeAll implements [annals.Store.SubscribeAll]. It reads the shared log by position and
// holds no events of its own, so a slow consumer costs no memory.
func (s *Store) SubscribeAll(ctx context.Context, opts *annals.SubscribeOptions) iter.Seq2[annals.RecordedEvent, error] {
	return func(yield func(annals.RecordedEvent, error) bool) {
		o, err := rules.SubscribeOptions(opts)
		if err != nil {
			yield(annals.RecordedEvent{}, err)
			return
		}
		from := max(o.From, 1)
		for first := true; ; first = false {
			if err := s.begin(ctx); err != nil {
				yield(annals.RecordedEvent{}, err)
				return
			}
			log, changed := s.mu.log, s.mu.changed
			s.mu.Unlock()
			if first && o.From == annals.End {
				from = uint64(len(log)) + 1
			}
			for ; from <= uint64(len(log)); from++ {
				if err := ctx.Err(); err != nil {
					yield(annals.RecordedEvent{}, err)
					return
				}
				if ev := &log[from-1]; o.Filter.Match(ev.Stream, ev.Type) {
					if !yield(cloneEvent(*ev), nil) {
						return
					}
				}
			}
			if err := wait(ctx, changed); err != nil {
				yield(annals.RecordedEvent{}, err)
				return
			}
		}
	}
}

// SubscribeStream implements [annals.Store.SubscribeStream]. The stream's visibility (soft
// deletion and metadata) chooses where a subscription starts, once; from then on it delivers
// every event of the stream. When the stream is tombstoned, it delivers the events written
// before the tombstone and then ends with [annals.ErrStreamDeleted].
func (s *Store) SubscribeStream(ctx context.Context, stream string, opts *annals.SubscribeOptions) iter.Seq2[annals.RecordedEvent, error] {
	return func(yield func(annals.RecordedEvent, error) bool) {
		o, err := rules.StreamSubscribeOptions(stream, opts)
		if err != nil {
			yield(annals.RecordedEvent{}, err)
			return
		}
		from := o.From
		for first := true; ; first = false {
			if err := s.begin(ctx); err != nil {
				yield(annals.RecordedEvent{}, err)
				return
			}
			st := s.streamLocked(stream)
			if first {
				rs := st.rule(stream)
				if err := rs.Tombstone("subscribe to"); err != nil {
					s.mu.Unlock()
					yield(annals.RecordedEvent{}, err)
					return
				}
				// The age cutoff, applied here once, moves the start past what maxAge hides.
				meta := s.metadataLocked(st)
				from = max(rules.SubscribeStart(&rs, &meta, from), s.visibleFromLocked(st, time.Now()))
			}
			log, positions, tombstoned, changed := s.mu.log, st.positions, st.tombstoned, s.mu.changed
			s.mu.Unlock()
			for ; from < uint64(len(positions)); from++ {
				if err := ctx.Err(); err != nil {
					yield(annals.RecordedEvent{}, err)
					return
				}
				if ev := &log[positions[from]-1]; o.Filter.Match(ev.Stream, ev.Type) {
					if !yield(cloneEvent(*ev), nil) {
						return
					}
				}
			}
			if tombstoned {
				yield(annals.RecordedEvent{}, fmt.Errorf("subscription to %q: %w", stream, annals.ErrStreamDeleted))
				return
			}
			if err := wait(ctx, changed); err != nil {
				yield(annals.RecordedEvent{}, err)
				return
			}
		}
	}
}

// ListStreams implements [annals.Store.ListStreams]. It lists the streams as they are when the
// iteration starts.
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
		var infos []annals.StreamInfo
		for name, st := range s.mu.streams {
			if strings.HasPrefix(name, "$") || !strings.HasPrefix(name, o.Prefix) || (o.After != "" && name <= o.After) ||
				st.tombstoned || !st.exists() {
				continue
			}
			infos = append(infos, annals.StreamInfo{Stream: name, Revision: st.next() - 1, Count: st.next() - st.base})
		}
		s.mu.Unlock()
		slices.SortFunc(infos, func(a, b annals.StreamInfo) int { return cmp.Compare(a.Stream, b.Stream) })
		if o.Limit > 0 && len(infos) > o.Limit {
			infos = infos[:o.Limit]
		}
		for _, info := range infos {
			if err := ctx.Err(); err != nil {
				yield(annals.StreamInfo{}, err)
				return
			}
			if !yield(info, nil) {
				return
			}
		}
	}
}
