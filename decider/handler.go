package decider

import (
	"context"
	"errors"
	"fmt"
	"iter"
	"time"

	"github.com/annalsdb/annals"
	"github.com/annalsdb/annals/codec"
	"github.com/annalsdb/annals/internal/traceprop"
	"go.opentelemetry.io/otel/trace"
)

// EventStore is what a [Handler] uses of an event store: it reads and follows streams, appends,
// and reads stream metadata to tell the events that metadata hides from those not yet readable
// after a conflict. Every [annals.Store] is one.
type EventStore interface {
	annals.ReadAppendSubscriber
	annals.MetadataReader
}

// Handler handles the commands of one [Decider] on the streams of a store: it loads a stream
// (latest snapshot + the events after it), folds, decides and appends with the exact expected
// revision, retrying on conflict. It only uses an [EventStore], which every [annals.Store]
// is, so it works on every backend.
// A Handler is safe for concurrent use; commands on different streams do not wait for each
// other, and concurrent commands on one stream are serialized by the store's expected-revision
// check (the losers decide again).
//
// What a Handler keeps in memory (the state cache) is only an optimisation: several handlers,
// in one process or many, may serve the same streams.
//
// Soft deletion: a stream that no longer exists loads as Initial(), but a stream soft-deleted
// and re-created is folded from its snapshot or cached state as if it had not been deleted;
// delete its snapshot stream too, or use a new stream id.
type Handler[S, C, E any] struct {
	store       EventStore
	reg         *codec.Registry
	d           Decider[S, C, E]
	validate    func(C) error
	maxRetries  int
	window      int
	skipUnknown bool
	onError     func(error)
	cache       *stateCache[S]
	snaps       *SnapshotPolicy // nil: none; Store set
	checkSnaps  bool            // check each snapshot before saving it
}

// NewHandler returns a handler for d over store, decoding events with reg. It returns an error
// matching [annals.ErrInvalidArgument] when store, reg or a function of d is nil, or when
// opts.Snapshots has no Version or neither Every nor MaxBytes.
func NewHandler[S, C, E any](store EventStore, reg *codec.Registry, d Decider[S, C, E], opts *Options[C]) (*Handler[S, C, E], error) {
	if store == nil || reg == nil {
		return nil, fmt.Errorf("%w: decider: nil store or registry", annals.ErrInvalidArgument)
	}
	if d.Initial == nil || d.Decide == nil || d.Evolve == nil {
		return nil, fmt.Errorf("%w: decider: Initial, Decide and Evolve must all be set", annals.ErrInvalidArgument)
	}
	var o Options[C]
	if opts != nil {
		o = *opts
	}
	h := &Handler[S, C, E]{
		store: store, reg: reg, d: d,
		validate:    o.Validate,
		maxRetries:  o.MaxRetries,
		window:      o.IdempotencyWindow,
		skipUnknown: o.SkipUnknownTypes,
		onError:     o.OnError,
		cache:       newStateCache[S](o.CacheSize),
	}
	switch {
	case h.maxRetries == 0:
		h.maxRetries = DefaultMaxRetries
	case h.maxRetries < 0:
		h.maxRetries = 0
	}
	if h.window <= 0 {
		h.window = DefaultIdempotencyWindow
	}
	if h.onError == nil {
		h.onError = defaultOnError
	}
	if o.Snapshots != nil {
		p := *o.Snapshots
		if p.Version == "" {
			return nil, fmt.Errorf("%w: decider: snapshot policy without a Version", annals.ErrInvalidArgument)
		}
		if p.Every == 0 && p.MaxBytes <= 0 {
			return nil, fmt.Errorf("%w: decider: snapshot policy with neither Every nor MaxBytes", annals.ErrInvalidArgument)
		}
		if p.Store == nil {
			p.Store = NewStreamSnapshots(store, nil)
		}
		h.snaps = &p
		h.checkSnaps = checkSnapshots(o.CheckSnapshots)
	}
	return h, nil
}

