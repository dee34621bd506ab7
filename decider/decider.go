package decider

import (
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"

	"github.com/annalsdb/annals"
	"github.com/annalsdb/annals/codec"
)

// Decider is an aggregate as three pure functions, generic over its state S, commands C and
// events E (typically an interface that the registered event types implement).
type Decider[S, C, E any] struct {
	// Initial returns the state of a stream with no events.
	Initial func() S
	// Decide returns the events that cmd causes in state, or an error when a domain rule
	// forbids it (nothing is written; the caller gets the error marked as a refusal: it
	// matches both the error and [ErrRefused]). It must not modify state: on a conflict the
	// handler decides again on the same state brought up to date.
	Decide func(state S, cmd C) ([]E, error)
	// Evolve returns the state after ev. It may modify and return state: the handler never uses
	// a state again after passing it to Evolve.
	Evolve func(state S, ev E) S
}

// Errors of this package. Check them with errors.Is.
var (
	// ErrInvalidCommand: [Options].Validate refused the command; the error wraps its error too,
	// and matches [ErrRefused]. Nothing was read or written.
	ErrInvalidCommand = errors.New("decider: invalid command")
	// ErrTooManyConflicts: every attempt of a command met a concurrent append. The error is a
	// [*ConflictError] that also matches [annals.ErrWrongExpectedVersion] (the last conflict).
	ErrTooManyConflicts = errors.New("decider: too many conflicts")
)

// ConflictError is the detail of [ErrTooManyConflicts].
type ConflictError struct {
	Stream string
	// Attempts is how many times the command was decided and appended.
	Attempts int
	// Last is the last conflict, a [*annals.WrongExpectedVersionError].
	Last error
}

func (e *ConflictError) Error() string {
	return fmt.Sprintf("decider: stream %q: %d attempts met concurrent appends, giving up: %v", e.Stream, e.Attempts, e.Last)
}

// Is makes errors.Is(err, ErrTooManyConflicts) true.
func (e *ConflictError) Is(target error) bool { return target == ErrTooManyConflicts }

// Unwrap returns the last conflict, so errors.Is(err, annals.ErrWrongExpectedVersion) holds.
func (e *ConflictError) Unwrap() error { return e.Last }

// Defaults of [Options].
const (
	DefaultMaxRetries        = 10
	DefaultIdempotencyWindow = 128
)

// Options configure a [Handler]. The zero value (and nil) means: no validation,
// [DefaultMaxRetries] retries, no snapshots, no state cache, a window of
// [DefaultIdempotencyWindow] keys, unknown event types are errors, and reports go to
// slog.Default().
type Options[C any] struct {
	// Validate checks a command before anything is read; an error is returned wrapped with
	// [ErrInvalidCommand] and counts as a refusal ([ErrRefused]), so it must come from the
	// command alone, never from a failure elsewhere. It must be safe for concurrent use.
	Validate func(cmd C) error
	// MaxRetries is how many times a command is decided again after a conflict (a concurrent
	// append to the same stream) before [Handler.Handle] gives up with [ErrTooManyConflicts];
	// 0 means [DefaultMaxRetries], a negative value means no retry.
	MaxRetries int
	// Snapshots, when not nil, stores and loads snapshots of states (see [SnapshotPolicy]).
	Snapshots *SnapshotPolicy
	// CacheSize keeps the states of that many recently handled streams in memory (least
	// recently used out first), so that a command on a hot stream appends without reading
	// first; 0 means no cache. A cached state is never trusted: the append's exact expected
	// revision catches a stale one, which is then brought up to date and the command decided
	// again; that first conflict of a cached state does not count against MaxRetries.
	CacheSize int
	// IdempotencyWindow is how many idempotency keys per stream are remembered (see
	// [CommandOptions].IdempotencyKey); 0 means [DefaultIdempotencyWindow].
	IdempotencyWindow int
	// SkipUnknownTypes folds streams past events whose type the registry does not know (or
	// that are not an E), reporting each to OnError, instead of failing with
	// [codec.ErrUnknownType].
	SkipUnknownTypes bool
	// CheckSnapshots makes the handler check each snapshot before it saves it: the state is
	// decoded back and compared with the state it was encoded from ([CheckSnapshot]). A state
	// that does not survive (an unexported field, a field tagged json:"-") is not saved, and
	// the command that took the snapshot returns its Result (the command was written) with a
	// [*SnapshotMismatchError] naming the state's type and the first field that differs. It
	// costs a decode per snapshot and is meant for tests and debugging: it is on in test
	// binaries (testing.Testing()) whatever this field says, and the environment variable
	// [CheckSnapshotsEnv] turns it on ("1") or off ("0") for every handler of the process.
	CheckSnapshots bool
	// OnError receives what goes wrong without failing a call: a snapshot that could not be
	// saved or loaded, a skipped event. It must be safe for concurrent use. nil logs a warning
	// with slog.Default().
	OnError func(err error)
}

// CommandOptions carry what is about a command rather than of it. nil means none.
type CommandOptions struct {
	// IdempotencyKey, when not empty, makes the command idempotent: while the key is among the
	// last [Options].IdempotencyWindow keys used on the stream, handling a command with it
	// again writes nothing and returns the first result with Duplicate set. The key is
	// recorded in the metadata of the events the command writes (and in snapshots), so it
	// holds across handlers, processes and restarts. A command that decides no events records
	// nothing.
	IdempotencyKey string
	// CorrelationID goes into every event's metadata; empty means a fresh UUID.
	CorrelationID string
	// CausationID goes into every event's metadata (empty: left out).
	CausationID string
	// Extra fields go into every event's metadata (see [codec.Metadata]).
	Extra map[string]json.RawMessage
}

// CausedBy returns the options for a command sent in reaction to ev: ev's correlation id and
// ev's id as causation (see [codec.CausedBy]). Set IdempotencyKey (for example to ev's id) to
// make reacting to the same event twice write nothing.
func CausedBy(ev annals.RecordedEvent) *CommandOptions {
	md := codec.CausedBy(ev)
	return &CommandOptions{CorrelationID: md.CorrelationID, CausationID: md.CausationID}
}

// Result is what [Handler.Handle] returns.
type Result[E any] struct {
	Stream string
	// Revision is the stream's last revision after the command: that of its last event written,
	// or, when nothing was written, of the last event the decision was made on. With Position it
	// is 0 for a stream that does not exist.
	Revision uint64
	// Position is the global position of that event: wait for it to read your own writes.
	Position uint64
	// Events are the events the command decided (for a duplicate, those the first handling
	// wrote, as far as the stream still returns them).
	Events []E
	// Written is true when this call appended Events. It is false for a duplicate and when the
	// command decided no events (then nothing was appended at all).
	Written bool
	// Duplicate is true when the command's idempotency key had already been handled: Revision,
	// Position and Events are those of the first handling.
	Duplicate bool
}

// State is a stream's state as [Handler.Load] folded it.
type State[S any] struct {
	Value S
	// Revision and Position are those of the last event folded in (0 when none).
	Revision uint64
	Position uint64
	// Exists is false when no event was folded in (Value is then Initial()).
	Exists bool
}

// Step is one event of [Handler.History] with the state after it.
type Step[S, E any] struct {
	Event    annals.RecordedEvent
	Decoded  E
	Metadata codec.Metadata
	// State is what Evolve returned for this event. If Evolve modifies its argument, later
	// steps change it too: copy what you keep.
	State S
}

func defaultOnError(err error) { slog.Default().Warn("decider", "err", err) }
