package process

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"iter"
	"maps"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/annalsdb/annals"
	"github.com/annalsdb/annals/codec"
	"github.com/annalsdb/annals/decider"
	"github.com/annalsdb/annals/internal/traceprop"
	"github.com/annalsdb/annals/supervisor"
)

// maxChain bounds how many refusals one input may lead to, so that a React that answers every
// refusal with another refused command cannot loop for ever.
const maxChain = 32

// RunnerOptions configure a [Runner]. The zero value (and nil) gives the defaults.
type RunnerOptions struct {
	// IsRefusal tells a command refused (a domain rule or a validation: React gets it as a
	// [Refusal] input, to compensate) from one not handled (a store unreachable, too many
	// conflicts: Run stops and returns the error, and the input is handled again when the
	// runner runs again). The default counts as refusals the errors that match [ErrRefused]
	// (see [Refused]) or [decider.ErrRefused] (every refusal of a [decider.Handler]): a
	// failure the runner cannot tell from a refusal stops it rather than compensating for
	// good.
	IsRefusal func(error) bool
	// Clock is the clock deadlines are compared with and waited on; nil means the system
	// clock (or Now's, when Now is set). A test gives a fake clock to make deadlines come due
	// without waiting for them.
	Clock Clock
	// Now, when Clock is nil, is the time deadlines are compared with, waited on with real
	// timers; nil means time.Now. Setting both Clock and Now is an error.
	Now func() time.Time
	// CheckpointEvery is how many inputs (events of the log delivered to the runner, whether
	// an instance takes them or not, and deadlines) the runner handles between two
	// checkpoints of the manager (see [CheckpointStreamPrefix]). A restart reads the last
	// checkpoint, the journal events written after it and the events of the log after the
	// last one it records handled: about CheckpointEvery inputs' worth per runner of the
	// manager. 0 means 100; a negative value turns checkpoints off, and a restart then reads
	// the journals from the last checkpoint written, if any, or from the start.
	CheckpointEvery int
	// From, when not 0, is the position of the log to follow from instead of the one after
	// the last event the journals record (to replay events after widening Filter, say).
	// Events already journaled are recognised and skipped.
	From uint64
	// Supervision says how Run is supervised: the lease ("process/<Name>") that decides which
	// of several runners of the manager (one per replica) works while the others stand by,
	// and the backoff after transient errors. Its Keeper defaults to the event store when it
	// keeps leases (memstore, filestore, pgstore, the client over `annals serve`); with none,
	// or NoLease, every runner works, and the journals' compare-and-set and the commands'
	// idempotency keys keep every effect once. Permanent defaults to supervisor.IsPermanent,
	// [ErrInvalidManager], [ErrCorrupt], [ErrDecode] and [ErrNoHandler].
	Supervision supervisor.Policy
}

// LeasePrefix starts the name of the lease a [Runner] holds: LeasePrefix + the manager's name.
const LeasePrefix = "process/"

// Runner runs one [Manager]: it follows the log, hands each event to its instance, sends the
// commands React returns and fires deadlines when they are due. Make one with [NewRunner] and
// call [Runner.Run]. Its methods are safe for concurrent use.
type Runner[S any] struct {
	store annals.ReadAppendSubscriber
	m     manager[S]
	send  Sender
	opts  RunnerOptions
	clock Clock
	sup   *supervisor.Supervisor

	// Owned by Run's goroutine.
	ledger  *ledger // the fold of the journals the last checkpoint holds, or will
	bounded bool    // the checkpoint stream has maxCount 1

	mu struct {
		sync.Mutex
		instances map[string]*instance[S] // a cache: what is missing is loaded from the journal
		pending   map[pendingKey]Deadline
		position  uint64        // the last event of the log handled
		progress  chan struct{} // closed when position moves
		inputs    int           // events and deadlines handled since the last checkpoint
		running   bool
		working   bool // Run's work is under way (under the lease, if any)
	}
}

type instance[S any] struct {
	id       string
	state    S
	revision annals.ExpectedRevision // of the journal: NoStream or Exact
	handled  map[annals.UUID]bool    // the ids of the journal's events
	pending  map[string]Deadline     // by name
}

