package annals

import (
	"errors"
	"fmt"
)

// The errors a [Store] returns. Check them with errors.Is; the detail is in the wrapping error.
var (
	// ErrWrongExpectedVersion: the stream is not in the state the append expected. The error is
	// a [*WrongExpectedVersionError] that carries the actual revision.
	ErrWrongExpectedVersion = errors.New("annals: wrong expected version")
	// ErrStreamNotFound: the stream does not exist or was soft-deleted.
	ErrStreamNotFound = errors.New("annals: stream not found")
	// ErrStreamDeleted: the stream was tombstoned and can never be read or written again.
	ErrStreamDeleted = errors.New("annals: stream deleted")
	// ErrInvalidArgument: bad input from the caller; nothing was written.
	ErrInvalidArgument = errors.New("annals: invalid argument")
	// ErrTooLarge: an event or an append is over the size limit; nothing was written. It also
	// matches [ErrInvalidArgument].
	ErrTooLarge = fmt.Errorf("%w: too large", ErrInvalidArgument)
	// ErrClosed: the store was closed, or stopped after a storage failure it cannot recover
	// from while running (reopen it to recover).
	ErrClosed = errors.New("annals: store closed")
	// ErrCorrupt: stored data failed its checksum or does not decode. The error says where.
	ErrCorrupt = errors.New("annals: data corrupt")
)

// WrongExpectedVersionError is the detail of [ErrWrongExpectedVersion].
type WrongExpectedVersionError struct {
	Stream   string
	Expected ExpectedRevision
	// Actual is the stream's state when the append was refused: Exact(last revision), or
	// NoStream when it does not exist.
	Actual ExpectedRevision
}

func (e *WrongExpectedVersionError) Error() string {
	return fmt.Sprintf("annals: wrong expected version for stream %q: expected %s, actual %s", e.Stream, e.Expected, e.Actual)
}

// Is makes errors.Is(err, ErrWrongExpectedVersion) true.
func (e *WrongExpectedVersionError) Is(target error) bool { return target == ErrWrongExpectedVersion }
