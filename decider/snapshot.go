package decider

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/annalsdb/annals"
)

// SnapshotPolicy says when a [Handler] saves a snapshot of a stream's state and where.
// A snapshot is saved after a command when, since the last snapshot, at least Every events
// were appended or at least MaxBytes bytes of events (data + metadata); at least one of the two
// must be set. Saving costs one more append (to the snapshot store) for those commands; a save
// that fails is reported to [Options].OnError and does not fail the command (a state that
// fails [Options].CheckSnapshots is not saved, and the command returns that error).
type SnapshotPolicy struct {
	// Every is the number of events between snapshots; 0 means not by count.
	Every uint64
	// MaxBytes is the size of the events between snapshots; 0 means not by size.
	MaxBytes int
	// Version names the shape of the state S (e.g. "cart-v3"); it must not be empty. A
	// snapshot of another version is ignored (the stream is folded from the start and a
	// fresh snapshot saved), so change it whenever S or Evolve changes meaning.
	Version string
	// Store keeps the snapshots; nil means [NewStreamSnapshots](the handler's store, nil).
	Store SnapshotStore
	// SaveTimeout bounds each save. A save runs after the command was written, before
	// [Handler.Handle] returns, and is not cancelled with the command's context (the caller
	// giving up must not lose a snapshot that is nearly saved), so this bound is what stops a
	// save that hangs: Handle then returns at most SaveTimeout after the write, and the
	// failed save is reported to [Options].OnError. 0 means [DefaultSnapshotSaveTimeout].
	SaveTimeout time.Duration
}

// DefaultSnapshotSaveTimeout is the default of [SnapshotPolicy].SaveTimeout.
const DefaultSnapshotSaveTimeout = 10 * time.Second

// Snapshot is a stream's state after its event at Revision, encoded with the registry's
// codec.
type Snapshot struct {
	Stream string
	// Version is the [SnapshotPolicy].Version of the handler that saved it.
	Version string
	// Revision and Position are those of the last event folded into State.
	Revision uint64
	Position uint64
	// Time is no earlier than the recording time of the event at Revision; [SnapshotStore.Load]
	// sets it (the default store uses the time the snapshot itself was recorded).
	Time        time.Time
	ContentType string
	State       []byte
	// Keys are the idempotency keys the state remembers, oldest first.
	Keys []IdempotencyRecord
}

// IdempotencyRecord is what a stream remembers of a command handled with an idempotency key:
// the revisions of the events it wrote and the position of the last one.
type IdempotencyRecord struct {
	Key      string `json:"k"`
	First    uint64 `json:"f"`
	Last     uint64 `json:"l"`
	Position uint64 `json:"p"`
}

// SnapshotQuery bounds which snapshot [SnapshotStore.Load] may return, for loads as of a past
// revision or time.
type SnapshotQuery struct {
	// Until, when not 0, admits only snapshots with Revision < Until.
	Until uint64
	// AsOf, when not zero, admits only snapshots whose Time is at or before it.
	AsOf time.Time
}

// SnapshotStore keeps snapshots. Implementations must be safe for concurrent use.
type SnapshotStore interface {
	// Save records s. It need not be durable when it returns (a lost snapshot costs a longer
	// fold, nothing else).
	Save(ctx context.Context, s Snapshot) error
	// Load returns the latest snapshot of stream that q admits, and false when there is none.
	Load(ctx context.Context, stream string, q SnapshotQuery) (Snapshot, bool, error)
}

// DefaultSnapshotPrefix is the default prefix of snapshot streams.
const DefaultSnapshotPrefix = "snapshot-"

// SnapshotEventType is the type of the events [StreamSnapshots] writes.
const SnapshotEventType = "$snapshot"

// StreamSnapshotsOptions configure [NewStreamSnapshots]. nil means the defaults.
type StreamSnapshotsOptions struct {
	// Prefix of the snapshot stream of each stream; empty means [DefaultSnapshotPrefix]. The
	// snapshots of stream "cart-1" go to "snapshot-cart-1", category "snapshot": readers of
	// $all that are not interested leave that category (or [SnapshotEventType]) out.
	Prefix string
}

