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
// is on disk and indexed, so acknowledged means durable and readable.
package filestore
