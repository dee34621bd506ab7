package filestore

import (
	"context"
	"fmt"

	"github.com/annalsdb/annals"
	"github.com/annalsdb/annals/internal/rules"
	"github.com/annalsdb/annals/lease"
)

var (
	_ annals.Store          = (*Store)(nil)
	_ annals.SystemAppender = (*Store)(nil)
	_ lease.Keeper          = (*Store)(nil)
)

type keeper = lease.Memory

// Append implements [annals.Store.Append]. Besides the errors documented there, it returns an
// error matching [annals.ErrTooLarge] for an append whose encoding would not fit in one log
// segment (only possible with many tiny events near the append limit), and one matching
// [annals.ErrClosed] after a storage failure.
func (s *Store) Append(ctx context.Context, stream string, expected annals.ExpectedRevision, events ...annals.Event) (annals.AppendResult, error) {
	events, err := rules.ValidateAppend(s.opts.Limits, stream, expected, events)
	if err != nil {
		return annals.AppendResult{}, err
	}
	return s.append(ctx, stream, expected, events)
}

// AppendSystem implements [annals.SystemAppender]: [Store.Append] to a system stream, with
// the same errors, idempotency, durability and group commit.
func (s *Store) AppendSystem(ctx context.Context, stream string, expected annals.ExpectedRevision, events ...annals.Event) (annals.AppendResult, error) {
	events, err := rules.ValidateSystemAppend(s.opts.Limits, stream, expected, events)
	if err != nil {
		return annals.AppendResult{}, err
	}
	return s.append(ctx, stream, expected, events)
}

// append writes events that were validated: it checks that they fit in a log segment and
// submits them to the pipeline.
func (s *Store) append(ctx context.Context, stream string, expected annals.ExpectedRevision, events []annals.Event) (annals.AppendResult, error) {
	size := 0
	for i := range events {
		size += recordSize(stream, &events[i])
	}
	if int64(size+groupHeaderSize) > s.opts.SegmentSize {
		return annals.AppendResult{}, fmt.Errorf("%w: append to %q encodes to %d bytes, more than a log segment holds (%d)", annals.ErrTooLarge, stream, size, s.opts.SegmentSize)
	}
	return s.submit(ctx, &request{kind: kindAppend, stream: stream, expected: expected, events: events, size: size})
}

// SetMetadata implements [annals.Store.SetMetadata].
func (s *Store) SetMetadata(ctx context.Context, stream string, expected annals.ExpectedRevision, meta annals.StreamMetadata) (annals.AppendResult, error) {
	ev, err := rules.MetadataEvent(s.opts.Limits, stream, expected, meta)
	if err != nil {
		return annals.AppendResult{}, err
	}
	size := recordSize(annals.MetaStream(stream), &ev)
	return s.submit(ctx, &request{kind: kindSetMetadata, stream: stream, expected: expected, events: []annals.Event{ev}, size: size})
}

// Delete implements [annals.Store.Delete].
func (s *Store) Delete(ctx context.Context, stream string, expected annals.ExpectedRevision) (annals.DeleteResult, error) {
	return s.deleteStream(ctx, kindDelete, stream, expected)
}

// Tombstone implements [annals.Store.Tombstone].
func (s *Store) Tombstone(ctx context.Context, stream string, expected annals.ExpectedRevision) (annals.DeleteResult, error) {
	return s.deleteStream(ctx, kindTombstone, stream, expected)
}

func (s *Store) deleteStream(ctx context.Context, kind reqKind, stream string, expected annals.ExpectedRevision) (annals.DeleteResult, error) {
	if err := rules.ValidateDelete(stream, expected); err != nil {
		return annals.DeleteResult{}, err
	}
	res, err := s.submit(ctx, &request{kind: kind, stream: stream, expected: expected, size: 512 + 2*len(stream)})
	if err != nil {
		return annals.DeleteResult{}, err
	}
	return annals.DeleteResult{Position: res.Position}, nil
}
