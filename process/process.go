// Package process runs process managers (sagas): long-running processes that react to events
// by sending commands, remember what they have seen, compensate when a command is refused, and
// act when a deadline passes with nothing happening (a stock reservation that expires).
//
// # The model
//
// A [Manager] is a set of pure functions over a state S, one state per process instance:
//
//   - Decode decodes an event of the log once, into the manager's event type E; every other
//     function gets the decoded event.
//   - Instance says which instance an event belongs to (an order id, say), or that the
//     manager ignores it.
//   - React decides, from the instance's id, its state and one [Input], what to do: commands
//     to send, deadlines to set or cancel. Evolve folds the input into the state.
//
// An input is an event from the log, a deadline that came due, or the refusal of a command
// the instance sent (so that React can compensate).
//
// # Durability and exactly-once effects
//
// Each instance keeps its own journal, the stream "<Name>-<instance>" (category Name): every
// input it handled and every deadline it set, cancelled or saw fire. Its state is the fold of
// that journal, so it is event-sourced and survives restarts. A [Runner] handles one input at
// a time:
//
//  1. it loads the instance's journal and skips the input if the journal already holds it
//     (deduplication: an event delivered twice is handled once);
//  2. it asks React what to do and sends the commands, each with an idempotency key derived
//     from the input and the command's place among the input's commands;
//  3. it appends the input, the deadlines and the refusals to the journal in one atomic
//     append with the journal's expected revision.
//
// A crash between 2 and 3 makes the input come again after a restart; React decides the same
// commands from the same state, and their idempotency keys make the command handlers answer
// the repeats with their first results (package decider does, while the key is among the
// target stream's last [decider.Options].IdempotencyWindow keys, 128 by default), so every
// command takes effect once.
//
// # What a journal keeps
//
// A journal step keeps the input and the deadlines it set and cancelled. Of an event it keeps
// what the runner needs to resume and deduplicate and what Evolve needs to fold it: the id,
// stream, revision, position, type, content type, recorded time and data (as JSON when the
// data is JSON as encoding/json writes it, so that it reads back byte for byte, and in
// base64 otherwise), and of the metadata only the schema version (the codec reads it to
// upcast), the correlation id and the causation id. The rest of the metadata (the idempotency
// key of the command that wrote the event, application fields) is not kept. Evolve gets the
// event as the journal keeps it, live as well as on replay, so that both give the same state;
// React gets the event as read (it runs only live). Journals written in the earlier format,
// whose steps hold the whole event under "input", still load (Evolve gets those steps'
// events whole, as it did when they were written).
//
// # Tracing
//
// With an OpenTelemetry TracerProvider installed, each event an instance takes is handled in
// a consumer span "process <Name> <event type>" whose parent is the trace context the event
// records, and each deadline in a span "deadline <Name> <deadline>"; the [Sender] gets the
// span's context, so the commands sent (and the events they write) continue the trace. See
// docs/tracing.md.
//
// # Checkpoints
//
// To start, a runner needs the last event of the log its manager handled and the deadlines
// pending. Those are the fold of all the manager's journals; so that a restart does not read
// them all, every [RunnerOptions].CheckpointEvery inputs the runner appends a checkpoint of
// that fold to the stream [CheckpointStreamPrefix]+Name (bounded with the metadata maxCount 1
// when the store keeps metadata): the position of the last journal event folded in, the last
// event handled, and the pending deadlines. On start, a runner reads the latest checkpoint
// and then only the journal events written after it (a read of the category Name from the
// checkpoint's position on), so starting costs about CheckpointEvery journal events per
// runner, whatever the journals' length. A checkpoint is appended compare-and-set on its
// stream and never goes back (a runner that finds another's checkpoint as far or further
// takes it); it may lag the journals but never leads them, since it is a fold of journal
// events already written. It holds no more than the journals do: exactly-once still rests on
// the journals (an input is skipped because its instance's journal holds it). A checkpoint
// larger than 512 KiB (some thousands of pending deadlines) is not written; restarts then
// read from the last one that was.
//
// Deadlines are durable: they are journal events, and the checkpoint and the journal events
// after it give the pending ones on start. The runner fires each once it is due by its
// [RunnerOptions].Clock (the system clock by default; a test gives a fake one, which the
// runner also waits on), as an input recorded in the journal like any other. A deadline's
// time is derived from the input that set it (the event's recorded time plus a delay), never
// from the clock at replay, and it comes due only after every followed event recorded at or
// before that time, so that a runner restarted late decides as one that never stopped: a
// payment recorded before the deadline counts.
//
// Refusals: a command refused by the domain comes back to React as a [Refusal] input. A
// refusal is an error that matches [ErrRefused] (a [Sender] marks one with [Refused]) or
// [decider.ErrRefused] (every refusal of a [decider.Handler], Decide's and Validate's
// errors, so [HandlerSender] needs no list of the domain's errors); the runner's
// [RunnerOptions].IsRefusal may say otherwise. Any other error stops the runner, which
// handles the input again when it runs again.
//
// # Several runners of one manager
//
// Each replica of a service may run the manager. The journal is the compare-and-set: an
// append names the journal revision it continues from, so an input is journaled once and a
// journal never goes back. A runner whose append finds the journal moved (another runner
// journaled for the instance first) reads the journal again and goes on from what it holds:
// it skips an input already there, and decides again from the journal's state otherwise; the
// conflict is not an error of Run. Both runners may send the commands of one input, with the
// same idempotency keys, so the effect is once as long as the command handlers answer a
// repeated key with its first result (package decider does). Under a lease (see
// [RunnerOptions].Supervision) one runner works while the others stand by, so this happens
// only around a takeover; without a lease keeper every runner does the work.
package process

