package projection

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/annalsdb/annals"
	"github.com/annalsdb/annals/internal/traceprop"
	"github.com/annalsdb/annals/lease"
	"github.com/annalsdb/annals/supervisor"
)

// DefaultMaxBatch is the default of [RunnerOptions.MaxBatch].
const DefaultMaxBatch = 1024

// RunnerOptions tune a [Runner]. The zero value (and nil) means the defaults.
type RunnerOptions struct {
	// MaxBatch bounds how many events one Update applies; default [DefaultMaxBatch]. While
	// catching up, batches are full; live, each batch holds what arrived since the last one
	// (often one event), so an event is applied as soon as it is delivered. The reader keeps at
	// most MaxBatch events waiting besides the batch being applied.
	MaxBatch int
	// Supervision says how Run is supervised: the lease ("projection/<Name>") that decides
	// which of several runners of the projection works while the others stand by, and the
	// backoff after transient errors. Its Keeper defaults to the target Store when it keeps
	// leases (Memory, tables.DB, pgstore.Projections: they check the lease in the transaction
	// of every Update), else to the event store when it does (memstore, filestore, pgstore, the
	// client over `annals serve`: Checkpoints fences by the token it records); with neither, or
	// NoLease, every runner works and the compare-and-set checkpoints keep the effect once.
	// Permanent defaults to supervisor.IsPermanent and [ErrInvalid].
	Supervision supervisor.Policy
}

// LeasePrefix starts the name of the lease a [Runner] holds: LeasePrefix + the projection's
// name.
const LeasePrefix = "projection/"

// State is what a [Runner] is doing.
type State int

const (
	// StateStopped: Run is not running.
	StateStopped State = iota
	// StateCatchingUp: Run is applying events that were already in the log when it started.
	StateCatchingUp
	// StateLive: Run has applied every matching event that was in the log when it started and
	// follows new ones as they are appended.
	StateLive
	// StateFailed: a handler failed; Run waits for [Runner.Retry] or [Runner.Skip].
	StateFailed
	// StateRebuilding is the state in the Status that [Runner.Rebuild] reports about the
	// generation it builds.
	StateRebuilding
	// StateStandingBy: another runner of the projection holds the lease; Run takes over when
	// it lapses. Status.Supervisor.Other says who holds it.
	StateStandingBy
	// StateRetrying: an error of a store stopped the work; Run starts it again at
	// Status.Supervisor.RetryAt (Status.LastError says why).
	StateRetrying
)

// MarshalText encodes s as its String, so that a Status encodes readably (as JSON, say).
func (s State) MarshalText() ([]byte, error) { return []byte(s.String()), nil }

func (s State) String() string {
	switch s {
	case StateStopped:
		return "stopped"
	case StateCatchingUp:
		return "catching-up"
	case StateLive:
		return "live"
	case StateFailed:
		return "failed"
	case StateRebuilding:
		return "rebuilding"
	case StateStandingBy:
		return "standing-by"
	case StateRetrying:
		return "retrying"
	}
	return fmt.Sprintf("State(%d)", int(s))
}

// Status describes a projection at one moment.
type Status struct {
	Name string
	// Generation is the active generation (for a Rebuild's progress, the one being built).
	Generation uint64
	State      State
	// Position is the checkpoint: the position of the last event the read model reflects.
	// With a filter it moves only on matching events.
	Position uint64
	// Head is the position of the last event in the log.
	Head uint64
	// LagEvents is Head - Position when an event the projection still has to apply lies after
	// Position, else 0 (the read model is up to date). It counts positions, matching or not.
	LagEvents uint64
	// LagSeconds is how long the oldest event the projection still has to apply has been in
	// the log, 0 when there is none.
	LagSeconds float64
	// LastError is the error that stopped the projection: a [*HandlerError] while it is
	// failed, or the error Run returned. Nil after Retry or Skip.
	LastError error
	// FailedEvent is the event the handler failed on, nil unless the projection is failed.
	FailedEvent *annals.RecordedEvent
	// Rebuilding reports a [Runner.Rebuild] in progress.
	Rebuilding bool
	// Supervisor is the state of Run's supervision: the lease this runner holds, or the one
	// it stands by behind, and its retries.
	Supervisor supervisor.Status
}