// StreamSnapshots is the default [SnapshotStore]: it keeps the snapshots of each stream as
// events of a stream of their own in the event store ([StreamSnapshots.Stream]), body = the
// state, metadata = the bookkeeping as JSON. Loading the latest reads that stream backwards
// with limit 1. The snapshot stream grows by one event per snapshot; bound it with stream
// metadata (maxCount) if need be, which leaves temporal loads fewer snapshots to start from.
// It is safe for concurrent use; a saved snapshot is durable as the store's appends are.
type StreamSnapshots struct {
	store  annals.ReadAppender
	prefix string
}

// NewStreamSnapshots returns the snapshot store kept in store.
func NewStreamSnapshots(store annals.ReadAppender, opts *StreamSnapshotsOptions) *StreamSnapshots {
	s := &StreamSnapshots{store: store, prefix: DefaultSnapshotPrefix}
	if opts != nil && opts.Prefix != "" {
		s.prefix = opts.Prefix
	}
	return s
}

// Stream returns the name of the stream that holds the snapshots of stream.
func (s *StreamSnapshots) Stream(stream string) string { return s.prefix + stream }

type snapshotMeta struct {
	Stream   string              `json:"stream"`
	Version  string              `json:"version"`
	Revision uint64              `json:"revision"`
	Position uint64              `json:"position"`
	Keys     []IdempotencyRecord `json:"keys,omitempty"`
}

// Save appends snap to the snapshot stream. Errors are those of [annals.Store.Append].
func (s *StreamSnapshots) Save(ctx context.Context, snap Snapshot) error {
	md, err := json.Marshal(snapshotMeta{Stream: snap.Stream, Version: snap.Version, Revision: snap.Revision, Position: snap.Position, Keys: snap.Keys})
	if err != nil {
		return fmt.Errorf("save snapshot of %q: %w", snap.Stream, err)
	}
	_, err = s.store.Append(ctx, s.Stream(snap.Stream), annals.Any, annals.Event{
		Type: SnapshotEventType, ContentType: snap.ContentType, Data: snap.State, Metadata: md,
	})
	if err != nil {
		return fmt.Errorf("save snapshot of %q: %w", snap.Stream, err)
	}
	return nil
}

// Load reads the snapshot stream backwards (with limit 1 unless q.Until is set) and returns
// the first snapshot q admits. Errors: those of [annals.Store.ReadStream] except
// [annals.ErrStreamNotFound] (no snapshot), and an error matching [annals.ErrCorrupt] for a
// snapshot event whose metadata does not decode.
func (s *StreamSnapshots) Load(ctx context.Context, stream string, q SnapshotQuery) (Snapshot, bool, error) {
	ro := &annals.ReadOptions{Backwards: true, From: annals.End, AsOf: q.AsOf}
	if q.Until == 0 {
		ro.Limit = 1
	}
	for rec, err := range s.store.ReadStream(ctx, s.Stream(stream), ro) {
		if err != nil {
			if errors.Is(err, annals.ErrStreamNotFound) {
				return Snapshot{}, false, nil
			}
			return Snapshot{}, false, fmt.Errorf("load snapshot of %q: %w", stream, err)
		}
		if rec.Type != SnapshotEventType {
			continue
		}
		var md snapshotMeta
		if err := json.Unmarshal(rec.Metadata, &md); err != nil {
			return Snapshot{}, false, fmt.Errorf("%w: snapshot %s@%d: %w", annals.ErrCorrupt, rec.Stream, rec.Revision, err)
		}
		if q.Until != 0 && md.Revision >= q.Until {
			continue
		}
		return Snapshot{
			Stream: stream, Version: md.Version, Revision: md.Revision, Position: md.Position,
			Time: rec.Time, ContentType: rec.ContentType, State: rec.Data, Keys: md.Keys,
		}, true, nil
	}
	return Snapshot{}, false, nil
}