import (
	"context"
	"crypto/sha1"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/annalsdb/annals"
	"github.com/annalsdb/annals/codec"
)

// Manager describes a process manager over the state S of an instance and the events E it
// follows (typically an interface that the event types implement, or any). Every function
// must be pure: the same state and input give the same result, whenever and however often it
// is called.
//
// Each event is decoded once, by Decode, and Instance, React and Evolve all get the decoded
// value; so do the events an instance's journal holds when the instance is loaded again.
type Manager[S, E any] struct {
	// Name names the manager. Its instances' journals are the streams "<Name>-<instance>",
	// and Name must not contain "-" (it is their category) or start with "$".
	Name string
	// Filter selects the events of the log the manager reacts to; nil means all of them. The
	// manager's own journals are always left out.
	Filter *annals.Filter
	// Decode decodes an event that Filter lets through: the value, and false when the manager
	// ignores the event. An error (an event of the manager's that does not decode) stops
	// [Runner.Run] with an error matching [ErrDecode] that names the event, as a failing
	// store does: it is never skipped. So does an event of an instance's journal that Decode
	// fails on or now ignores, when the instance is loaded. [Decoder] makes one from a codec
	// registry.
	Decode func(ev annals.RecordedEvent) (E, bool, error)
	// Instance returns the instance the event e belongs to (rec is the event as stored), or
	// false when the manager ignores it.
	Instance func(e E, rec annals.RecordedEvent) (string, bool)
	// Initial returns the state of an instance that has handled nothing yet.
	Initial func() S
	// React returns what instance id does about in, given its state before in.
	React func(id string, state S, in Input[E]) []Action
	// Evolve returns the state after in.
	Evolve func(state S, in Input[E]) S
}

// Input is what an instance reacts to: an event of the log (Recorded is set), a deadline that
// came due (Deadline) or the refusal of a command the instance sent (Refusal); exactly one of
// Recorded, Deadline and Refusal is set.
type Input[E any] struct {
	// Event is the event as [Manager].Decode returned it (the zero E unless Recorded is set).
	Event E
	// Recorded is the event as stored: its stream, id, time and metadata.
	Recorded *annals.RecordedEvent
	// Deadline is a deadline the instance set that came due.
	Deadline *Deadline
	// Refusal is a command the instance sent that was refused.
	Refusal *Refusal
}

// Decoder returns a [Manager].Decode that decodes events with reg as E values (see
// [codec.Decode]). It ignores no event: one whose type reg does not know, or that is not an
// E, is an error as much as one that does not decode, so a manager that decodes with it
// names the types it follows in its Filter.
func Decoder[E any](reg *codec.Registry) func(annals.RecordedEvent) (E, bool, error) {
	return func(ev annals.RecordedEvent) (E, bool, error) {
		e, _, err := codec.Decode[E](reg, ev)
		return e, err == nil, err
	}
}

// Deadline is a deadline that came due.
type Deadline struct {
	Name string    `json:"name"`
	At   time.Time `json:"at"`
	// CorrelationID and CausationID come from the event whose input set the deadline; the
	// commands sent when it comes due carry them.
	CorrelationID string `json:"correlationId,omitempty"`
	CausationID   string `json:"causationId,omitempty"`
}