// Runner keeps the read model of one projection up to date: it subscribes to the log
// ($all, with the projection's filter) from the stored checkpoint + 1, applies the events in
// batches (each batch one [Store.Update]: the handler calls and the checkpoint in one
// transaction), then follows the log live. All methods are safe for concurrent use.
//
// A handler error stops this projection, not the process: Run parks in [StateFailed] with the
// failing event recorded (see [Status]) and the checkpoint just before it, keeps serving
// queries from the read model as it was, and waits for the operator's choice: [Runner.Retry]
// calls the handler on that event again, [Runner.Skip] moves past it without applying it. A
// handler error matching lease.ErrLost (a write the handler made with the lease its context
// carries, refused by a store that fences it) is not the event's failure: the runner has lost
// its lease, and stands by as after any lost lease. Errors of the event store or of the target Store end Run instead (it returns them), except
// the refusal of an Update whose checkpoint moved ([ErrCheckpointMoved]: another runner of
// the projection committed first): Run then reads the stored generation and checkpoint and
// continues from them, so that several runners of one projection (one per replica) apply
// each event once between them.
//
// To find the failing event of a batch exactly, a runner whose batch failed applies the events
// of that batch again one per transaction before it reports the failure; handlers must
// therefore tolerate being called again for an event whose transaction was rolled back (which
// a handler that only writes through its Tx does).
type Runner[Tx any] struct {
	events annals.ReadSubscriber
	target Store[Tx]
	p      Projection[Tx]
	max    int
	sup    *supervisor.Supervisor

	// applyMu serialises the commits to target and the switch of generations. Lock order:
	// applyMu, then mu.
	applyMu sync.Mutex
	mu      struct {
		sync.Mutex
		loaded              bool
		gen, checkpoint     uint64
		stored              uint64 // the checkpoint the target holds, as far as known
		state               State
		running, rebuilding bool
		working             bool // Run's work is under way (under the lease, if any)
		sup                 supervisor.Status
		liveAt              uint64 // the last matching position in the log when Run started
		lastErr             error
		failed              *HandlerError
		skip                uint64        // position to apply without calling the handler
		isolateUntil        uint64        // apply events up to here one per transaction
		changed             chan struct{} // closed and replaced at every change
		resume              chan struct{} // closed to wake a Run parked on a failure
	}
}

var errRestart = errors.New("restart the subscription")

// NewRunner returns a runner of p over the log of events, keeping its read model in target.
// It returns an error matching [ErrInvalid] for an empty or NUL-holding name, a nil handler,
// or an invalid filter. It does not start anything: call [Runner.Run].
func NewRunner[Tx any](events annals.ReadSubscriber, target Store[Tx], p Projection[Tx], opts *RunnerOptions) (*Runner[Tx], error) {
	if err := validateName(p.Name); err != nil {
		return nil, err
	}
	if p.Handle == nil {
		return nil, fmt.Errorf("%w: projection %q has no handler", ErrInvalid, p.Name)
	}
	if err := p.Filter.Validate(); err != nil {
		return nil, fmt.Errorf("%w: projection %q: %w", ErrInvalid, p.Name, err)
	}
	if events == nil || target == nil {
		return nil, fmt.Errorf("%w: projection %q: nil event store or target store", ErrInvalid, p.Name)
	}
	r := &Runner[Tx]{events: events, target: target, p: p, max: DefaultMaxBatch}
	var policy supervisor.Policy
	if opts != nil {
		if opts.MaxBatch > 0 {
			r.max = opts.MaxBatch
		}
		policy = opts.Supervision
	}
	policy = policy.Resolve(target, events)
	if policy.Permanent == nil {
		policy.Permanent = func(err error) bool { return supervisor.IsPermanent(err) || errors.Is(err, ErrInvalid) }
	}
	onChange := policy.OnChange
	policy.OnChange = func(st supervisor.Status) {
		r.supervised(st)
		if onChange != nil {
			onChange(st)
		}
	}
	sup, err := supervisor.New(supervisor.Options{Name: LeasePrefix + p.Name, Policy: policy})
	if err != nil {
		return nil, fmt.Errorf("%w: projection %q: %w", ErrInvalid, p.Name, err)
	}
	r.sup = sup
	r.mu.changed = make(chan struct{})
	r.mu.sup = sup.Status()
	return r, nil
}

