package annals

import (
	"fmt"
	"math"
	"strconv"
)

// ExpectedRevision is the state a stream must be in for an append (or a delete) to go ahead.
// It is one of [Any], [NoStream], [StreamExists] or [Exact](revision). Other values are invalid
// and rejected with [ErrInvalidArgument].
//
// Each expectation also says where a repeated append is recognised (the idempotency check,
// which compares event IDs in order):
//
//   - Exact(r): the events at revisions r+1, r+2, … carry the IDs being appended.
//   - NoStream: the stream's first events carry them (for a soft-deleted and re-created stream,
//     the first events since its re-creation, whose revisions continue the old ones).
//   - Any and StreamExists: the stream's last events carry them, so a retry is recognised only
//     while nothing else was appended to the stream since. Use exact revisions where retries
//     must be safe under contention.
//
// Only the stream's current incarnation counts: events hidden by a soft delete never match.
// For Exact and NoStream, when the expectation fails and some but not all of the IDs match at
// that place, the append fails with [ErrWrongExpectedVersion]. For Any and StreamExists an
// append that is not a repeat of the stream's last events (all IDs, in order) is written.
type ExpectedRevision int64

const (
	// Any accepts the stream in any state (but not tombstoned).
	Any ExpectedRevision = -1
	// NoStream requires that the stream does not exist (never written, or soft-deleted).
	NoStream ExpectedRevision = -2
	// StreamExists requires that the stream exists.
	StreamExists ExpectedRevision = -3
)

// Exact requires that the stream's last event has revision r. Revisions above
// math.MaxInt64 give an invalid expectation.
func Exact(r uint64) ExpectedRevision {
	if r > math.MaxInt64 {
		return ExpectedRevision(math.MinInt64)
	}
	return ExpectedRevision(r)
}

// Revision returns the exact revision and true, or false when e is not an exact revision.
func (e ExpectedRevision) Revision() (uint64, bool) {
	if e < 0 {
		return 0, false
	}
	return uint64(e), true
}

// Validate returns nil for a valid expectation and an error matching [ErrInvalidArgument]
// otherwise.
func (e ExpectedRevision) Validate() error {
	if e >= StreamExists {
		return nil
	}
	return fmt.Errorf("%w: expected revision %d is not a revision (>= 0), Any, NoStream or StreamExists", ErrInvalidArgument, int64(e))
}

// String returns "any", "no-stream", "exists" or the revision number, the forms that
// [ParseExpectedRevision] reads.
func (e ExpectedRevision) String() string {
	switch {
	case e == Any:
		return "any"
	case e == NoStream:
		return "no-stream"
	case e == StreamExists:
		return "exists"
	case e >= 0:
		return strconv.FormatInt(int64(e), 10)
	}
	return fmt.Sprintf("invalid(%d)", int64(e))
}

// ParseExpectedRevision reads "any", "no-stream", "exists" or a revision number. It returns an
// error matching [ErrInvalidArgument] for anything else.
func ParseExpectedRevision(s string) (ExpectedRevision, error) {
	switch s {
	case "any":
		return Any, nil
	case "no-stream":
		return NoStream, nil
	case "exists":
		return StreamExists, nil
	}
	r, err := strconv.ParseUint(s, 10, 63)
	if err != nil {
		return 0, fmt.Errorf("%w: expected revision %q: want any, no-stream, exists or a revision number", ErrInvalidArgument, s)
	}
	return Exact(r), nil
}
