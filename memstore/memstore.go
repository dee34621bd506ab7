// Package memstore is an in-memory [annals.Store]: the reference behaviour of Annals and the
// oracle that randomized tests compare the other backends with.
//
// It is written to be obviously correct rather than fast: one mutex guards the whole store, the
// global log is a slice, and each stream keeps the positions of its events. Nothing is durable:
// the events live as long as the Store value. Use it in tests and examples, or wherever an
// event store that forgets everything on exit is what you want.
//
// # Decisions the annals documentation leaves open
//
//   - Idempotency checks look only at the events of the stream's current incarnation (those
//     since its last soft delete), like the expectations themselves: the events of a
//     soft-deleted incarnation are gone for every purpose but [annals.Store.ReadAll].
//   - [annals.Store.Delete] and [annals.Store.Tombstone] check, in order: a tombstone
//     ([annals.ErrStreamDeleted]), the expectation against the stream
//     ([annals.ErrWrongExpectedVersion]), and for Delete whether the stream exists
//     ([annals.ErrStreamNotFound]).
//   - A conflict in [annals.Store.SetMetadata] names the metadata stream in its
//     [annals.WrongExpectedVersionError].
//   - A stream subscription applies the stream's visibility (soft deletion, truncateBefore,
//     maxCount, maxAge) once, to choose where it starts; from then on it delivers every event of
//     the stream in revision order, whatever later metadata says. When the stream is tombstoned
//     it first delivers the events written before the tombstone, then ends with
//     [annals.ErrStreamDeleted]. A subscription on a stream already tombstoned ends at once.
//   - [annals.ReadOptions] AsOf and Until narrow what the stream's current visibility leaves;
//     they do not bring back what metadata or a soft delete hides now.
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
)

var _ annals.Store = (*Store)(nil)

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

// actual is the state of the stream as a WrongExpectedVersionError reports it.
func (st *streamState) actual() annals.ExpectedRevision {
	if !st.exists() {
		return annals.NoStream
	}
	return annals.Exact(st.next() - 1)
}

// holds reports whether the stream is in the state e expects.
func (st *streamState) holds(e annals.ExpectedRevision) bool {
	return e.Satisfied(st.exists(), st.next()-1)
}

// New returns an empty store. A nil opts means the defaults.
func New(opts *Options) *Store {
	var o Options
	if opts != nil {
		o = *opts
	}
	s := &Store{limits: o.Limits.WithDefaults()}
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
	events = slices.Clone(events)
	if err := s.limits.ValidateAppend(stream, expected, events); err != nil {
		return annals.AppendResult{}, err
	}
	for i := range events {
		events[i].Data = bytes.Clone(events[i].Data)
		events[i].Metadata = bytes.Clone(events[i].Metadata)
	}
	if err := s.begin(ctx); err != nil {
		return annals.AppendResult{}, err
	}
	defer s.mu.Unlock()
	st := s.streamLocked(stream)
	if st.tombstoned {
		return annals.AppendResult{}, fmt.Errorf("append to %q: %w", stream, annals.ErrStreamDeleted)
	}
	if res, repeat := s.repeatedLocked(st, expected, events); repeat {
		return res, nil
	}
	if !st.holds(expected) {
		return annals.AppendResult{}, &annals.WrongExpectedVersionError{Stream: stream, Expected: expected, Actual: st.actual()}
	}
	return s.writeLocked(stream, st, events), nil
}