// supervised records a change of the supervisor's state.
func (r *Runner[Tx]) supervised(st supervisor.Status) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.mu.sup = st
	if !r.mu.working && r.mu.running {
		switch st.State {
		case supervisor.StandingBy:
			r.mu.state = StateStandingBy
		case supervisor.Retrying:
			r.mu.state, r.mu.lastErr = StateRetrying, st.Err
		}
	}
	r.notifyLocked()
}

// Name returns the projection's name.
func (r *Runner[Tx]) Name() string { return r.p.Name }

// Run applies events until ctx is done, then returns ctx's error. Under a lease (see
// [RunnerOptions].Supervision) it first waits for the lease in [StateStandingBy] while another
// runner of the projection holds it, and stops writing at once when it loses it (its Updates
// carry the lease, so a Store refuses them once another runner took over), then stands by
// again. Holding it (or without a lease), it catches up from the stored checkpoint in full
// batches, then follows the log live. A handler error parks it (see [Runner]). After an error
// of the event store or the target Store it starts again from the generation and checkpoint
// the target holds, after a backoff that doubles up to a cap ([StateRetrying], the error in
// Status.LastError); a permanent error (bad input, a corrupt or closed store; see
// supervisor.IsPermanent) makes it return that error. It returns an error matching [ErrBusy]
// if Run is already running.
func (r *Runner[Tx]) Run(ctx context.Context) error {
	r.mu.Lock()
	if r.mu.running {
		r.mu.Unlock()
		return fmt.Errorf("%w: projection %q: Run", ErrBusy, r.p.Name)
	}
	r.mu.running = true
	r.mu.lastErr = nil
	r.mu.Unlock()
	err := r.sup.Run(ctx, r.work)
	r.mu.Lock()
	r.mu.running = false
	r.mu.state = StateStopped
	if err != nil && ctx.Err() == nil {
		r.mu.lastErr = err
	}
	r.notifyLocked()
	r.mu.Unlock()
	return err
}

// work is one spell of Run's work, under the lease when there is one (ctx carries it).
func (r *Runner[Tx]) work(ctx context.Context) error {
	r.mu.Lock()
	r.mu.working = true
	r.mu.Unlock()
	err := r.run(ctx)
	r.mu.Lock()
	r.mu.working = false
	// What the target holds may differ from what this runner last knew: an Update that
	// failed may have committed anyway, (Memory) dropped the generation, or another runner
	// moved on. The next spell reads the generation and the checkpoint again.
	r.mu.loaded = false
	if err != nil && ctx.Err() == nil {
		r.mu.lastErr = err
	}
	r.notifyLocked()
	r.mu.Unlock()
	return err
}

func (r *Runner[Tx]) run(ctx context.Context) error {
	if err := r.load(ctx); err != nil {
		return err
	}
	if err := r.claim(ctx); err != nil {
		return err
	}
	for {
		r.mu.Lock()
		failed := r.mu.failed
		r.mu.Unlock()
		if failed != nil {
			if err := r.park(ctx); err != nil {
				return err
			}
			continue
		}
		err := r.follow(ctx)
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if he, ok := errors.AsType[*HandlerError](err); ok {
			r.mu.Lock()
			r.mu.failed = he
			r.mu.lastErr = he
			r.mu.Unlock()
			continue
		}
		if !errors.Is(err, errRestart) {
			return fmt.Errorf("projection %q: %w", r.p.Name, err)
		}
	}
}

