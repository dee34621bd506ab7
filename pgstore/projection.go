package pgstore

import (
	"context"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5"
)

// Checkpoint returns the position that projection name last recorded with [Store.Project],
// and false when it never did.
func (s *Store) Checkpoint(ctx context.Context, name string) (uint64, bool, error) {
	if err := s.begin(ctx); err != nil {
		return 0, false, err
	}
	var pos int64
	err := s.pool.QueryRow(ctx, "SELECT position FROM "+s.schema+".checkpoints WHERE name = $1", name).Scan(&pos)
	if errors.Is(err, pgx.ErrNoRows) {
		return 0, false, nil
	}
	if err != nil {
		return 0, false, s.fail(ctx, "read checkpoint "+name, err)
	}
	return uint64(pos), true, nil
}

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
func (s *Store) Project(ctx context.Context, name string, position uint64, apply func(ctx context.Context, tx pgx.Tx) error) (bool, error) {
	if err := s.begin(ctx); err != nil {
		return false, err
	}
	if name == "" || position == 0 {
		return false, fmt.Errorf("pgstore: project: want a projection name and a position > 0, got %q and %d", name, position)
	}
	tx, err := s.pool.Begin(ctx)
	if err != nil {
		return false, s.fail(ctx, "project "+name, err)
	}
	defer tx.Rollback(ctx)
	var cur int64
	err = tx.QueryRow(ctx, `INSERT INTO `+s.schema+`.checkpoints AS c (name, position, updated) VALUES ($1, 0, now())
		ON CONFLICT (name) DO UPDATE SET name = c.name RETURNING position`, name).Scan(&cur)
	if err != nil {
		return false, s.fail(ctx, "project "+name+": lock the checkpoint", err)
	}
	if uint64(cur) >= position {
		return false, nil
	}
	if err := apply(ctx, tx); err != nil {
		return false, err
	}
	if _, err := tx.Exec(ctx, "UPDATE "+s.schema+".checkpoints SET position = $2, updated = now() WHERE name = $1", name, int64(position)); err != nil {
		return false, s.fail(ctx, "project "+name+": record the checkpoint", err)
	}
	if err := tx.Commit(ctx); err != nil {
		return false, s.fail(ctx, "project "+name+": commit", err)
	}
	return true, nil
}