// repeatedLocked looks for the IDs of events, in order, at the place expected names (see
// [annals.ExpectedRevision]) within the stream's current incarnation: the revisions after r for
// Exact(r), the first ones of the incarnation for NoStream, the last ones for Any and
// StreamExists. When all are there, the append is a repeat and it returns the first append's
// result.
func (s *Store) repeatedLocked(st *streamState, expected annals.ExpectedRevision, events []annals.Event) (annals.AppendResult, bool) {
	n := uint64(len(events))
	next := st.next()
	var from uint64
	switch expected {
	case annals.Any, annals.StreamExists:
		if next-st.base < n {
			return annals.AppendResult{}, false
		}
		from = next - n
	case annals.NoStream:
		if !st.exists() {
			return annals.AppendResult{}, false
		}
		from = st.base
	default:
		r, _ := expected.Revision()
		if r+1 < st.base || r+1 >= next {
			return annals.AppendResult{}, false
		}
		from = r + 1
	}
	if from+n > next {
		return annals.AppendResult{}, false
	}
	for i := range n {
		if s.mu.log[st.positions[from+i]-1].ID != events[i].ID {
			return annals.AppendResult{}, false
		}
	}
	last := from + n - 1
	return annals.AppendResult{Revision: last, Position: st.positions[last]}, true
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
	if err := annals.ValidateUserStreamID(stream); err != nil {
		return annals.AppendResult{}, err
	}
	if err := meta.Validate(); err != nil {
		return annals.AppendResult{}, err
	}
	data, err := json.Marshal(meta)
	if err != nil {
		return annals.AppendResult{}, fmt.Errorf("%w: stream metadata of %q: %v", annals.ErrInvalidArgument, stream, err)
	}
	metaStream := annals.MetaStream(stream)
	ev := []annals.Event{{Type: annals.MetadataEventType, ContentType: annals.ContentTypeJSON, Data: data}}
	if err := s.limits.ValidateEvents(metaStream, expected, ev); err != nil {
		return annals.AppendResult{}, err
	}
	if err := s.begin(ctx); err != nil {
		return annals.AppendResult{}, err
	}
	defer s.mu.Unlock()
	st := s.streamLocked(stream)
	if st.tombstoned {
		return annals.AppendResult{}, fmt.Errorf("set metadata of %q: %w", stream, annals.ErrStreamDeleted)
	}
	mst := s.streamLocked(metaStream)
	if !mst.holds(expected) {
		return annals.AppendResult{}, &annals.WrongExpectedVersionError{Stream: metaStream, Expected: expected, Actual: mst.actual()}
	}
	res := s.writeSystemLocked(stream, annals.MetadataEventType, data)
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
	if st.tombstoned {
		return meta, annals.NoStream, fmt.Errorf("get metadata of %q: %w", stream, annals.ErrStreamDeleted)
	}
	meta = s.metadataLocked(st)
	mst := s.streamLocked(annals.MetaStream(stream))
	if mst.next() == 0 {
		return meta, annals.NoStream, nil
	}
	return meta, annals.Exact(mst.next() - 1), nil
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

// Delete implements [annals.Store.Delete]. It checks, in order: a tombstone, the expectation,
// whether the stream exists.
func (s *Store) Delete(ctx context.Context, stream string, expected annals.ExpectedRevision) (uint64, error) {
	if err := annals.ValidateUserStreamID(stream); err != nil {
		return 0, err
	}
	if err := expected.Validate(); err != nil {
		return 0, err
	}
	if err := s.begin(ctx); err != nil {
		return 0, err
	}
	defer s.mu.Unlock()
	st := s.streamLocked(stream)
	switch {
	case st.tombstoned:
		return 0, fmt.Errorf("delete %q: %w", stream, annals.ErrStreamDeleted)
	case !st.holds(expected):
		return 0, &annals.WrongExpectedVersionError{Stream: stream, Expected: expected, Actual: st.actual()}
	case !st.exists():
		return 0, fmt.Errorf("delete %q: %w", stream, annals.ErrStreamNotFound)
	}
	data, err := json.Marshal(struct {
		Revision uint64 `json:"revision"`
	}{st.next() - 1})
	if err != nil {
		panic(err)
	}
	res := s.writeSystemLocked(stream, annals.DeletedEventType, data)
	st.base = st.next()
	return res.Position, nil
}

// Tombstone implements [annals.Store.Tombstone]. It checks a tombstone first, then the
// expectation against the stream.
func (s *Store) Tombstone(ctx context.Context, stream string, expected annals.ExpectedRevision) (uint64, error) {
	if err := annals.ValidateUserStreamID(stream); err != nil {
		return 0, err
	}
	if err := expected.Validate(); err != nil {
		return 0, err
	}
	if err := s.begin(ctx); err != nil {
		return 0, err
	}
	defer s.mu.Unlock()
	st := s.streamLocked(stream)
	switch {
	case st.tombstoned:
		return 0, fmt.Errorf("tombstone %q: %w", stream, annals.ErrStreamDeleted)
	case !st.holds(expected):
		return 0, &annals.WrongExpectedVersionError{Stream: stream, Expected: expected, Actual: st.actual()}
	}
	res := s.writeSystemLocked(stream, annals.TombstoneEventType, []byte("{}"))
	st.tombstoned = true
	s.mu.streams[stream] = st
	return res.Position, nil
}

// visibleFromLocked returns the first revision of st that a read may return at the time now,
// according to its soft deletion and metadata. Since Time never decreases along the log, the
// events that maxAge hides come before all the others.
func (s *Store) visibleFromLocked(st *streamState, now time.Time) uint64 {
	meta := s.metadataLocked(st)
	next := st.next()
	lo := max(st.base, meta.TruncateBefore)
	if meta.MaxCount > 0 && next > meta.MaxCount {
		lo = max(lo, next-meta.MaxCount)
	}
	if meta.MaxAge > 0 {
		oldest := now.Add(-meta.MaxAge)
		for lo < next && !s.mu.log[st.positions[lo]-1].Time.After(oldest) {
			lo++
		}
	}
	return min(lo, next)
}

// cloneEvent returns ev with its own copies of Data and Metadata, so that callers cannot change
// the stored event.
func cloneEvent(ev annals.RecordedEvent) annals.RecordedEvent {
	ev.Data = bytes.Clone(ev.Data)
	ev.Metadata = bytes.Clone(ev.Metadata)
	return ev
}

func readOptions(opts *annals.ReadOptions) (annals.ReadOptions, error) {
	var o annals.ReadOptions
	if opts != nil {
		o = *opts
	}
	if o.Limit < 0 {
		return o, fmt.Errorf("%w: negative read limit %d", annals.ErrInvalidArgument, o.Limit)
	}
	return o, o.Filter.Validate()
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
		if err := annals.ValidateStreamID(stream); err != nil {
			yield(annals.RecordedEvent{}, err)
			return
		}
		o, err := readOptions(opts)
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
		switch {
		case st.tombstoned:
			err = fmt.Errorf("read %q: %w", stream, annals.ErrStreamDeleted)
		case !st.exists():
			err = fmt.Errorf("read %q: %w", stream, annals.ErrStreamNotFound)
		}
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
		o, err := readOptions(opts)
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

func subscribeOptions(opts *annals.SubscribeOptions) (annals.SubscribeOptions, error) {
	var o annals.SubscribeOptions
	if opts != nil {
		o = *opts
	}
	return o, o.Filter.Validate()
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
		o, err := subscribeOptions(opts)
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
		if err := annals.ValidateStreamID(stream); err != nil {
			yield(annals.RecordedEvent{}, err)
			return
		}
		o, err := subscribeOptions(opts)
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
				if st.tombstoned {
					s.mu.Unlock()
					yield(annals.RecordedEvent{}, fmt.Errorf("subscribe to %q: %w", stream, annals.ErrStreamDeleted))
					return
				}
				lo := s.visibleFromLocked(st, time.Now())
				if from == annals.End {
					from = st.next()
				}
				from = max(from, lo)
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
		var o annals.ListOptions
		if opts != nil {
			o = *opts
		}
		if o.Limit < 0 {
			yield(annals.StreamInfo{}, fmt.Errorf("%w: negative list limit %d", annals.ErrInvalidArgument, o.Limit))
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
