// Package filestore is the embedded durable event store, the default backend of Annals.
//
// The log is the source of truth: an append-only sequence of segment files in the data
// directory, each record checksummed. Indexes (by stream, by category, by event type, and the
// stream states) live in a Pebble database beside the log; they are derived from the log and
// rebuilt from it after a crash.
//
// Appends go through one sequencer goroutine that checks expected revisions, assigns revisions
// and positions in commit order, and groups concurrent appends into one write; the write of the
// next group overlaps the fdatasync of the current one. An append returns only after its group
// is on disk and indexed, so acknowledged means durable and readable. A refused append (a
// conflict, a stream not found or deleted) is answered only once the state it reports is
// durable too.
//
// A failed write or sync (a full disk among them) stops the store: later appends return an
// error matching [annals.ErrClosed] and the cause (errors.Is(err, syscall.ENOSPC)), and
// [Store.Ready] reports it; reopening recovers from the log. A fatal failure of the index
// (Pebble's) stops reads too, and panics unless its cause is a resource failure such as a
// full or failing disk. docs/filestore.md says more.
package filestore