// claim writes, when ctx carries a lease, an empty update under it, so that a Store that
// fences by the token it last recorded (Checkpoints) refuses the runner this one replaced from
// now on, even before this one has an event to apply.
func (r *Runner[Tx]) claim(ctx context.Context) error {
	if _, ok := lease.FromContext(ctx); !ok {
		return nil
	}
	for {
		r.applyMu.Lock()
		r.mu.Lock()
		gen, stored := r.mu.gen, r.mu.stored
		r.mu.Unlock()
		err := r.target.Update(ctx, r.p.Name, gen, stored, stored, func(Tx) error { return nil })
		r.applyMu.Unlock()
		if !errors.Is(err, ErrCheckpointMoved) {
			if err != nil {
				return fmt.Errorf("projection %q: claim the checkpoint under the lease: %w", r.p.Name, err)
			}
			return nil
		}
		r.mu.Lock()
		r.mu.loaded = false
		r.mu.Unlock()
		if err := r.load(ctx); err != nil {
			return err
		}
	}
}

// park waits, in StateFailed, for Retry, Skip or a rebuild that fixes the failure.
func (r *Runner[Tx]) park(ctx context.Context) error {
	r.mu.Lock()
	if r.mu.failed == nil {
		r.mu.Unlock()
		return nil
	}
	resume := make(chan struct{})
	r.mu.resume = resume
	r.mu.state = StateFailed
	r.notifyLocked()
	r.mu.Unlock()
	select {
	case <-resume:
		return nil
	case <-ctx.Done():
		r.mu.Lock()
		r.mu.resume = nil
		r.mu.Unlock()
		return ctx.Err()
	}
}

// follow subscribes from the checkpoint + 1 and applies batches until an error. It reads the
// generation and the checkpoint from the target first when they are not loaded (after
// another runner moved the checkpoint).
func (r *Runner[Tx]) follow(ctx context.Context) error {
	if err := r.load(ctx); err != nil {
		return err
	}
	liveAt, err := r.lastMatching(ctx)
	if err != nil {
		return err
	}
	r.mu.Lock()
	cp := r.mu.checkpoint
	r.mu.liveAt = liveAt
	r.mu.state = StateCatchingUp
	if cp >= liveAt {
		r.mu.state = StateLive
	}
	r.notifyLocked()
	r.mu.Unlock()
	f := startFeed(ctx, r.events, cp+1, r.p.Filter, r.max)
	defer f.close()
	var buf []annals.RecordedEvent
	for {
		batch, err := f.next(ctx, buf)
		if err != nil {
			return fmt.Errorf("subscribe to the log: %w", err)
		}
		if err := r.applyLive(ctx, batch); err != nil {
			return err
		}
		buf = batch
	}
}

// applyLive applies batch to the active generation.
func (r *Runner[Tx]) applyLive(ctx context.Context, batch []annals.RecordedEvent) error {
	r.applyMu.Lock()
	defer r.applyMu.Unlock()
	r.mu.Lock()
	gen, cp, stored, skip, iso := r.mu.gen, r.mu.checkpoint, r.mu.stored, r.mu.skip, r.mu.isolateUntil
	r.mu.Unlock()
	// After a switch of generations the new one may already hold some of these events.
	i := 0
	for i < len(batch) && batch[i].Position <= cp {
		i++
	}
	batch = batch[i:]
	for len(batch) > 0 {
		n := len(batch)
		if batch[0].Position <= iso {
			n = 1
		}
		chunk := batch[:n]
		last := chunk[n-1].Position
		committed, err := r.commit(ctx, gen, stored, chunk, skip)
		if errors.Is(err, ErrCheckpointMoved) {
			// Another runner of the projection committed first; nothing of chunk was applied.
			ce, ok := errors.AsType[*CheckpointConflictError](err)
			if !ok || ce.Actual == 0 || ce.Actual < cp {
				// The generation was dropped or reset (or holds less than this runner has
				// read from the log): read the generation and the checkpoint again and
				// subscribe from there.
				r.mu.Lock()
				r.mu.loaded = false
				r.mu.Unlock()
				return errRestart
			}
			// The other runner is ahead on this generation: go on after its checkpoint.
			cp, stored = ce.Actual, ce.Actual
			skip, iso = r.advance(cp, stored, skip, iso)
			i := 0
			for i < len(batch) && batch[i].Position <= cp {
				i++
			}
			batch = batch[i:]
			continue
		}
		if err != nil {
			he, ok := errors.AsType[*HandlerError](err)
			if !ok {
				return fmt.Errorf("update read model: %w", err)
			}
			// The store may have kept part of the chunk (see Memory): ask it where it is.
			cp, cerr := r.target.Checkpoint(ctx, r.p.Name, gen)
			if cerr != nil {
				return fmt.Errorf("read checkpoint after a failed update: %w", cerr)
			}
			r.mu.Lock()
			defer r.mu.Unlock()
			r.mu.checkpoint, r.mu.stored = cp, cp
			r.notifyLocked()
			if n == 1 {
				return he
			}
			r.mu.isolateUntil = last
			return errRestart
		}
		if committed {
			stored = last
		}
		cp = last
		skip, iso = r.advance(cp, stored, skip, iso)
		batch = batch[n:]
	}
	return nil
}