// NewRunner returns a runner of m that sends commands with send (see [HandlerSender] for
// commands to deciders). It returns an error matching [ErrInvalidManager] for an invalid
// manager.
func NewRunner[S, E any](store annals.ReadAppendSubscriber, m Manager[S, E], send Sender, opts *RunnerOptions) (*Runner[S], error) {
	if err := m.validate(); err != nil {
		return nil, err
	}
	if send == nil {
		return nil, fmt.Errorf("%w: %q: no Sender", ErrInvalidManager, m.Name)
	}
	r := &Runner[S]{store: store, m: m.erase(), send: send}
	if opts != nil {
		r.opts = *opts
	}
	if r.opts.IsRefusal == nil {
		r.opts.IsRefusal = defaultIsRefusal
	}
	switch {
	case r.opts.Clock != nil && r.opts.Now != nil:
		return nil, fmt.Errorf("%w: %q: RunnerOptions sets both Clock and Now", ErrInvalidManager, m.Name)
	case r.opts.Clock != nil:
		r.clock = r.opts.Clock
	case r.opts.Now != nil:
		r.clock = systemClock{r.opts.Now}
	default:
		r.clock = systemClock{time.Now}
	}
	if r.opts.CheckpointEvery == 0 {
		r.opts.CheckpointEvery = defaultCheckpointEvery
	}
	policy := r.opts.Supervision.Resolve(store)
	if policy.Permanent == nil {
		policy.Permanent = func(err error) bool {
			return supervisor.IsPermanent(err) || errors.Is(err, ErrInvalidManager) || errors.Is(err, ErrCorrupt) ||
				errors.Is(err, ErrDecode) || errors.Is(err, ErrNoHandler)
		}
	}
	sup, err := supervisor.New(supervisor.Options{Name: LeasePrefix + m.Name, Policy: policy})
	if err != nil {
		return nil, fmt.Errorf("%w: %q: %w", ErrInvalidManager, m.Name, err)
	}
	r.sup = sup
	return r, nil
}

func defaultIsRefusal(err error) bool {
	return errors.Is(err, ErrRefused) || errors.Is(err, decider.ErrRefused)
}

// Run follows the log from where the manager left off (its checkpoint and the journal events
// written after it say where), handling each event and each deadline as it comes due, and
// checkpointing every [RunnerOptions].CheckpointEvery inputs, until ctx is done (it then
// returns ctx's error).
//
// Under a lease (see [RunnerOptions].Supervision) it first stands by while another runner of
// the manager holds the lease, and stops at once when it loses it (its context is cancelled:
// no command is sent nor journal written after that), then stands by again. When an input
// cannot be handled (a command not handled, the store failing) it starts again from the
// journals after a backoff that doubles up to a cap, and resumes with that input; a permanent
// error (a corrupt journal, an event that does not decode, a command with no handler, a closed
// store) makes it return that error. Status().Supervisor says which. Only one Run may be in
// progress at a time: a second returns an error matching [ErrBusy].
func (r *Runner[S]) Run(ctx context.Context) error {
	r.mu.Lock()
	if r.mu.running {
		r.mu.Unlock()
		return fmt.Errorf("%w: %q", ErrBusy, r.m.Name)
	}
	r.mu.running = true
	r.mu.Unlock()
	defer func() {
		r.mu.Lock()
		r.mu.running = false
		r.mu.Unlock()
	}()
	return r.sup.Run(ctx, r.work)
}

