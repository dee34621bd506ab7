// Package projection turns the log into read models: a [Projection] is a handler from events
// to a read model, a [Runner] keeps it up to date from a $all subscription with a checkpoint,
// and a [Store] holds the read model and its checkpoint.
//
// # Guarantees, per Store
//
// The checkpoint is the position of the last event a read model reflects. Where the read model
// and the checkpoint are written in one transaction, a restart resumes exactly where the last
// commit left off: every event has its effect exactly once, crash or not.
//
//   - [Memory] (in memory, Tx = the model): exactly-once within the process; nothing survives
//     it. See [Memory] for what a failed update keeps.
//   - tables.DB (the embedded store's side tables, a Pebble database beside the filestore):
//     exactly-once and durable: rows and checkpoint go in one synced Pebble batch.
//   - [Checkpoints] (checkpoints appended to streams of the event store, for read models that
//     live elsewhere: Redis, files, a search index): at-least-once. The read model's writes and
//     the checkpoint are separate, so after a crash the events since the last checkpoint are
//     applied again; handlers must be idempotent.
//
// Inline projections, updated in the transaction of the append itself, are not possible on
// memstore and filestore: the log and the read models do not share a transaction there (a
// read model is always at least a moment behind its events). [Runner.WaitFor] closes that gap
// for the reader that needs it. A PostgreSQL backend, where both live in one database, can
// offer them.
//
// # Batches and latency
//
// The runner reads the subscription on a goroutine of its own into a bounded queue, and
// applies on another what has arrived, up to [RunnerOptions.MaxBatch] events per Update. While
// it catches up, batches are full (one transaction per MaxBatch events, for throughput); live,
// each event is applied as soon as it arrives (for latency).
//
// # Failures
//
// A handler error stops that projection only: [Runner.Run] parks in [StateFailed] with the
// failing event in [Status], the read model keeps the state it had before that event, and the
// operator chooses [Runner.Retry] or [Runner.Skip]. [Runner.WaitFor] on a position at or after
// the failing event returns the [*HandlerError] at once instead of waiting in vain.
//
// # Read-your-writes
//
// Every append returns the position it wrote. [Runner.WaitFor](ctx, position) returns once the
// read model reflects everything up to that position, woken by the runner's progress (no
// polling), bounded by ctx. The query package builds its consistency option on it.
//
// # Tracing
//
// With an OpenTelemetry TracerProvider installed, each event is handled in a consumer span
// "projection <name> <event type>" whose parent is the trace context the event records (see
// docs/tracing.md); the handler's context carries it. With none installed, nothing is done.
//
// # Rebuilds and generations
//
// A Store keeps numbered generations of each projection side by side, one of them active (see
// [Store]). [Runner.Rebuild] replays the log from the start into generation active+1 while the
// active one keeps serving queries and following the log; once the new one has caught up, the
// runner holds off its live batches for a moment, applies the last few events to the new
// generation, and calls [Store.Activate], which makes it the one queries read and drops the old
// one in the same step. A rebuild that fails (or a crash during one) leaves the active
// generation untouched; the next rebuild starts by resetting the unfinished generation.
//
// # Several runners of one projection
//
// Checkpoints are compare-and-set: every [Store.Update] names the checkpoint it continues
// from, and a Store whose checkpoint moved meanwhile refuses it atomically with its write
// ([ErrCheckpointMoved], [*CheckpointConflictError]) and applies nothing of the batch; a
// checkpoint never moves backwards ([CheckUpdate] is the rule every Store applies). A
// [Runner] whose update is refused reads the stored generation and checkpoint again and
// continues from there, which is not a failure. So each replica of a service may run the
// same projection on one Store: the read model is the one a single runner builds.
//
// A lease decides which of them works ([RunnerOptions].Supervision; package supervisor): the
// runner holding the lease "projection/<Name>" applies events, the others stand by (their
// Status and WaitFor read the stored checkpoint) and take over from the last checkpoint when
// its lease lapses. Every Update carries the lease, and the Store checks it in the same
// transaction as the checkpoint, so a runner that lost its lease cannot commit (fencing; see
// [Memory], [Checkpoints], tables.DB and pgstore.Projections). Without a lease keeper every
// runner does the work, and all but one batch per checkpoint are refused and retried. Run
// [Runner.Rebuild] on one replica at a time.
package projection
