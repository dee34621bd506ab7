// Package annals defines the event store at the heart of Annals: the events it records, the
// guarantees it gives, and the [Store] interface every backend implements.
//
// The model: services append immutable events to streams. Each stream is an ordered sequence
// numbered by revision (0, 1, 2, …); all streams together form the global log, numbered by
// position (1, 2, 3, …) in commit order. Appends are atomic, checked against an
// [ExpectedRevision] for optimistic concurrency, idempotent by event ID, and durable when they
// return. Reads are iterators; subscriptions catch up from storage and then follow the log live,
// with no gap and no duplicate.
//
// This package holds only the domain types and uses only the standard library. The backends
// live in their own packages: memstore (in memory, the reference behaviour and the oracle of
// randomized tests), filestore (the embedded durable store on Pebble, the default) and pgstore
// (PostgreSQL). The server package serves any of them over gRPC and HTTP/JSON, and the client
// package is a [Store] that talks to a server, so that code written against [Store] runs
// unchanged in process or over the network. The conformance suite in storetest defines what
// every one of them must do; the rules they share (input validation, the order of checks, where
// a repeated append is recognised, what metadata hides) are written once, for all of them.
//
// # The order of checks
//
// Every operation checks its input first (stream id, options, filter, expected revision,
// events, metadata and sizes: [ErrInvalidArgument], [ErrTooLarge]), then its context (a
// cancelled context gives its error, never a state of the store such as "not found"), then
// that the store is open ([ErrClosed]), and only then the state of the stream: a tombstone
// ([ErrStreamDeleted]), for an append a repeat of an earlier one, the expectation
// ([ErrWrongExpectedVersion]), and for Delete and reads whether the stream exists
// ([ErrStreamNotFound]). So oversized metadata is [ErrTooLarge] even on a tombstoned stream.
//
// # Visibility
//
// A stream's soft deletion and its metadata hide its oldest events from reads: the visible
// events are those from the highest of the revision after the last soft delete,
// truncateBefore and (with maxCount) the stream's end minus maxCount, and (with maxAge)
// recorded strictly after now minus maxAge. A bound beyond the end of the stream hides every
// event but none yet to come: a subscription to a stream with truncateBefore 100 and two
// events starts at revision 2 and delivers it when it is appended (a subscription applies the
// visibility once, when it starts, and from there on delivers every event of the stream).
//
// # System streams
//
// Stream ids starting with "$" are reserved. Users may read them but not append to them. Each
// stream's metadata, soft deletion and tombstone are recorded as events of the system stream
// [MetaStream](stream) ("$meta-" + stream), so that the log alone describes the whole store.
// These system events appear in [Store.ReadAll] and [Store.SubscribeAll] like any other event,
// and a [Filter] applies to them as to any other: their stream's category is "$meta" and their
// types are [MetadataEventType], [DeletedEventType] and [TombstoneEventType]. A filter on user
// categories or user event types therefore leaves them out, and one that names a system type
// (EventTypes: ["$deleted"]) or a "$" prefix keeps them.
package annals

import (
	"context"
	"iter"
)

