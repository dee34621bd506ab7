package projection

import (
	"context"
	"errors"
	"fmt"

	"github.com/annalsdb/annals"
)

// Projection turns events into a read model. Tx is the transaction type of the [Store] that
// holds the read model: a handler writes the read model through the Tx it is given, so that
// its changes commit together with the checkpoint.
type Projection[Tx any] struct {
	// Name identifies the projection in its Store (checkpoint, generations); it must not be
	// empty nor contain a NUL byte. Runners of one name on one Store (one per replica of a
	// service) share the read model: their checkpoints are compare-and-set, so each event is
	// applied once (see [Store.Update]).
	Name string
	// Filter selects the events the projection sees; nil sees every event of the log,
	// including system events ($meta- streams).
	Filter *annals.Filter
	// Handle applies one event to the read model. For one generation of the read model it is
	// called one event at a time, in log order. During a [Runner.Rebuild] it is also called
	// for the generation being built, on Rebuild's goroutine, while Run's goroutine calls it
	// for the active one: calls for the two generations run concurrently. The tx tells them
	// apart (each Tx belongs to one generation); whatever Handle shares beyond its tx must be
	// safe for concurrent use. An error stops the projection at that event (see [Runner]); the
	// transaction it ran in is not committed. Handle must not keep tx after it returns.
	Handle func(ctx context.Context, tx Tx, ev annals.RecordedEvent) error
}

// Store holds read models and their checkpoints. A checkpoint is the position of the last
// event a read model reflects (0: none yet).
//
// # Generations
//
// Each projection name has numbered generations, each a read model with its own checkpoint,
// kept apart from the others (a namespace in the Store). One generation is active: the one
// queries read and [Runner.Run] updates. A projection that was never activated is at
// generation 0. [Runner.Rebuild] builds generation active+1 beside the active one while the
// active one keeps serving, then calls Activate, which switches queries to it and drops the
// old one in one step.
//
// Implementations say in their documentation whether Update is atomic (exactly-once effect)
// and what is durable when it returns. The methods must be safe for concurrent use.
type Store[Tx any] interface {
	// Generation returns the active generation of name (0 when none was ever activated).
	Generation(ctx context.Context, name string) (uint64, error)
	// Checkpoint returns the checkpoint of generation gen of name, 0 when it has none.
	Checkpoint(ctx context.Context, name string, gen uint64) (uint64, error)
	// Update runs fn on generation gen of name and moves its checkpoint from from to to, in
	// one transaction: when fn returns an error, neither its changes nor the checkpoint are
	// kept (unless the implementation documents otherwise), and Update returns that error.
	//
	// The checkpoint is compare-and-set: from is the checkpoint the update continues from
	// (the one its events follow). When the stored checkpoint is not from (another runner
	// moved it, or the generation was dropped), Update applies nothing, does not call fn (or
	// discards what it wrote; see the implementation), and returns a
	// [*CheckpointConflictError] matching [ErrCheckpointMoved]; the check and the write are
	// atomic. A to below from is refused with an error matching [ErrInvalid]: a checkpoint
	// never moves backwards, except when Reset or Activate drops the generation. Every
	// implementation applies [CheckUpdate] to decide.
	Update(ctx context.Context, name string, gen uint64, from, to uint64, fn func(Tx) error) error
	// Reset drops the read model and the checkpoint of generation gen of name.
	Reset(ctx context.Context, name string, gen uint64) error
	// Activate makes gen the active generation of name and drops every other generation of
	// name, in one step: a query sees either the old generation or the new one.
	Activate(ctx context.Context, name string, gen uint64) error
}

// Errors of the package. Check them with errors.Is.
var (
	// ErrFailed: the projection stopped at an event its handler failed on; the error is a
	// [*HandlerError] naming the event.
	ErrFailed = errors.New("projection: failed")
	// ErrNotFailed: Retry or Skip was called while the projection was not failed.
	ErrNotFailed = errors.New("projection: not failed")
	// ErrBusy: Run or Rebuild was called while another call of the same was running.
	ErrBusy = errors.New("projection: already running")
	// ErrInvalid: a projection or options that cannot work (empty name, nil handler, …), or
	// an Update whose checkpoint would move backwards.
	ErrInvalid = errors.New("projection: invalid")
	// ErrCheckpointMoved: a [Store.Update] continued from a checkpoint that is no longer the
	// stored one (another runner of the projection committed meanwhile); the error is a
	// [*CheckpointConflictError]. A [Runner] that meets it reads the stored checkpoint again
	// and continues from there.
	ErrCheckpointMoved = errors.New("projection: checkpoint moved")
)

// CheckpointConflictError is the refusal of an Update whose checkpoint moved meanwhile. It
// matches [ErrCheckpointMoved].
type CheckpointConflictError struct {
	Projection string
	Generation uint64
	// Expected is the checkpoint the Update continued from, Actual the stored one.
	Expected, Actual uint64
}

func (e *CheckpointConflictError) Error() string {
	return fmt.Sprintf("projection %q generation %d: checkpoint moved: the update continues from %d, the store holds %d",
		e.Projection, e.Generation, e.Expected, e.Actual)
}

// Is makes errors.Is(err, ErrCheckpointMoved) true.
func (e *CheckpointConflictError) Is(target error) bool { return target == ErrCheckpointMoved }

// CheckUpdate is the rule of [Store.Update], for implementations to call atomically with
// their write (under the lock or in the transaction that sets the checkpoint): stored is the
// checkpoint of generation gen of name as the store holds it, from and to are Update's. It
// returns a [*CheckpointConflictError] when stored is not from, an error matching
// [ErrInvalid] when to is below from, and nil when the update may go ahead.
func CheckUpdate(name string, gen, stored, from, to uint64) error {
	if to < from {
		return fmt.Errorf("%w: projection %q generation %d: checkpoint %d would move back to %d", ErrInvalid, name, gen, from, to)
	}
	if stored != from {
		return &CheckpointConflictError{Projection: name, Generation: gen, Expected: from, Actual: stored}
	}
	return nil
}

// HandlerError is the error of a handler on one event. It matches [ErrFailed].
type HandlerError struct {
	Projection string
	// Event is the event the handler failed on.
	Event annals.RecordedEvent
	Err   error
}

func (e *HandlerError) Error() string {
	return fmt.Sprintf("projection %q: handler failed on event %d (%s %s@%d): %v",
		e.Projection, e.Event.Position, e.Event.Type, e.Event.Stream, e.Event.Revision, e.Err)
}

// Unwrap returns the handler's error.
func (e *HandlerError) Unwrap() error { return e.Err }

// Is makes errors.Is(err, ErrFailed) true.
func (e *HandlerError) Is(target error) bool { return target == ErrFailed }

func validateName(name string) error {
	if name == "" {
		return fmt.Errorf("%w: empty projection name", ErrInvalid)
	}
	for i := 0; i < len(name); i++ {
		if name[i] == 0 {
			return fmt.Errorf("%w: projection name %q holds a NUL byte", ErrInvalid, name)
		}
	}
	return nil
}