// Handle validates cmd, loads stream, decides and appends the events decided, and returns
// what was written. The events' metadata carries opts' correlation id (a fresh one when empty),
// causation id, idempotency key and extra fields. When the append returns the events are as
// durable as the store's appends.
//
// Errors: [ErrInvalidCommand] (wrapping Validate's error) before anything is read; Decide's
// error (nothing written), with its message and matching it through errors.Is and errors.As;
// both of those also match [ErrRefused], and no other error does; [ErrTooManyConflicts] after [Options].MaxRetries retries
// (nothing written by the last attempt); errors matching [codec.ErrUnknownType] or
// [codec.ErrDecode] for stored events that do not decode, or [codec.ErrUnknownType] /
// [codec.ErrEncode] / [codec.ErrDecode] for decided events that do not encode, or do not
// decode back as an E (nothing written); and the store's errors (an append
// that failed otherwise than by a conflict may or may not have been written, as with
// [annals.Store.Append]).
//
// The state kept afterwards (state cache, snapshots) is folded from the decided events as
// stored, encoded and decoded again, so it is the state a fresh load folds even where the codec
// loses something (a field tagged json:"-", a pointer event). With [Options].CheckSnapshots,
// a snapshot whose state does not survive the codec is not saved, and Handle returns the
// Result of the written command together with an error matching [ErrSnapshotMismatch].
//
// Events of the stream that its metadata hides (truncateBefore, maxAge) are not folded; a
// conflict with them moves the handler past them, and the command is decided again.
//
// A command that decides no events appends nothing and returns Written false. With an
// idempotency key already handled on the stream it decides nothing and returns the first
// result with Duplicate set.
func (h *Handler[S, C, E]) Handle(ctx context.Context, stream string, cmd C, opts *CommandOptions) (Result[E], error) {
	if h.validate != nil {
		if err := h.validate(cmd); err != nil {
			return Result[E]{}, Invalid(err)
		}
	}
	var co CommandOptions
	if opts != nil {
		co = *opts
	}
	md := codec.Metadata{CorrelationID: co.CorrelationID, CausationID: co.CausationID, IdempotencyKey: co.IdempotencyKey, Extra: co.Extra}
	given := md.CorrelationID != ""
	if !given {
		md.CorrelationID = annals.NewUUID().String()
	}
	var span trace.Span
	ctx, span = h.startSpan(ctx, stream, cmd, md, given)
	traceprop.Inject(ctx, &md)

	c := &command[S, C, E]{h: h, stream: stream, cmd: cmd, key: co.IdempotencyKey, md: md}
	defer func() { traceprop.EndCommand(span, c.res.Written, c.res.Revision, c.res.Position, c.err) }()
	state := c.start(ctx)
	for state != stateDone {
		switch state {
		case stateLoad:
			state = c.load(ctx)
		case stateDecide:
			state = c.decide(ctx)
		case stateRecheck:
			state = c.recheck(ctx)
		case stateDecided:
			state = c.decided()
		case stateAppend:
			state = c.append(ctx)
		default:
			panic(fmt.Sprintf("decider: Handle in unknown state %d", state))
		}
	}
	return c.res, c.err
}

// startSpan starts the span of cmd on stream (see package traceprop): a no-op span, at no
// cost, when tracing is off. derive: md's correlation id came with the command (not made
// here), so a context without a span continues the trace derived from it.
func (h *Handler[S, C, E]) startSpan(ctx context.Context, stream string, cmd C, md codec.Metadata, derive bool) (context.Context, trace.Span) {
	if !traceprop.Enabled() {
		return traceprop.StartCommand(ctx, "", stream, md, false)
	}
	return traceprop.StartCommand(ctx, fmt.Sprintf("%T", cmd), stream, md, derive)
}

// encode returns the events to append for the decided events, and each of them decoded again
// as a load of the stream will decode it. An event that does not encode, or does not decode
// back as an E (Decide returned a pointer to a type whose value is not an E, say), is an
// error: nothing is written that the handler could not read.
func (h *Handler[S, C, E]) encode(stream string, events []E, md codec.Metadata) ([]annals.Event, []E, error) {
	encoded := make([]annals.Event, len(events))
	stored := make([]E, len(events))
	for i, e := range events {
		var err error
		if encoded[i], err = h.reg.Encode(e, md); err != nil {
			return nil, nil, fmt.Errorf("decider: %q: event %d decided: %w", stream, i, err)
		}
		ev := encoded[i]
		rec := annals.RecordedEvent{Stream: stream, Type: ev.Type, ContentType: ev.ContentType, Data: ev.Data, Metadata: ev.Metadata}
		if stored[i], _, err = codec.Decode[E](h.reg, rec); err != nil {
			return nil, nil, fmt.Errorf("decider: %q: event %d decided (%T) does not decode back: %w", stream, i, e, err)
		}
	}
	return encoded, stored, nil
}

