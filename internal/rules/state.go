package rules

import (
	"fmt"

	"github.com/annalsdb/annals"
)

// Stream is the state of a stream that the decisions of an operation depend on.
type Stream struct {
	// Name is the stream id, for errors.
	Name string
	// Next is the revision the next event of the stream gets (0 when it has none).
	Next uint64
	// Base is the first revision of the current incarnation: the revision after the last soft
	// delete (0 when it was never deleted). The stream exists when Next > Base.
	Base uint64
	// Tombstoned reports a tombstone.
	Tombstoned bool
	// LastID is the ID of the stream's last event, or zero when the backend does not know it
	// without a lookup.
	LastID annals.UUID
}

// Exists reports whether the stream exists: it has events since its last soft delete.
func (s *Stream) Exists() bool { return s.Next > s.Base }

// Actual is the state of the stream as a [annals.WrongExpectedVersionError] reports it:
// Exact(last revision), or NoStream when it does not exist.
func (s *Stream) Actual() annals.ExpectedRevision {
	if !s.Exists() {
		return annals.NoStream
	}
	return annals.Exact(s.Next - 1)
}

// Holds reports whether the stream is in the state e expects (a soft-deleted stream does not
// exist).
func (s *Stream) Holds(e annals.ExpectedRevision) bool {
	switch e {
	case annals.Any:
		return true
	case annals.NoStream:
		return !s.Exists()
	case annals.StreamExists:
		return s.Exists()
	}
	r, ok := e.Revision()
	return ok && s.Exists() && s.Next-1 == r
}

// Expect returns nil when the stream is in the state e expects, and a
// [*annals.WrongExpectedVersionError] otherwise.
func (s *Stream) Expect(e annals.ExpectedRevision) error {
	if s.Holds(e) {
		return nil
	}
	return &annals.WrongExpectedVersionError{Stream: s.Name, Expected: e, Actual: s.Actual()}
}

// Tombstone returns an error matching [annals.ErrStreamDeleted] when the stream is
// tombstoned; op names the operation ("append to", "read", …).
func (s *Stream) Tombstone(op string) error {
	if s.Tombstoned {
		return fmt.Errorf("%s %q: %w", op, s.Name, annals.ErrStreamDeleted)
	}
	return nil
}

// RepeatWindow returns where the IDs of an append of n events with expectation e must be
// found, in order, for the append to be a repeat of one already written (see
// [annals.ExpectedRevision]): the revisions from … from+n-1, all within the stream's current
// incarnation. ok is false when no repeat is possible. For Any and StreamExists, when s.LastID
// is known, lastID (the ID of the append's last event) must equal it.
//
// An append that is a repeat returns the result of the event at revision from+n-1 and writes
// nothing; otherwise it goes on to the expectation (see [Append]).
func (s *Stream) RepeatWindow(e annals.ExpectedRevision, n int, lastID annals.UUID) (from uint64, ok bool) {
	count := uint64(n)
	if count == 0 || !s.Exists() {
		return 0, false
	}
	switch e {
	case annals.Any, annals.StreamExists:
		if s.Next-s.Base < count || (!s.LastID.IsZero() && s.LastID != lastID) {
			return 0, false
		}
		from = s.Next - count
	case annals.NoStream:
		from = s.Base
	default:
		r, valid := e.Revision()
		if !valid || r+1 < s.Base || r+1 >= s.Next {
			return 0, false
		}
		from = r + 1
	}
	if from+count > s.Next {
		return 0, false
	}
	return from, true
}

// Append decides an append of events to s with expectation e, in the order every backend
// follows: a tombstone ([annals.ErrStreamDeleted]); then a repeat of an earlier append, which
// succeeds with that append's result and writes nothing; then the expectation
// ([annals.ErrWrongExpectedVersion]). stored returns the IDs and the positions of the
// stream's events at revisions from … from+n-1 (the window of [Stream.RepeatWindow]); it is
// called only when a repeat is possible.
//
// When write is true the append goes ahead. When it is false, res and err are the answer
// (res for a repeat, err for a refusal).
func Append(s *Stream, e annals.ExpectedRevision, events []annals.Event, stored func(from uint64, n int) ([]annals.UUID, []uint64, error)) (res annals.AppendResult, write bool, err error) {
	if err := s.Tombstone("append to"); err != nil {
		return res, false, err
	}
	if from, ok := s.RepeatWindow(e, len(events), events[len(events)-1].ID); ok {
		ids, positions, err := stored(from, len(events))
		if err != nil {
			return res, false, err
		}
		if Repeats(ids, events) && len(positions) == len(events) {
			return annals.AppendResult{Revision: from + uint64(len(events)) - 1, Position: positions[len(positions)-1]}, false, nil
		}
	}
	if err := s.Expect(e); err != nil {
		return res, false, err
	}
	return res, true, nil
}

// Repeats reports whether the stored IDs are those of events, in order.
func Repeats(ids []annals.UUID, events []annals.Event) bool {
	if len(ids) != len(events) {
		return false
	}
	for i := range events {
		if ids[i] != events[i].ID {
			return false
		}
	}
	return true
}

// Delete decides a soft delete of s with expectation e: a tombstone
// ([annals.ErrStreamDeleted]), then the expectation ([annals.ErrWrongExpectedVersion]), then
// whether the stream exists ([annals.ErrStreamNotFound]). nil means the delete goes ahead.
func Delete(s *Stream, e annals.ExpectedRevision) error {
	if err := s.Tombstone("delete"); err != nil {
		return err
	}
	if err := s.Expect(e); err != nil {
		return err
	}
	if !s.Exists() {
		return fmt.Errorf("delete %q: %w", s.Name, annals.ErrStreamNotFound)
	}
	return nil
}

// Tombstone decides a tombstone of s with expectation e: a tombstone already there
// ([annals.ErrStreamDeleted]), then the expectation ([annals.ErrWrongExpectedVersion]). A
// stream that never existed may be tombstoned. nil means it goes ahead.
func Tombstone(s *Stream, e annals.ExpectedRevision) error {
	if err := s.Tombstone("tombstone"); err != nil {
		return err
	}
	return s.Expect(e)
}

// SetMetadata decides a SetMetadata of s with expectation e, which is checked against meta,
// the state of [annals.MetaStream](s.Name): a tombstone of s ([annals.ErrStreamDeleted]), then
// the expectation (a conflict names the metadata stream). nil means it goes ahead.
func SetMetadata(s, meta *Stream, e annals.ExpectedRevision) error {
	if err := s.Tombstone("set metadata of"); err != nil {
		return err
	}
	return meta.Expect(e)
}

// MetadataRevision is what GetMetadata returns as the expected revision to pass to
// SetMetadata: the state of the metadata stream, whose events are the stream's $metadata but
// also its $deleted and $tombstone events. It is NoStream only while that stream has no event:
// after a soft delete of a stream whose metadata was never set, it is Exact(0).
func MetadataRevision(meta *Stream) annals.ExpectedRevision {
	if meta.Next == 0 {
		return annals.NoStream
	}
	return annals.Exact(meta.Next - 1)
}

// Readable decides whether stream s can be read: a tombstone ([annals.ErrStreamDeleted]), then
// whether it exists ([annals.ErrStreamNotFound]; a soft-deleted stream does not). op names the
// operation ("read").
func Readable(s *Stream, op string) error {
	if err := s.Tombstone(op); err != nil {
		return err
	}
	if !s.Exists() {
		return fmt.Errorf("%s %q: %w", op, s.Name, annals.ErrStreamNotFound)
	}
	return nil
}
