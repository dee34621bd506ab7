// Package decider handles commands with deciders: an aggregate written as three pure
// functions ([Decider]: Initial, Decide, Evolve) and a [Handler] that does the rest.
//
// [Handler.Handle] validates a command, loads the stream (the latest snapshot, then the events
// after it), folds them with Evolve, calls Decide, and appends the decided events with the
// exact expected revision. When another writer got there first the append conflicts; the
// handler reads what was written meanwhile and decides again, up to [Options].MaxRetries
// times, then gives up with [ErrTooManyConflicts]. Domain errors from Decide and Validate
// write nothing and come back marked as refusals: they match [ErrRefused] as well as
// themselves, and no failure of the store does, so a caller tells "the domain said no" from
// "try again later" without listing the domain's errors. Every [Result] carries the revision and global position
// written, for read-your-writes.
//
// # Metadata
//
// Each event written carries a [codec.Metadata]: the command's correlation id (a fresh UUID
// when none is given), its causation id, its idempotency key, and extra fields. A command sent
// in reaction to an event uses [CausedBy](event).
//
// # Tracing
//
// With an OpenTelemetry TracerProvider installed (package tracing installs one from the
// OTEL_* environment), [Handler.Handle] runs in a span "handle <command type>" and records
// its W3C trace context in the metadata of the events it appends ([codec.Metadata]
// TraceParent), so that projections, process managers and consumers that handle the events
// continue the trace. The span's parent is the span of Handle's context; without one, a
// command given a correlation id that is a UUID continues the trace derived from it. With no
// provider installed nothing of this is done and nothing is allocated for it. See
// docs/tracing.md.
//
// # Idempotency
//
// A command with [CommandOptions].IdempotencyKey records the key in the metadata of the events
// it writes. Handling a command with a key the stream remembers writes nothing and returns the
// first result with Duplicate set. A stream remembers the last [Options].IdempotencyWindow
// keys used on it (default 128); the window is rebuilt from the events when a stream is
// folded and carried in snapshots, so it works the same with or without snapshots, across
// handlers, processes and restarts. A key older than the window is forgotten and the command
// handled again.
//
// # Snapshots
//
// With a [SnapshotPolicy] the handler saves the state every N events and/or every so many
// bytes, in a [SnapshotStore]: by default [StreamSnapshots], the event store itself, stream
// "snapshot-"+stream, read backwards with limit 1, so loading costs one read plus the events
// since the snapshot. Snapshots are tagged with the policy's Version; one of another version
// is ignored, so that a changed state shape is folded afresh instead of mis-loaded. Saving a
// snapshot never fails a command: errors go to [Options].OnError, and a save that hangs is
// cut off after [SnapshotPolicy].SaveTimeout. The state saved (and cached) is folded from the
// events as stored, decoded again, so it is what a fresh load folds.
//
// A state that does not survive its encoding (an unexported field) would load from a snapshot
// as another state. [Options].CheckSnapshots, on in test binaries, decodes each snapshot back
// before saving it and compares ([CheckSnapshot]): such a snapshot is not saved, and the
// command returns its result with an error matching [ErrSnapshotMismatch] that names the
// state's type and the first field that differs.
//
// # State cache
//
// [Options].CacheSize keeps recently used states in memory. A command on a cached stream
// decides and appends without reading first; the exact expected revision makes a stale cache
// harmless (it conflicts, the handler reads the new events and decides again).
//
// # Temporal queries
//
// [Handler.Load] folds a stream as of a revision ([LoadOptions].Until) or a time (AsOf),
// using only snapshots from before that point. [Handler.History] yields every event with the
// state after it.
package decider