// duplicate returns the result of the command that first used rec's key, reading its events
// back.
func (h *Handler[S, C, E]) duplicate(ctx context.Context, stream string, rec IdempotencyRecord) (Result[E], error) {
	res := Result[E]{Stream: stream, Revision: rec.Last, Position: rec.Position, Duplicate: true}
	for ev, err := range h.store.ReadStream(ctx, stream, &annals.ReadOptions{From: rec.First, Until: rec.Last + 1}) {
		if err != nil {
			if errors.Is(err, annals.ErrStreamNotFound) {
				break
			}
			return Result[E]{}, err
		}
		e, _, err := codec.Decode[E](h.reg, ev)
		if err != nil {
			if h.skipUnknown && errors.Is(err, codec.ErrUnknownType) {
				continue
			}
			return Result[E]{}, err
		}
		res.Events = append(res.Events, e)
	}
	return res, nil
}

// LoadOptions choose the moment [Handler.Load] loads a stream at. The zero value (and nil)
// loads the current state.
type LoadOptions struct {
	// Until, when not 0, folds only the events with a revision below it: the state as of
	// revision Until-1.
	Until uint64
	// AsOf, when not zero, folds only the events recorded at or before it.
	AsOf time.Time
}

// Load returns the state of stream, as of opts' revision or time. Snapshots are used when
// they are not past that point; the state cache is not used. A stream that does not exist (or
// had no event by then) gives Initial() with Exists false and no error. Errors: those of
// reading the store and of decoding its events (see [Handler.Handle]).
func (h *Handler[S, C, E]) Load(ctx context.Context, stream string, opts *LoadOptions) (State[S], error) {
	var o LoadOptions
	if opts != nil {
		o = *opts
	}
	agg := h.fromSnapshot(ctx, stream, SnapshotQuery{Until: o.Until, AsOf: o.AsOf})
	if _, err := h.catchUp(ctx, agg, o.Until, o.AsOf); err != nil {
		return State[S]{}, err
	}
	return State[S]{Value: agg.state, Revision: agg.revision, Position: agg.position, Exists: agg.exists}, nil
}

// History yields each event of stream from the start with the state after it, without
// snapshots: the stream's state history. It yields one error and stops on failure:
// [annals.ErrStreamNotFound] when the stream does not exist, and the errors of
// [Handler.Load]. With [Options].SkipUnknownTypes, events that do not decode as an E are
// reported and left out.
func (h *Handler[S, C, E]) History(ctx context.Context, stream string) iter.Seq2[Step[S, E], error] {
	return func(yield func(Step[S, E], error) bool) {
		state := h.d.Initial()
		for rec, err := range h.store.ReadStream(ctx, stream, nil) {
			if err != nil {
				yield(Step[S, E]{}, err)
				return
			}
			e, md, err := codec.Decode[E](h.reg, rec)
			if err != nil {
				if h.skipUnknown && errors.Is(err, codec.ErrUnknownType) {
					h.onError(fmt.Errorf("decider: history of %q: skipped event %d: %w", stream, rec.Revision, err))
					continue
				}
				yield(Step[S, E]{}, fmt.Errorf("decider: history of %q: %w", stream, err))
				return
			}
			state = h.d.Evolve(state, e)
			if !yield(Step[S, E]{Event: rec, Decoded: e, Metadata: md, State: state}, nil) {
				return
			}
		}
	}
}

func (h *Handler[S, C, E]) newAggregate(stream string) *aggregate[S] {
	return &aggregate[S]{stream: stream, state: h.d.Initial(), keys: newKeyWindow(h.window, nil)}
}

// fromSnapshot returns the aggregate of the latest usable snapshot that q admits, or a fresh
// one. A snapshot that fails to load or decode is reported and ignored; one of another
// version is ignored.
func (h *Handler[S, C, E]) fromSnapshot(ctx context.Context, stream string, q SnapshotQuery) *aggregate[S] {
	agg := h.newAggregate(stream)
	if h.snaps == nil {
		return agg
	}
	snap, ok, err := h.snaps.Store.Load(ctx, stream, q)
	if err != nil {
		h.onError(fmt.Errorf("decider: load snapshot of %q: %w", stream, err))
		return agg
	}
	if !ok || snap.Version != h.snaps.Version {
		return agg
	}
	if snap.ContentType != h.reg.Codec().ContentType() && !(snap.ContentType == "" && h.reg.Codec().ContentType() == annals.ContentTypeJSON) {
		h.onError(fmt.Errorf("decider: snapshot of %q at revision %d has content type %q, not the codec's", stream, snap.Revision, snap.ContentType))
		return agg
	}
	state := h.d.Initial()
	if err := h.reg.Codec().Unmarshal(snap.State, &state); err != nil {
		h.onError(fmt.Errorf("decider: snapshot of %q at revision %d does not decode (change SnapshotPolicy.Version when the state changes shape): %w", stream, snap.Revision, err))
		return agg
	}
	agg.state, agg.exists = state, true
	agg.revision, agg.next, agg.position = snap.Revision, snap.Revision+1, snap.Position
	agg.keys = newKeyWindow(h.window, snap.Keys)
	return agg
}

