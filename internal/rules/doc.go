// Package rules holds the decisions of an event store that do not depend on how it stores
// anything: which input is valid, in which order an operation's checks run, where an append
// with repeated event IDs is recognised, and which revisions of a stream its soft deletion and
// metadata leave visible. Every backend (memstore, filestore, pgstore) calls these functions,
// so that they decide alike; a backend only stores and fetches.
//
// The functions are pure: they take plain values, do no I/O and keep no state. They use only
// the standard library and package annals.
//
// # The order of checks
//
// Every operation checks, in this order, and returns the first failure:
//
//  1. its input, with no regard to the store's state: stream id, options, filter, expected
//     revision, events and their sizes, metadata and the size of its event
//     ([annals.ErrInvalidArgument], [annals.ErrTooLarge]);
//  2. the caller's context (its error, such as [context.Canceled]);
//  3. whether the store is open ([annals.ErrClosed]);
//  4. the state of the stream: a tombstone ([annals.ErrStreamDeleted]), then for an append a
//     repeat of an earlier append (which succeeds), then the expectation
//     ([annals.ErrWrongExpectedVersion]), then for Delete and reads whether the stream exists
//     ([annals.ErrStreamNotFound]).
//
// So bad input is reported as such even with a cancelled context or on a tombstoned stream,
// and oversized metadata is [annals.ErrTooLarge] whatever the stream's state.
package rules