// Refusal says that a command was refused, and why.
type Refusal struct {
	Stream string `json:"stream"`
	// Command is the command as it was sent, encoded as JSON, and Type its Go type's name
	// (for messages; decode Command to act on it).
	Type    string          `json:"type"`
	Command json.RawMessage `json:"command"`
	Error   string          `json:"error"`
}

// Action is something an instance does: a [Send], a [SetDeadline] or a [CancelDeadline].
type Action interface{ isAction() }

// Send sends Command to the stream Stream through the runner's [Sender].
type Send struct {
	Stream  string
	Command any
}

// SetDeadline makes the deadline Name come due After the input that sets it (the event's
// recorded time, or the time of the deadline or refusal being handled). Setting a deadline
// that is pending moves it.
type SetDeadline struct {
	Name  string
	After time.Duration
}

// CancelDeadline cancels the pending deadline Name; cancelling one that is not pending does
// nothing.
type CancelDeadline struct{ Name string }

func (Send) isAction()           {}
func (SetDeadline) isAction()    {}
func (CancelDeadline) isAction() {}

// Command is a command as the runner hands it to a [Sender].
type Command struct {
	Stream  string
	Command any
	// IdempotencyKey is the same each time the same input makes the same command: pass it to
	// the command handler so that a repeat is answered with the first result.
	IdempotencyKey string
	// CorrelationID and CausationID, for the events the command causes: the correlation of
	// the event that led to the command (or that event's id when it has none), and that
	// event's id. For a deadline, that event is the one whose input set the deadline.
	CorrelationID, CausationID string
}

// Sender sends commands to their handlers. It returns an error for a command refused (a
// domain rule, a failed validation: wrap it with [Refused], or return a [decider.Handler]'s
// refusal as it is) or not handled (an unreachable store); the runner's
// [RunnerOptions].IsRefusal tells which. [HandlerSender] is the Sender for commands to
// deciders.
type Sender func(ctx context.Context, cmd Command) error

// Errors of this package.
var (
	// ErrInvalidManager: a Manager with an empty or invalid Name or a nil function.
	ErrInvalidManager = errors.New("process: invalid manager")
	// ErrCorrupt: an instance's journal holds an event that does not decode.
	ErrCorrupt = errors.New("process: journal corrupt")
	// ErrDecode: [Manager].Decode failed on an event the manager follows, or on an event its
	// journal holds (or ignored one there). The error names the event and wraps Decode's.
	ErrDecode = errors.New("process: event does not decode")
	// ErrBusy: [Runner.Run] was called while another Run of the same runner is in progress.
	ErrBusy = errors.New("process: already running")
	// ErrRefused marks a command refused by the domain (see [Refused]).
	ErrRefused = errors.New("process: command refused")
)

// Refused marks err, the error of a command refused by the domain (a rule, a validation), as a
// refusal: the runner hands it to React as a [Refusal] input instead of stopping. The result
// has err's message and matches both [ErrRefused] and err.
func Refused(err error) error {
	if err == nil {
		return nil
	}
	return refusedError{err}
}

type refusedError struct{ err error }

func (e refusedError) Error() string        { return e.err.Error() }
func (e refusedError) Unwrap() error        { return e.err }
func (e refusedError) Is(target error) bool { return target == ErrRefused }

func (m *Manager[S, E]) validate() error {
	switch {
	case m.Name == "" || m.Name[0] == '$':
		return fmt.Errorf("%w: name %q: want a non-empty name not starting with $", ErrInvalidManager, m.Name)
	case strings.Contains(m.Name, "-"):
		return fmt.Errorf("%w: name %q must not contain \"-\" (it is the category of the journals)", ErrInvalidManager, m.Name)
	case m.Decode == nil || m.Instance == nil || m.Initial == nil || m.React == nil || m.Evolve == nil:
		return fmt.Errorf("%w: %q: Decode, Instance, Initial, React and Evolve are all required", ErrInvalidManager, m.Name)
	}
	return m.Filter.Validate()
}

// Journal returns the stream of the manager's instance id.
func (m *Manager[S, E]) Journal(id string) string { return journal(m.Name, id) }

func journal(name, id string) string { return name + "-" + id }

// derivedID returns a UUID (version 5 form) derived from the parts, so that the same input
// always gets the same journal event id and command key.
func derivedID(parts ...string) annals.UUID {
	h := sha1.New()
	for _, p := range parts {
		fmt.Fprintf(h, "%d:%s;", len(p), p)
	}
	var u annals.UUID
	copy(u[:], h.Sum(nil))
	u[6] = u[6]&0x0f | 0x50
	u[8] = u[8]&0x3f | 0x80
	return u
}
