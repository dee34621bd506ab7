package decider

import (
	"errors"
	"fmt"
)

// ErrRefused matches every error by which [Handler.Handle] says that the domain refused the
// command: Decide's errors (a rule) and Validate's ([ErrInvalidCommand]). Those errors say
// nothing about the store, and the same command on the same state is refused again; nothing
// was written. No failure to read or append (an unreachable store, [ErrTooManyConflicts], a
// cancelled context, an event that does not decode) matches it: such a command may succeed
// when tried again.
//
// A caller that reacts to refusals (a process manager compensating) checks
// errors.Is(err, ErrRefused) instead of listing the domain's errors.
var ErrRefused = errors.New("decider: command refused")

// Refuse returns err marked as a refusal of the domain, or nil for nil: the result has err's
// message, unwraps to err (so errors.Is and errors.As see the domain's error) and matches
// [ErrRefused]. [Handler.Handle] marks Decide's and Validate's errors with it; call it where a
// command is decided outside a Handler (a test kit, a hand-written handler) so that its
// refusals look the same.
func Refuse(err error) error {
	if err == nil {
		return nil
	}
	return refusal{err}
}

type refusal struct{ err error }

func (e refusal) Error() string        { return e.err.Error() }
func (e refusal) Unwrap() error        { return e.err }
func (e refusal) Is(target error) bool { return target == ErrRefused }

// Invalid returns Validate's error err as [Handler.Handle] returns it: matching
// [ErrInvalidCommand] and err, marked as a refusal ([Refuse]); nil for nil.
func Invalid(err error) error {
	if err == nil {
		return nil
	}
	return Refuse(fmt.Errorf("%w: %w", ErrInvalidCommand, err))
}
