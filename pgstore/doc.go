// Package pgstore is an [annals.Store] in PostgreSQL, with pgx: the events, the streams and
// the projections' checkpoints live in tables of one schema (Options.Schema), so several
// stores can share a database and read models can live beside them.
//
// # Gap-free ordering
//
// Positions are not taken from a sequence. With a sequence, transaction A can take position
// 10 and B position 11, B commit first, and a reader at 11 move on and never see 10: the bug
// most SQL event stores shipped at some point. Here one row, log_head, holds the last
// position. An append's transaction does all its other work first (locking its streams' rows,
// the checks, the stream updates) and, as its last statement, raises the head, inserting its
// events at the positions it took; it holds the head's row lock until it commits. The next
// append's head update waits for that lock, and PostgreSQL releases it only after the commit
// is visible to new snapshots. So positions are handed out in commit order, a rollback gives
// its positions back (no gaps), and every snapshot sees a prefix 1…N of the log: a reader that
// read up to the head it saw has missed nothing, whatever is still in flight.
//
// The price is that appends serialize on the head row from their last statement to their
// commit's WAL flush. The store wins the throughput back by committing concurrent appends
// together: up to Options.MaxBatch appends, each to a different stream, share one transaction
// and one WAL flush, and Options.Writers transactions run at once so that one prepares while
// another commits. docs/pgstore.md has the measured cost.
//
// # Subscriptions
//
// Each append's transaction NOTIFYs the store's channel with the new head. One connection per
// Store LISTENs and moves the head the store knows; subscriptions read pages from the tables
// when the head passed what they have seen, and otherwise run no query. The listener also
// reads the head every Options.PollInterval, so that a lost notification delays a
// subscription by at most that.
//
// # Projections in the same database
//
// [Projections] is the toolkit's projection.Store on PostgreSQL: a handler writes its read
// model through the [ProjectionTx] of the runner's batch, which commits with the checkpoint
// (exactly-once effect). Each generation of a read model is a schema of its own, created with
// its checkpoint row and dropped with it, so that a rebuild runs beside the live generation and
// Activate switches queries in one transaction. [Store.Project] is the one-generation form for
// code that does without the runner.
//
// # Leases
//
// [Store] is a lease.Keeper whose leases live in the store's leases table, on the database's
// clock, with fencing tokens that survive restarts. A write of [Projections] (or
// [Store.Project]) whose context carries a lease checks it in its own transaction and is
// refused with lease.ErrLost when another holder took the lease (see [Projections]).
package pgstore
