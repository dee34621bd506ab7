package annals

import (
	"context"
	"iter"
)

// The roles below split [Store] by what a consumer does with it, as io splits a file into
// io.Reader and io.Writer: a component takes the smallest role it uses, so that it states what
// it may do to the store, and a test or an adapter need only provide that much. Every Store
// has each role; each method behaves as the Store method of the same name documents.

// Appender appends events to streams: see [Store.Append].
type Appender interface {
	Append(ctx context.Context, stream string, expected ExpectedRevision, events ...Event) (AppendResult, error)
}

// Reader reads streams and the global log: see [Store.ReadStream] and [Store.ReadAll].
type Reader interface {
	ReadStream(ctx context.Context, stream string, opts *ReadOptions) iter.Seq2[RecordedEvent, error]
	ReadAll(ctx context.Context, opts *ReadOptions) iter.Seq2[RecordedEvent, error]
}

// Subscriber follows streams and the global log: see [Store.SubscribeStream] and
// [Store.SubscribeAll].
type Subscriber interface {
	SubscribeStream(ctx context.Context, stream string, opts *SubscribeOptions) iter.Seq2[RecordedEvent, error]
	SubscribeAll(ctx context.Context, opts *SubscribeOptions) iter.Seq2[RecordedEvent, error]
}

// MetadataReader reads stream metadata: see [Store.GetMetadata].
type MetadataReader interface {
	GetMetadata(ctx context.Context, stream string) (StreamMetadata, ExpectedRevision, error)
}

// MetadataWriter records stream metadata: see [Store.SetMetadata].
type MetadataWriter interface {
	SetMetadata(ctx context.Context, stream string, expected ExpectedRevision, meta StreamMetadata) (AppendResult, error)
}

// ReadAppender reads and appends: what keeps state in streams of its own (snapshots,
// checkpoints) uses.
type ReadAppender interface {
	Reader
	Appender
}

// ReadSubscriber reads and follows: what builds read models from the log uses.
type ReadSubscriber interface {
	Reader
	Subscriber
}

// ReadAppendSubscriber reads, appends and follows: what reacts to the log by writing to it
// uses. It is a [Store] without metadata, deletion, listing and Close.
type ReadAppendSubscriber interface {
	Reader
	Appender
	Subscriber
}

// SystemAppender appends to the system streams the toolkit keeps for itself: the settings,
// checkpoints and parked events of consumer groups (package groups). AppendSystem is
// [Store.Append] for a stream id that [ValidateSystemStreamID] accepts ("$"-prefixed, not a
// metadata stream) instead of a user stream id: the same checks in the same order, the same
// idempotency, durability and errors. memstore, filestore and pgstore implement it; the
// network client does not (the server keeps the groups of its clients).
type SystemAppender interface {
	AppendSystem(ctx context.Context, stream string, expected ExpectedRevision, events ...Event) (AppendResult, error)
}

// Each role is part of Store.
var (
	_ ReadAppendSubscriber = Store(nil)
	_ MetadataReader       = Store(nil)
	_ MetadataWriter       = Store(nil)
)