// work is one spell of Run's work, under the lease when there is one: it starts from what the
// journals and the checkpoint hold (another runner may have moved them on).
func (r *Runner[S]) work(ctx context.Context) error {
	r.mu.Lock()
	r.mu.instances = make(map[string]*instance[S])
	r.mu.working = true
	r.mu.Unlock()
	defer func() {
		r.mu.Lock()
		r.mu.working = false
		// Wake the calls of WaitFor that wait on this runner's progress: they read the
		// manager's checkpoint from now on.
		if r.mu.progress != nil {
			close(r.mu.progress)
			r.mu.progress = nil
		}
		r.mu.Unlock()
	}()
	if err := r.recover(ctx); err != nil {
		return err
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	events := make(chan annals.RecordedEvent)
	failed := make(chan error, 1)
	var wg sync.WaitGroup
	defer wg.Wait()
	defer cancel() // runs before wg.Wait: stop the reader, then wait for it
	r.mu.Lock()
	from := r.mu.position + 1
	r.mu.Unlock()
	if r.opts.From != 0 {
		from = r.opts.From
		// Skipping ahead: what lies before From counts as handled (deadlines wait for no
		// event there).
		r.advance(from - 1)
	}
	wg.Go(func() {
		for ev, err := range r.store.SubscribeAll(ctx, &annals.SubscribeOptions{From: from, Filter: r.m.Filter}) {
			if err != nil {
				failed <- err
				return
			}
			select {
			case events <- ev:
			case <-ctx.Done():
				return
			}
		}
	})

	alarm := alarm{clock: r.clock}
	for {
		held, err := r.fireDue(ctx)
		if err != nil {
			return err
		}
		if err := r.maybeCheckpoint(ctx); err != nil {
			return err
		}
		// A deadline held back waits for the events recorded before it: take those first.
		var wake <-chan time.Time
		if !held {
			wake = alarm.until(r.nextDeadline())
		}
		// Idle with inputs not checkpointed: checkpoint them, so that the runners standing by
		// see how far this one is (see WaitFor).
		var idle <-chan time.Time
		if r.opts.CheckpointEvery >= 0 && r.uncheckpointed() {
			idle = time.After(idleCheckpoint)
		}
		select {
		case ev := <-events:
			if err := r.handleEvent(ctx, ev); err != nil {
				return err
			}
		case <-idle:
			if err := r.checkpoint(ctx); err != nil {
				return err
			}
		case <-wake:
			alarm.rang()
		case err := <-failed:
			return err
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// advance records that the runner has handled the log up to position.
func (r *Runner[S]) advance(position uint64) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if position > r.mu.position {
		r.setPositionLocked(position)
	}
}

// setPositionLocked sets the position and wakes the calls of WaitFor.
func (r *Runner[S]) setPositionLocked(position uint64) {
	r.mu.position = position
	if r.mu.progress != nil {
		close(r.mu.progress)
		r.mu.progress = nil
	}
}

// WaitFor returns once the manager has handled every event up to position that it follows
// (at once when none lies beyond what it has handled), or with ctx's error. Use it to wait for
// the commands an event makes. On the runner that works it waits on its progress; on one that
// stands by (another replica holds the lease) or does not run, it reads the manager's
// checkpoint until it shows the position, which the working runner writes every
// [RunnerOptions].CheckpointEvery inputs and whenever it has been idle for a moment (so with
// checkpoints turned off, WaitFor waits there until this runner works).
func (r *Runner[S]) WaitFor(ctx context.Context, position uint64) error {
	poll := time.Millisecond
	for {
		r.mu.Lock()
		at, working := r.mu.position, r.mu.working
		if r.mu.progress == nil {
			r.mu.progress = make(chan struct{})
		}
		progress := r.mu.progress
		r.mu.Unlock()
		if !working {
			l, err := r.readCheckpoint(ctx)
			if err != nil {
				return err
			}
			at = max(at, l.position)
		}
		if at >= position {
			return nil
		}
		pending, err := r.follows(ctx, at+1, position+1)
		if err != nil || !pending {
			return err
		}
		var tick <-chan time.Time
		if !working {
			tick = time.After(poll)
			poll = min(2*poll, maxPoll)
		}
		select {
		case <-progress:
		case <-tick:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// idleCheckpoint is how long the working runner waits with no input before it checkpoints
// what it has handled; maxPoll the longest pause of WaitFor between two reads of the
// checkpoint on a runner that does not work.
const (
	idleCheckpoint = 50 * time.Millisecond
	maxPoll        = 20 * time.Millisecond
)

// uncheckpointed reports inputs handled since the last checkpoint.
func (r *Runner[S]) uncheckpointed() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.mu.inputs > 0
}

// follows reports whether the log holds an event the manager follows with a position from
// from to until-1.
func (r *Runner[S]) follows(ctx context.Context, from, until uint64) (bool, error) {
	ev, ok, err := r.nextFollowed(ctx, from)
	return ok && ev.Position < until, err
}

func (r *Runner[S]) handleEvent(ctx context.Context, ev annals.RecordedEvent) error {
	if r.followed(ev) {
		id, in, ok, err := r.m.event(ev)
		if err != nil {
			return err
		}
		if ok {
			sctx, span := traceprop.StartEvent(ctx, "process", r.m.Name, &ev)
			err := r.handle(sctx, id, in, "event:"+ev.ID.String())
			traceprop.End(span, err)
			if err != nil {
				return err
			}
		}
	}
	r.mu.Lock()
	r.mu.inputs++
	r.mu.Unlock()
	r.advance(ev.Position)
	return nil
}

// handle handles one input of instance id and the refusals it leads to, and journals them in
// one append. key identifies the input among all the instance has handled.
//
// The append is compare-and-set on the journal's revision. When another runner of the manager
// journaled for the instance meanwhile, handle reads the journal again and handles the input
// on what it holds: it skips the input when the journal has it already, and otherwise decides
// again from the state the journal now gives (the commands it sends again carry the same
// idempotency keys). That is not a failure: it tries again, up to [maxJournalConflicts]
// times in a row for one input (each conflict is another runner's progress; more means
// something else refuses the appends, and handle returns the conflict).
func (r *Runner[S]) handle(ctx context.Context, id string, root input, key string) error {
	for i := 1; ; i++ {
		err := r.handleOnce(ctx, id, root, key)
		if _, ok := errors.AsType[*journalMovedError](err); !ok || i == maxJournalConflicts {
			return err
		}
		if err := ctx.Err(); err != nil {
			return err
		}
	}
}

// maxJournalConflicts bounds how many times in a row one input finds its journal moved.
const maxJournalConflicts = 64

// journalMovedError is the refusal of a journal append whose expected revision was overtaken
// by another runner's append.
type journalMovedError struct{ err error }

func (e *journalMovedError) Error() string { return e.err.Error() }
func (e *journalMovedError) Unwrap() error { return e.err }

// handleOnce is one attempt of [Runner.handle]: it returns a [*journalMovedError] when the
// journal moved under it (the instance is then dropped from the cache).
func (r *Runner[S]) handleOnce(ctx context.Context, id string, root input, key string) error {
	inst, err := r.instance(ctx, id)
	if err != nil {
		return err
	}
	journal := r.m.Journal(id)
	if d := root.Deadline; d != nil {
		if p, ok := inst.pending[d.Name]; !ok || !p.At.Equal(d.At) {
			// Not pending for the instance (cancelled, moved, or fired already): forget it.
			r.mu.Lock()
			if p, ok := r.mu.pending[pendingKey{id, d.Name}]; ok && p.At.Equal(d.At) {
				delete(r.mu.pending, pendingKey{id, d.Name})
			}
			r.mu.Unlock()
			return nil
		}
	}
	if inst.handled[derivedID(journal, key)] {
		return nil // handled already: an event delivered again
	}
	q0 := queued{in: root, key: key, base: inputTime(root)}
	if e := root.Event; e != nil {
		md := codec.CausedBy(*e)
		q0.correlation, q0.causation = md.CorrelationID, md.CausationID
	} else if d := root.Deadline; d != nil {
		q0.correlation, q0.causation = d.CorrelationID, d.CausationID
	}
	queue := []queued{q0}
	state := inst.state
	pending := maps.Clone(inst.pending)
	var events []annals.Event
	for len(queue) > 0 {
		if len(events) == maxChain {
			return fmt.Errorf("process %q, instance %q: input %s led to more than %d refusals in a row", r.m.Name, id, key, maxChain)
		}
		q := queue[0]
		queue = queue[1:]
		st := step{Input: q.in}
		if d := q.in.Deadline; d != nil {
			delete(pending, d.Name)
		}
		for i, a := range r.m.react(id, state, q.in) {
			switch a := a.(type) {
			case Send:
				cmd := r.command(journal, q, i, a)
				err := r.send(ctx, cmd)
				if err == nil {
					continue
				}
				if !r.opts.IsRefusal(err) {
					return fmt.Errorf("process %q, instance %q: send %T to %s: %w", r.m.Name, id, a.Command, a.Stream, err)
				}
				refusal, err := newRefusal(a, err)
				if err != nil {
					return fmt.Errorf("process %q, instance %q: %w", r.m.Name, id, err)
				}
				queue = append(queue, queued{in: input{Refusal: refusal}, key: q.key + "/refusal:" + strconv.Itoa(i), base: q.base, correlation: q.correlation, causation: q.causation})
			case SetDeadline:
				d := Deadline{Name: a.Name, At: q.base.Add(a.After).UTC(), CorrelationID: q.correlation, CausationID: q.causation}
				st.Deadlines = append(st.Deadlines, deadlineChange{Set: &d})
				pending[a.Name] = d
			case CancelDeadline:
				st.Deadlines = append(st.Deadlines, deadlineChange{Cancel: a.Name})
				delete(pending, a.Name)
			default:
				return fmt.Errorf("%w: %q: React returned a %T, not an Action of this package", ErrInvalidManager, r.m.Name, a)
			}
		}
		kept, err := journaled(q.in)
		if err != nil {
			return fmt.Errorf("process %q, instance %q: %w", r.m.Name, id, err)
		}
		state = r.m.evolve(state, kept)
		data, err := encodeStep(st)
		if err != nil {
			return fmt.Errorf("process %q, instance %q: encode the journal step: %w", r.m.Name, id, err)
		}
		events = append(events, annals.Event{ID: derivedID(journal, q.key), Type: StepEventType, Data: data})
	}
	res, err := r.store.Append(ctx, journal, inst.revision, events...)
	if err != nil {
		r.forget(id) // reload from the journal next time
		err = fmt.Errorf("process %q, instance %q: journal: %w", r.m.Name, id, err)
		if errors.Is(err, annals.ErrWrongExpectedVersion) {
			return &journalMovedError{err}
		}
		return err
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	// The instance's deadlines are now pending: drop those it had, add those it has.
	for name := range inst.pending {
		delete(r.mu.pending, pendingKey{id, name})
	}
	for name, d := range pending {
		r.mu.pending[pendingKey{id, name}] = d
	}
	inst.state, inst.revision, inst.pending = state, annals.Exact(res.Revision), pending
	for _, e := range events {
		inst.handled[e.ID] = true
	}
	return nil
}

// queued is an input waiting in [Runner.handle].
type queued struct {
	in   input
	key  string    // identifies the input among those of its instance
	base time.Time // what the deadlines it sets count from
	// correlation and causation come from the event that led to the input.
	correlation, causation string
}

// command returns the i-th command that q makes the instance send.
func (r *Runner[S]) command(journal string, q queued, i int, a Send) Command {
	return Command{
		Stream:         a.Stream,
		Command:        a.Command,
		IdempotencyKey: derivedID(journal, q.key, "send:"+strconv.Itoa(i)).String(),
		CorrelationID:  q.correlation,
		CausationID:    q.causation,
	}
}

func newRefusal(a Send, cause error) (*Refusal, error) {
	b, err := json.Marshal(a.Command)
	if err != nil {
		return nil, fmt.Errorf("encode the refused command %T: %w", a.Command, err)
	}
	return &Refusal{Stream: a.Stream, Type: fmt.Sprintf("%T", a.Command), Command: b, Error: cause.Error()}, nil
}

// inputTime is the time the deadlines an input sets count from.
func inputTime(in input) time.Time {
	switch {
	case in.Event != nil:
		return in.Event.Time
	case in.Deadline != nil:
		return in.Deadline.At
	}
	return time.Time{}
}

// instance returns the cached instance id, or loads it from its journal.
func (r *Runner[S]) instance(ctx context.Context, id string) (*instance[S], error) {
	r.mu.Lock()
	inst := r.mu.instances[id]
	r.mu.Unlock()
	if inst != nil {
		return inst, nil
	}
	inst = &instance[S]{id: id, state: r.m.Initial(), revision: annals.NoStream, handled: map[annals.UUID]bool{}, pending: map[string]Deadline{}}
	for ev, err := range r.store.ReadStream(ctx, r.m.Journal(id), nil) {
		if errors.Is(err, annals.ErrStreamNotFound) {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("process %q: load instance %q: %w", r.m.Name, id, err)
		}
		st, err := decodeStep(ev)
		if err != nil {
			return nil, err
		}
		in, err := r.m.decoded(st.Input)
		if err != nil {
			return nil, fmt.Errorf("load instance %q: %w", id, err)
		}
		inst.state = r.m.evolve(inst.state, in)
		inst.revision = annals.Exact(ev.Revision)
		inst.handled[ev.ID] = true
		applyDeadlines(st, func(name string, d Deadline, set bool) {
			if set {
				inst.pending[name] = d
			} else {
				delete(inst.pending, name)
			}
		})
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.mu.pending != nil {
		// Deadlines another runner of the manager set for the instance: this runner fires
		// them too (a deadline no longer pending is dropped when it comes due).
		for name, d := range inst.pending {
			r.mu.pending[pendingKey{id, name}] = d
		}
	}
	if len(r.mu.instances) >= maxCached {
		clear(r.mu.instances) // a cache: dropped instances are loaded again when needed
	}
	r.mu.instances[id] = inst
	return inst, nil
}

// maxCached bounds the instances a runner keeps in memory.
const maxCached = 10_000

func (r *Runner[S]) forget(id string) {
	r.mu.Lock()
	delete(r.mu.instances, id)
	r.mu.Unlock()
}

// State returns the state of instance id as its journal records it.
func (r *Runner[S]) State(ctx context.Context, id string) (S, error) {
	inst, err := r.load(ctx, id)
	if err != nil {
		var zero S
		return zero, err
	}
	return inst.state, nil
}

// load reads instance id from its journal, bypassing the cache.
func (r *Runner[S]) load(ctx context.Context, id string) (*instance[S], error) {
	fresh := &Runner[S]{store: r.store, m: r.m}
	fresh.mu.instances = map[string]*instance[S]{}
	return fresh.instance(ctx, id)
}

// Status is what a runner has done so far.
type Status struct {
	// Position is the last event of the log the runner has handled.
	Position uint64
	// Pending are the deadlines waiting to come due, earliest first.
	Pending []PendingDeadline
	// Supervisor is the state of Run's supervision: running, standing by behind another
	// runner's lease, retrying after an error (which, when), failed, stopped.
	Supervisor supervisor.Status
}

// PendingDeadline is a deadline of an instance that has not come due yet.
type PendingDeadline struct {
	Instance string
	Deadline
}

// Status returns what the runner has done so far (as of the last Run).
func (r *Runner[S]) Status() Status {
	r.mu.Lock()
	defer r.mu.Unlock()
	st := Status{Position: r.mu.position, Supervisor: r.sup.Status()}
	for k, d := range r.mu.pending {
		st.Pending = append(st.Pending, PendingDeadline{Instance: k.instance, Deadline: d})
	}
	slices.SortFunc(st.Pending, func(a, b PendingDeadline) int { return a.At.Compare(b.At) })
	return st
}

// Journal yields the inputs instance id has handled, in order, each event decoded again by
// the manager's Decode (an Input[any] holds the E it returned). It yields one error and
// stops on failure: the store's, [ErrCorrupt] or [ErrDecode].
func (r *Runner[S]) Journal(ctx context.Context, id string) iter.Seq2[Input[any], error] {
	return func(yield func(Input[any], error) bool) {
		for ev, err := range r.store.ReadStream(ctx, r.m.Journal(id), nil) {
			if err != nil {
				yield(Input[any]{}, err)
				return
			}
			st, err := decodeStep(ev)
			if err == nil {
				st.Input, err = r.m.decoded(st.Input)
			}
			if err != nil {
				yield(Input[any]{}, err)
				return
			}
			in := st.Input
			if !yield(Input[any]{Event: in.decoded, Recorded: in.Event, Deadline: in.Deadline, Refusal: in.Refusal}, nil) {
				return
			}
		}
	}
}
