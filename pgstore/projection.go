package pgstore

import (
	"context"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5"
)

// activeGen is the SQL of the active generation of projection $1 (0 when none was activated).
func (s *Store) activeGen() string {
	return "coalesce((SELECT active FROM " + s.schema + ".projections WHERE name = $1), 0)"
}

// Checkpoint returns the position that projection name last recorded with [Store.Project]
// (in its active generation, see [Projections]), and false when it never did.
func (s *Store) Checkpoint(ctx context.Context, name string) (uint64, bool, error) {
	if err := s.begin(ctx); err != nil {
		return 0, false, err
	}
	var pos int64
	err := s.pool.QueryRow(ctx, "SELECT position FROM "+s.schema+".checkpoints WHERE name = $1 AND generation = "+s.activeGen(), name).Scan(&pos)
	if errors.Is(err, pgx.ErrNoRows) {
		return 0, false, nil
	}
	if err != nil {
		return 0, false, s.fail(ctx, "read checkpoint "+name, err)
	}
	return uint64(pos), true, nil
}

// errRedelivered makes checkpointTx roll back without an error: Project's event was applied.
var errRedelivered = errors.New("already applied")

// Project runs apply in a transaction that also records position as the checkpoint of
// projection name, so that a read model kept in the same database changes exactly when the
// checkpoint moves: both commit, or neither (an exactly-once effect for a projection fed from
// [Store.SubscribeAll]). apply writes through tx and must not commit or roll it back.
//
// The checkpoint row is locked for the transaction, so two runners of one projection take
// turns. When the checkpoint is already at or past position, apply is not called and Project
// returns false: that event was applied before (a redelivery after a restart). Otherwise it
// returns true once the transaction committed. An error from apply rolls everything back and
// is returned as is; database errors are wrapped.
//
// When ctx carries a lease (lease.NewContext), Project checks it in its transaction as
// [Projections.Update] does (before apply, and again after it until the commit), and refuses
// with an error matching lease.ErrLost when it is no longer current or has expired.
//
// Project writes the checkpoint of the active generation of name: it is the one-generation
// form of [Projections], which the toolkit's projection runner uses. Do not use both for one
// projection name.
func (s *Store) Project(ctx context.Context, name string, position uint64, apply func(ctx context.Context, tx pgx.Tx) error) (bool, error) {
	if err := s.begin(ctx); err != nil {
		return false, err
	}
	if name == "" || position == 0 {
		return false, fmt.Errorf("pgstore: project: want a projection name and a position > 0, got %q and %d", name, position)
	}
	err := s.checkpointTx(ctx, name, -1, func(tx pgx.Tx, cur uint64, _ bool) (uint64, error) {
		if cur >= position {
			return 0, errRedelivered
		}
		return position, apply(ctx, tx)
	})
	if errors.Is(err, errRedelivered) {
		return false, nil
	}
	return err == nil, err
}

// checkpointTx runs fn in a transaction that holds the checkpoint row of generation gen of
// name (the active generation when gen < 0) locked, creating the row at position 0 when it is
// missing (created tells fn). When ctx carries a lease, the transaction then checks it (see
// [fence]) and, when it is lost, rolls back without calling fn and returns an error matching
// lease.ErrLost; after fn it checks it again with the lease's row locked FOR SHARE until the
// commit, and rolls back with that error when it was lost meanwhile. When fn returns a position > 0 it becomes the checkpoint, and the transaction
// commits; when fn fails, it rolls back and fn's error is returned as is. Database errors are
// wrapped.
func (s *Store) checkpointTx(ctx context.Context, name string, gen int64, fn func(tx pgx.Tx, cur uint64, created bool) (uint64, error)) error {
	genSQL := "$2::bigint"
	if gen < 0 {
		genSQL = s.activeGen()
	}
	f, err := newFence(ctx)
	if err != nil {
		return err
	}
	tx, err := s.pool.Begin(ctx)
	if err != nil {
		return s.fail(ctx, "project "+name, err)
	}
	defer tx.Rollback(ctx)
	// Insert the row if it is missing (waiting for a concurrent insert to end), then lock it:
	// the second statement's snapshot sees the row whoever inserted it. Then check the lease.
	b := &pgx.Batch{}
	var created bool
	var cur, g int64
	insert := "INSERT INTO " + s.schema + ".checkpoints (name, generation, position, updated) VALUES ($1, " + genSQL + ", 0, now()) ON CONFLICT DO NOTHING RETURNING true"
	lock := "SELECT position, generation FROM " + s.schema + ".checkpoints WHERE name = $1 AND generation = " + genSQL + " FOR UPDATE"
	args := []any{name}
	if gen >= 0 {
		args = append(args, gen)
	}
	b.Queue(insert, args...).Query(func(rows pgx.Rows) error {
		for rows.Next() {
			created = true
		}
		return rows.Err()
	})
	b.Queue(lock, args...).QueryRow(func(row pgx.Row) error { return row.Scan(&cur, &g) })
	f.queueRead(s, b)
	if err := tx.SendBatch(ctx, b).Close(); err != nil {
		return s.fail(ctx, "project "+name+": lock the checkpoint", err)
	}
	if err := f.check(); err != nil {
		return err
	}
	next, err := fn(tx, uint64(cur), created)
	if err != nil {
		return err
	}
	// The lease again (when fenced), now locked FOR SHARE until the commit: a takeover that
	// committed while fn ran is seen, and none can commit before this transaction ends. Locked
	// only now, the row does not hold up the holder's renewals while fn runs. It goes in one
	// round trip with the checkpoint's update, which the rollback undoes when the check fails.
	b = &pgx.Batch{}
	f.queue(s, b)
	if next > 0 {
		b.Queue("UPDATE "+s.schema+".checkpoints SET position = $3, updated = now() WHERE name = $1 AND generation = $2", name, g, int64(next))
	}
	if b.Len() > 0 {
		if err := tx.SendBatch(ctx, b).Close(); err != nil {
			return s.fail(ctx, "project "+name+": record the checkpoint", err)
		}
	}
	if err := f.check(); err != nil {
		return err
	}
	if err := tx.Commit(ctx); err != nil {
		return s.fail(ctx, "project "+name+": commit", err)
	}
	return nil
}