// catchUp folds into agg the events of its stream from agg.next on (below until and at or
// before asOf, when set). missing reports that the stream does not exist (or was soft-deleted):
// agg is then a fresh aggregate.
func (h *Handler[S, C, E]) catchUp(ctx context.Context, agg *aggregate[S], until uint64, asOf time.Time) (missing bool, err error) {
	if until != 0 && agg.next >= until {
		return false, nil
	}
	for rec, err := range h.store.ReadStream(ctx, agg.stream, &annals.ReadOptions{From: agg.next, Until: until, AsOf: asOf}) {
		if err != nil {
			if errors.Is(err, annals.ErrStreamNotFound) {
				if agg.exists { // deleted since the snapshot or cached state
					*agg = *h.newAggregate(agg.stream)
				}
				return true, nil
			}
			return false, fmt.Errorf("decider: load %q: %w", agg.stream, err)
		}
		if err := h.apply(agg, rec); err != nil {
			return false, err
		}
	}
	return false, nil
}

// apply folds rec into agg.
func (h *Handler[S, C, E]) apply(agg *aggregate[S], rec annals.RecordedEvent) error {
	e, md, err := codec.Decode[E](h.reg, rec)
	switch {
	case err == nil:
		agg.state = h.d.Evolve(agg.state, e)
		if md.IdempotencyKey != "" {
			agg.keys.record(md.IdempotencyKey, rec.Revision, rec.Revision, rec.Position)
		}
	case h.skipUnknown && errors.Is(err, codec.ErrUnknownType):
		h.onError(fmt.Errorf("decider: load %q: skipped event %d: %w", agg.stream, rec.Revision, err))
	default:
		return fmt.Errorf("decider: load %q: %w", agg.stream, err)
	}
	agg.exists, agg.revision, agg.next, agg.position = true, rec.Revision, rec.Revision+1, rec.Position
	agg.sinceSnap++
	agg.sinceBytes += len(rec.Data) + len(rec.Metadata)
	return nil
}

// Bounds of one wait in awaitConflict for an event that is not yet readable; each wait that
// ends without it doubles the next, and the stream's state is checked again in between.
const (
	minConflictWait = 10 * time.Millisecond
	maxConflictWait = time.Second
)

// awaitConflict brings agg up to the revision that conflict reported, after catchUp has read
// what the stream shows (missing: the stream does not exist now, so there is nothing to wait
// for: the next append expects NoStream).
//
// The events up to that revision that a read does not return are either hidden (by the
// stream's metadata: truncateBefore, maxAge) and never will be, or not yet readable (a store
// may refuse an append because of another one that it is still making durable). Hidden ones
// are not part of the stream's fold: agg moves past them, and the command is decided again on
// what it has. Events not yet readable are waited for with a subscription, in bounded waits
// that each end with a new look at the stream (deleted meanwhile?) and at its metadata, and
// all bounded by ctx.
func (h *Handler[S, C, E]) awaitConflict(ctx context.Context, agg *aggregate[S], conflict error, missing bool) error {
	we, ok := errors.AsType[*annals.WrongExpectedVersionError](conflict)
	if !ok || missing {
		return nil
	}
	target, ok := we.Actual.Revision()
	if !ok || agg.exists && agg.revision >= target {
		return nil
	}
	for wait := minConflictWait; ; wait = min(2*wait, maxConflictWait) {
		hidden, err := h.hidden(ctx, agg, target)
		if err != nil {
			return fmt.Errorf("decider: load %q after a conflict: %w", agg.stream, err)
		}
		if hidden {
			// It may have become readable since catchUp: a read now returns it unless hidden.
			missing, err := h.catchUp(ctx, agg, 0, time.Time{})
			if err != nil || missing || agg.exists && agg.revision >= target {
				return err
			}
			// Position stays that of the last event folded: the hidden ones are not.
			agg.exists, agg.revision, agg.next = true, target, target+1
			return nil
		}
		if done, err := h.follow(ctx, agg, target, wait); err != nil || done {
			return err
		}
		missing, err := h.catchUp(ctx, agg, 0, time.Time{})
		if err != nil || missing || agg.exists && agg.revision >= target {
			return err
		}
	}
}

