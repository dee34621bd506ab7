package pgstore_test

import (
	"context"
	"testing"

	"github.com/annalsdb/annals"
	"github.com/annalsdb/annals/internal/fencetest"
	"github.com/annalsdb/annals/pgstore"
	"github.com/jackc/pgx/v5"
)

// TestProjectionsFencing: a runner over Projections whose lease was taken over while it was
// paused (just before its Update: a handler paused inside the Update would hold the lease's
// row FOR SHARE and keep every other holder out) cannot commit when it resumes: the Update's
// transaction checks the lease on the database and refuses it. Each replica has its own
// Projections, as replicas of a service do. See internal/fencetest.
func TestProjectionsFencing(t *testing.T) {
	fencetest.Run(t, func(t *testing.T) fencetest.Kind[*pgstore.ProjectionTx] {
		s := openStore(t, nil)
		setup := func(ctx context.Context, tx *pgstore.ProjectionTx) error {
			_, err := tx.Tx.Exec(ctx, "CREATE TABLE "+tx.Schema()+".applied (seq bigserial PRIMARY KEY, position bigint NOT NULL, replica int NOT NULL)")
			return err
		}
		reader := pgstore.NewProjections(s, &pgstore.ProjectionsOptions{Setup: setup})
		return fencetest.Kind[*pgstore.ProjectionTx]{
			Log: s,
			Replica: func(int) fencetest.Replica[*pgstore.ProjectionTx] {
				p := pgstore.NewProjections(s, &pgstore.ProjectionsOptions{Setup: setup})
				return fencetest.Replica[*pgstore.ProjectionTx]{Events: s, Target: p, Keeper: p}
			},
			Record: func(ctx context.Context, tx *pgstore.ProjectionTx, replica int, ev annals.RecordedEvent) error {
				_, err := tx.Tx.Exec(ctx, "INSERT INTO "+tx.Schema()+".applied (position, replica) VALUES ($1, $2)", int64(ev.Position), replica)
				return err
			},
			Applied: func(t *testing.T) map[uint64][]int {
				out := map[uint64][]int{}
				err := reader.Read(t.Context(), fencetest.Name, func(schema string) error {
					rows, err := s.Pool().Query(t.Context(), "SELECT position, replica FROM "+schema+".applied ORDER BY seq")
					if err != nil {
						return err
					}
					var p int64
					var r int
					_, err = pgx.ForEachRow(rows, []any{&p, &r}, func() error {
						out[uint64(p)] = append(out[uint64(p)], r)
						return nil
					})
					return err
				})
				if err != nil {
					t.Fatal(err)
				}
				return out
			},
		}
	})
}