// advance records that the read model reflects the log up to cp, of which the target holds
// up to stored, and returns skip and iso (see applyLive), cleared once cp has passed them.
func (r *Runner[Tx]) advance(cp, stored, skip, iso uint64) (uint64, uint64) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.mu.checkpoint, r.mu.stored = cp, stored
	if skip != 0 && skip <= cp {
		r.mu.skip, skip = 0, 0
	}
	if iso != 0 && iso <= cp {
		r.mu.isolateUntil, iso = 0, 0
	}
	if cp >= r.mu.liveAt && r.mu.state == StateCatchingUp {
		r.mu.state = StateLive
	}
	r.notifyLocked()
	return skip, iso
}

// commit applies chunk to generation gen in one Update that continues from the stored
// checkpoint from, leaving out the event at position skip, and reports whether it committed.
// A chunk made only of events of checkpoint streams is not committed at all: the checkpoint
// moves in memory only (a restart applies them again, which costs nothing), so that runners
// over a [Checkpoints] store do not feed on each other's checkpoints.
func (r *Runner[Tx]) commit(ctx context.Context, gen, from uint64, chunk []annals.RecordedEvent, skip uint64) (bool, error) {
	needed := false
	for i := range chunk {
		if chunk[i].Position == skip || !ignored(&chunk[i]) {
			needed = true
			break
		}
	}
	if !needed {
		return false, nil
	}
	err := r.target.Update(ctx, r.p.Name, gen, from, chunk[len(chunk)-1].Position, func(tx Tx) error {
		for i := range chunk {
			if chunk[i].Position == skip || ignored(&chunk[i]) {
				continue
			}
			if err := r.handle(ctx, tx, &chunk[i]); err != nil {
				if errors.Is(err, lease.ErrLost) {
					// A write of the handler fenced off: the lease is lost, which is not the
					// event's failure. Run stands by, as after any lost lease.
					return err
				}
				return &HandlerError{Projection: r.p.Name, Event: chunk[i], Err: err}
			}
		}
		return nil
	})
	return err == nil, err
}

// handle calls the projection's handler on ev within its span (see package traceprop).
func (r *Runner[Tx]) handle(ctx context.Context, tx Tx, ev *annals.RecordedEvent) error {
	ctx, span := traceprop.StartEvent(ctx, "projection", r.p.Name, ev)
	err := r.p.Handle(ctx, tx, *ev)
	traceprop.End(span, err)
	return err
}

// Retry resumes a failed projection at the event its handler failed on, calling the handler
// again. It returns an error matching [ErrNotFailed] when the projection is not failed. When
// Run is not running, the next Run retries.
func (r *Runner[Tx]) Retry() error { return r.resolve(false) }

// Skip resumes a failed projection after the event its handler failed on, without applying
// it: the checkpoint moves past it with the next batch committed (until then a restart of the
// process forgets the skip and fails again on the event). It returns an error matching
// [ErrNotFailed] when the projection is not failed.
func (r *Runner[Tx]) Skip() error { return r.resolve(true) }