// hidden reports whether the stream's metadata hides its event at revision target from reads,
// so that it will never be folded, provided a read of the stream after the call does not
// return it. truncateBefore says so by itself; with maxAge, the event is hidden when the log
// already holds it (ReadAll does not apply stream metadata): readable, and yet not read.
// maxCount never hides the last event.
func (h *Handler[S, C, E]) hidden(ctx context.Context, agg *aggregate[S], target uint64) (bool, error) {
	meta, _, err := h.store.GetMetadata(ctx, agg.stream)
	if err != nil {
		return false, fmt.Errorf("read metadata: %w", err)
	}
	if meta.TruncateBefore > target {
		return true, nil
	}
	if meta.MaxAge <= 0 {
		return false, nil
	}
	// The last event of the stream in the log, scanning back no further than agg's.
	f := &annals.Filter{Categories: []string{annals.Category(agg.stream)}}
	for rec, err := range h.store.ReadAll(ctx, &annals.ReadOptions{Backwards: true, From: annals.End, Filter: f}) {
		if err != nil {
			return false, fmt.Errorf("read the log: %w", err)
		}
		if agg.exists && rec.Position <= agg.position {
			return false, nil
		}
		if rec.Stream == agg.stream {
			return rec.Revision >= target, nil
		}
	}
	return false, nil
}

// follow folds into agg the events its subscription to the stream delivers, until the one at
// revision target (done) or for at most wait (not done, no error).
func (h *Handler[S, C, E]) follow(ctx context.Context, agg *aggregate[S], target uint64, wait time.Duration) (done bool, err error) {
	sctx, cancel := context.WithTimeout(ctx, wait)
	defer cancel()
	for rec, err := range h.store.SubscribeStream(sctx, agg.stream, &annals.SubscribeOptions{From: agg.next}) {
		if err != nil {
			if ctx.Err() == nil && sctx.Err() != nil {
				return false, nil
			}
			return false, fmt.Errorf("decider: load %q after a conflict: %w", agg.stream, err)
		}
		if err := h.apply(agg, rec); err != nil {
			return false, err
		}
		if rec.Revision >= target {
			return true, nil
		}
	}
	return false, nil
}

// maybeSnapshot saves a snapshot of agg when the policy says so. A failure to save is
// reported, not returned: the command has been written. With the snapshot check on, a state
// that does not survive its encoding is not saved and the [*SnapshotMismatchError] is
// returned. The save outlives ctx's cancellation but not the policy's SaveTimeout.
func (h *Handler[S, C, E]) maybeSnapshot(ctx context.Context, agg *aggregate[S]) error {
	p := h.snaps
	if p == nil || !(p.Every > 0 && agg.sinceSnap >= p.Every || p.MaxBytes > 0 && agg.sinceBytes >= p.MaxBytes) {
		return nil
	}
	c := h.reg.Codec()
	if h.checkSnaps {
		if err := CheckSnapshot(c, h.d.Initial, agg.state); err != nil {
			if m, ok := errors.AsType[*SnapshotMismatchError](err); ok {
				m.Stream, m.Revision = agg.stream, agg.revision
			}
			return err
		}
	}
	state, err := c.Marshal(agg.state)
	if err != nil {
		h.onError(fmt.Errorf("decider: snapshot of %q at revision %d: %w", agg.stream, agg.revision, err))
		return nil
	}
	timeout := p.SaveTimeout
	if timeout <= 0 {
		timeout = DefaultSnapshotSaveTimeout
	}
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), timeout)
	defer cancel()
	err = p.Store.Save(sctx, Snapshot{
		Stream: agg.stream, Version: p.Version, Revision: agg.revision, Position: agg.position,
		ContentType: c.ContentType(), State: state, Keys: agg.keys.records(),
	})
	if err != nil {
		h.onError(fmt.Errorf("decider: snapshot of %q at revision %d: %w", agg.stream, agg.revision, err))
		return nil
	}
	agg.sinceSnap, agg.sinceBytes = 0, 0
	return nil
}