// Store is an event store. Every method is safe for concurrent use.
//
// Methods that take a context stop waiting when it is done and return its error; an append that
// was already handed to storage may still be written (its outcome is then unknown to the caller,
// and retrying it with the same event IDs is safe, see [Store.Append]).
//
// After Close, every method returns an error that matches [ErrClosed].
type Store interface {
	// Append atomically appends events to the end of stream, provided the stream is in the state
	// expected: all of them are written, with contiguous revisions and positions, or none is.
	// When Append returns without error the events are durable (on disk, or the backend's
	// equivalent) and visible to every read and subscription.
	//
	// Events with a zero ID get a fresh one. Repeating an append whose event IDs were already
	// written at the place the expected revision names returns the first result and writes
	// nothing; see [ExpectedRevision] for where each expectation looks.
	//
	// Errors: [ErrInvalidArgument] for a bad stream id (including a reserved "$" name), no events,
	// an empty type, a duplicate ID in one append or an invalid expected revision; [ErrTooLarge]
	// for an event or an append over the limits; [ErrWrongExpectedVersion] (a
	// [*WrongExpectedVersionError] carrying the actual revision) when the stream is not in the
	// expected state; [ErrStreamDeleted] when the stream was tombstoned. A failed append leaves
	// the store exactly as it was.
	Append(ctx context.Context, stream string, expected ExpectedRevision, events ...Event) (AppendResult, error)

	// ReadStream reads the events of one stream, forwards from revision 0 when opts is nil. The
	// stream's metadata (maxCount, maxAge, truncateBefore) and soft deletion hide the events
	// they cover. The sequence yields one error and stops on failure: [ErrStreamNotFound] when
	// the stream does not exist or was soft-deleted, [ErrStreamDeleted] when it was tombstoned,
	// [ErrInvalidArgument] for a bad stream id or options, or ctx's error.
	ReadStream(ctx context.Context, stream string, opts *ReadOptions) iter.Seq2[RecordedEvent, error]

	// ReadAll reads the global log in position order, forwards from the first position when opts
	// is nil. It includes system events and the events of deleted streams (the log is never
	// rewritten); opts.Filter narrows it. Stream metadata does not apply to ReadAll.
	ReadAll(ctx context.Context, opts *ReadOptions) iter.Seq2[RecordedEvent, error]

	// SubscribeStream delivers the events of one stream from opts.From (revision, inclusive):
	// first those already stored, then each new one as it is appended, in revision order, with
	// no gap and no duplicate. The stream's soft deletion and metadata (maxCount, maxAge,
	// truncateBefore) move the starting point past the events they hide when the subscription
	// starts; from there on every event is delivered. It never ends by itself: it runs until
	// ctx is done (yielding ctx's error), the consumer stops, the store is closed ([ErrClosed])
	// or the stream is tombstoned (every event written before the tombstone is delivered, then
	// [ErrStreamDeleted]; subscribing to a tombstoned stream fails at once). The stream need
	// not exist yet. A slow consumer never blocks writers: events wait in storage, not in
	// memory.
	SubscribeStream(ctx context.Context, stream string, opts *SubscribeOptions) iter.Seq2[RecordedEvent, error]

	// SubscribeAll is [Store.SubscribeStream] for the global log: it delivers events from
	// opts.From (position, inclusive) that match opts.Filter, in position order, with no gap and
	// no duplicate even while many writers commit concurrently.
	SubscribeAll(ctx context.Context, opts *SubscribeOptions) iter.Seq2[RecordedEvent, error]

	// GetMetadata returns the metadata of stream (the zero value when none was ever set) and
	// the expected revision to pass to [Store.SetMetadata] to change it safely: the revision of
	// the last event of [MetaStream](stream), or [NoStream] when it has none. That stream also
	// records soft deletes, so after a Delete of a stream whose metadata was never set it is
	// Exact(0), not NoStream. It returns [ErrStreamDeleted] for a tombstoned stream.
	GetMetadata(ctx context.Context, stream string) (StreamMetadata, ExpectedRevision, error)

	// SetMetadata records new metadata for stream as an event of [MetaStream](stream). expected
	// is checked against that metadata stream, not the stream itself (a conflict names the
	// metadata stream). The stream need not exist. Errors are those of [Store.Append], plus
	// [ErrInvalidArgument] for invalid metadata and [ErrTooLarge] when the event that records it
	// is over the event size limit (checked before the stream's state, see the package doc).
	SetMetadata(ctx context.Context, stream string, expected ExpectedRevision, meta StreamMetadata) (AppendResult, error)

	// Delete soft-deletes stream: it then reads as not found and is left out of
	// [Store.ListStreams], but appending to it again re-creates it and continues its revision
	// numbers (and only the new events are read). It returns where the system event that
	// records the deletion was written. The checks, in order: [ErrStreamDeleted] for a
	// tombstoned stream, then expected against the stream ([ErrWrongExpectedVersion]), then
	// [ErrStreamNotFound] when the stream does not exist or is already deleted.
	Delete(ctx context.Context, stream string, expected ExpectedRevision) (DeleteResult, error)

	// Tombstone deletes stream for good: every later append, read, subscription or metadata
	// change on it returns [ErrStreamDeleted]. A stream that never existed may be tombstoned to
	// reserve its name. It returns where the system event that records it was written. The
	// checks, in order: [ErrStreamDeleted] when it already is, then expected against the
	// stream ([ErrWrongExpectedVersion]).
	Tombstone(ctx context.Context, stream string, expected ExpectedRevision) (DeleteResult, error)

	// ListStreams yields the user streams that exist (not deleted, not tombstoned), in
	// byte-wise order of their ids.
	ListStreams(ctx context.Context, opts *ListOptions) iter.Seq2[StreamInfo, error]

	// Close stops the store: running subscriptions end with [ErrClosed], files are closed. It is
	// safe to call more than once. Appends already acknowledged stay durable.
	Close() error
}

// AppendResult is what a successful append returns.
type AppendResult struct {
	// Revision is the revision of the last event written. Pass Exact(Revision) as the expected
	// revision of the next append to the same stream.
	Revision uint64
	// Position is the position of the last event written in the global log; a reader that waits
	// for this position reads its own writes.
	Position uint64
}

// DeleteResult is what a successful [Store.Delete] or [Store.Tombstone] returns.
type DeleteResult struct {
	// Position is the position in the global log of the system event ([DeletedEventType] or
	// [TombstoneEventType], in [MetaStream](stream)) that records the deletion; a reader that
	// waits for this position sees the stream deleted.
	Position uint64
}

// StreamInfo describes a stream in [Store.ListStreams].
type StreamInfo struct {
	Stream string
	// Revision is the revision of the stream's last event.
	Revision uint64
	// Count is the number of events of the stream since it was last created (a soft-deleted and
	// re-created stream counts from the re-creation). Metadata limits do not reduce it.
	Count uint64
}

// ListOptions narrows [Store.ListStreams]. The zero value lists every stream.
type ListOptions struct {
	// Prefix keeps only the streams whose id starts with it.
	Prefix string
	// After, when not empty, starts the listing after this stream id (for paging).
	After string
	// Limit stops after that many streams; 0 means no limit.
	Limit int
}