func (r *Runner[Tx]) resolve(skip bool) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.mu.failed == nil {
		return fmt.Errorf("%w: projection %q", ErrNotFailed, r.p.Name)
	}
	if skip {
		r.mu.skip = r.mu.failed.Event.Position
	}
	r.clearFailureLocked()
	return nil
}

func (r *Runner[Tx]) clearFailureLocked() {
	r.mu.failed = nil
	r.mu.lastErr = nil
	if r.mu.resume != nil {
		close(r.mu.resume)
		r.mu.resume = nil
		r.mu.state = StateCatchingUp
	}
	r.notifyLocked()
}

func (r *Runner[Tx]) notifyLocked() {
	close(r.mu.changed)
	r.mu.changed = make(chan struct{})
}

// load reads the active generation and its checkpoint from the target, unless they are
// loaded: once, again after Run's work stops, and after an Update found the checkpoint moved.
func (r *Runner[Tx]) load(ctx context.Context) error {
	r.mu.Lock()
	loaded := r.mu.loaded
	r.mu.Unlock()
	if loaded {
		return nil
	}
	return r.read(ctx, false)
}

// read reads the active generation and its checkpoint from the target and keeps them: as
// loaded unless they were loaded meanwhile, or, with again, whenever the runner does not work
// (another runner may move them).
func (r *Runner[Tx]) read(ctx context.Context, again bool) error {
	r.applyMu.Lock()
	defer r.applyMu.Unlock()
	gen, err := r.target.Generation(ctx, r.p.Name)
	if err != nil {
		return fmt.Errorf("projection %q: read generation: %w", r.p.Name, err)
	}
	cp, err := r.target.Checkpoint(ctx, r.p.Name, gen)
	if err != nil {
		return fmt.Errorf("projection %q: read checkpoint: %w", r.p.Name, err)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if again && !r.mu.working || !again && !r.mu.loaded {
		r.mu.loaded = r.mu.loaded || !again
		r.mu.gen, r.mu.checkpoint, r.mu.stored = gen, cp, cp
		r.passedLocked()
		r.notifyLocked()
	}
	return nil
}

// passedLocked forgets a failure on an event that the checkpoint read from the target has
// passed: another runner of the projection applied (or skipped) it.
func (r *Runner[Tx]) passedLocked() {
	if f := r.mu.failed; f != nil && r.mu.checkpoint >= f.Event.Position {
		r.clearFailureLocked()
	}
}

// lastMatching returns the position of the last event of the log that passes the filter, 0
// when none does.
func (r *Runner[Tx]) lastMatching(ctx context.Context) (uint64, error) {
	return head(ctx, r.events, r.p.Filter)
}

// head returns the position of the last event of the log that passes f (nil: any), 0 when
// none does.
func head(ctx context.Context, events annals.Reader, f *annals.Filter) (uint64, error) {
	for ev, err := range events.ReadAll(ctx, &annals.ReadOptions{Backwards: true, From: annals.End, Limit: 1, Filter: f}) {
		if err != nil {
			return 0, fmt.Errorf("read the head of the log: %w", err)
		}
		return ev.Position, nil
	}
	return 0, nil
}

// firstMatching returns the first event after position after and before until (0: no bound)
// that passes the filter.
func (r *Runner[Tx]) firstMatching(ctx context.Context, after, until uint64) (annals.RecordedEvent, bool, error) {
	for ev, err := range r.events.ReadAll(ctx, &annals.ReadOptions{From: after + 1, Until: until, Limit: 1, Filter: r.p.Filter}) {
		if err != nil {
			return annals.RecordedEvent{}, false, fmt.Errorf("read the log: %w", err)
		}
		return ev, true, nil
	}
	return annals.RecordedEvent{}, false, nil
}

// Status reports the projection's state, checkpoint and lag; it reads the head of the log
// from the event store, and returns that read's error or ctx's.
func (r *Runner[Tx]) Status(ctx context.Context) (Status, error) {
	if err := r.observe(ctx); err != nil {
		return Status{}, err
	}
	r.mu.Lock()
	st := Status{Name: r.p.Name, Generation: r.mu.gen, State: r.mu.state, Position: r.mu.checkpoint,
		LastError: r.mu.lastErr, Rebuilding: r.mu.rebuilding, Supervisor: r.mu.sup}
	if r.mu.failed != nil {
		ev := r.mu.failed.Event
		st.FailedEvent = &ev
	}
	r.mu.Unlock()
	h, err := head(ctx, r.events, nil)
	if err != nil {
		return st, fmt.Errorf("projection %q: %w", r.p.Name, err)
	}
	st.Head = h
	if st.Head > st.Position {
		ev, ok, err := r.firstMatching(ctx, st.Position, 0)
		if err != nil {
			return st, fmt.Errorf("projection %q: %w", r.p.Name, err)
		}
		if ok {
			st.LagEvents = st.Head - st.Position
			st.LagSeconds = max(0, time.Since(ev.Time).Seconds())
		}
	}
	return st, nil
}

// WaitFor returns once the read model reflects every event up to position: when the
// checkpoint has reached it, or when no event the projection would apply lies between the
// checkpoint and position (with a filter the checkpoint moves only on matching events). It
// waits on the runner's progress, not by polling, and returns ctx's error when ctx is done
// first, or the [*HandlerError] (matching [ErrFailed]) when the projection is failed on an
// event at or before position. Position is meant to come from an append's result: for a
// position not yet written, WaitFor returns as soon as the events written so far are applied.
func (r *Runner[Tx]) WaitFor(ctx context.Context, position uint64) error {
	if err := r.observe(ctx); err != nil {
		return err
	}
	var nextMatch uint64 // a matching event at or before position, known not applied yet
	poll := time.Millisecond
	for {
		r.mu.Lock()
		cp, changed, failed, working := r.mu.checkpoint, r.mu.changed, r.mu.failed, r.mu.working
		r.mu.Unlock()
		if cp >= position {
			return nil
		}
		if failed != nil && failed.Event.Position <= position {
			return failed
		}
		if r.p.Filter != nil && cp >= nextMatch {
			ev, ok, err := r.firstMatching(ctx, cp, position+1)
			if err != nil {
				return fmt.Errorf("projection %q: %w", r.p.Name, err)
			}
			if !ok {
				return nil
			}
			nextMatch = ev.Position
		}
		if working {
			select {
			case <-changed:
			case <-ctx.Done():
				return ctx.Err()
			}
			continue
		}
		// Another runner (or none) applies the events: watch the target's checkpoint.
		t := time.NewTimer(poll)
		select {
		case <-changed:
		case <-t.C:
			poll = min(2*poll, maxPoll)
		case <-ctx.Done():
			t.Stop()
			return ctx.Err()
		}
		t.Stop()
		if err := r.observe(ctx); err != nil {
			return err
		}
	}
}

// maxPoll is the longest pause of WaitFor between two reads of the target's checkpoint while
// another runner does the work.
const maxPoll = 20 * time.Millisecond

// observe loads the generation and the checkpoint the target holds; while this runner does
// not work (it stands by, or Run is not running), it reads them again each time, since another
// runner may move them.
func (r *Runner[Tx]) observe(ctx context.Context) error {
	r.mu.Lock()
	working := r.mu.working
	r.mu.Unlock()
	if working {
		return r.load(ctx)
	}
	return r.read(ctx, true)
}

// ignored reports an event of a checkpoint stream or of its metadata stream, which runners
// never hand to handlers.
func ignored(ev *annals.RecordedEvent) bool {
	return strings.HasPrefix(ev.Stream, CheckpointStreamPrefix) || strings.HasPrefix(ev.Stream, checkpointMetaPrefix)
}

// checkpointMetaPrefix starts the names of the metadata streams of checkpoint streams.
var checkpointMetaPrefix = annals.MetaStream(CheckpointStreamPrefix)
