package pgstore_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/annalsdb/annals"
	"github.com/annalsdb/annals/internal/fencetest"
	"github.com/annalsdb/annals/internal/testwait"
	"github.com/annalsdb/annals/pgstore"
	"github.com/annalsdb/annals/projection"
	"github.com/annalsdb/annals/supervisor"
	"github.com/jackc/pgx/v5"
)

// TestProjectionsFencing: a runner over Projections whose lease was taken over while it was
// paused (just before its Update: paused inside it, its transaction would hold the checkpoint's
// row, which the new holder's claim waits for) cannot commit when it resumes: the Update's
// transaction checks the lease on the database and refuses it. Each replica has its own
// Projections, as replicas of a service do. See internal/fencetest.
func TestProjectionsFencing(t *testing.T) {
	fencetest.Run(t, func(t *testing.T) fencetest.Kind[*pgstore.ProjectionTx] { return fenceKind(t, false) })
}

// TestProjectionsFencingInHandler: a runner over Projections paused in its handler, inside its
// Update's transaction, past its lease, cannot commit when it resumes: the lease is checked
// again, locked, before the commit. Its transaction holds the checkpoint's row, so the new
// holder takes the lease but its claim would wait for the paused one: only the BeforeClaim
// variant runs. See internal/fencetest.
func TestProjectionsFencingInHandler(t *testing.T) {
	fencetest.RunVariant(t, fencetest.BeforeClaim, func(t *testing.T) fencetest.Kind[*pgstore.ProjectionTx] { return fenceKind(t, true) })
}

// fenceKind is the fencing test's kind for Projections, A paused in its handler or before its
// Update.
func fenceKind(t *testing.T, inHandler bool) fencetest.Kind[*pgstore.ProjectionTx] {
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
		PauseInHandler: inHandler,
	}
}

// TestProjectionsSlowBatchKeepsLease: a runner whose batch takes longer than its lease's time
// to live (a slow handler, the process alive and its renewals on time) keeps its lease and
// commits the batch. The Update's transaction holds the lease's row FOR SHARE from its check
// to its commit, and Renew locks that row FOR UPDATE: the holder's own renewals wait for its
// write, and when they cannot finish before the holder's deadline, the supervisor cancels
// the work, the batch rolls back, and a batch that always takes this long never commits.
func TestProjectionsSlowBatchKeepsLease(t *testing.T) {
	const ttl = 300 * time.Millisecond
	s := openStore(t, nil)
	ctx := testwait.Context(t)
	var head uint64
	for i := range 10 {
		res, err := s.Append(ctx, fmt.Sprintf("acct-%d", i%3), annals.Any, annals.Event{Type: "Deposited", Data: []byte(`{}`)})
		if err != nil {
			t.Fatal(err)
		}
		head = res.Position
	}
	p := pgstore.NewProjections(s, &pgstore.ProjectionsOptions{Setup: fenceSetup})
	var slow sync.Once
	cancelled := make(chan error, 1)
	proj := fenceProjection(1)
	inner := proj.Handle
	proj.Handle = func(ctx context.Context, tx *pgstore.ProjectionTx, ev annals.RecordedEvent) error {
		slow.Do(func() {
			// The slow batch: longer than the time to live (the workload, not a wait for a
			// condition).
			select {
			case <-ctx.Done():
				cancelled <- context.Cause(ctx)
			case <-time.After(ttl + ttl/2):
			}
		})
		return inner(ctx, tx, ev)
	}
	var lost atomic.Value
	r, err := projection.NewRunner(s, p, proj, &projection.RunnerOptions{MaxBatch: 10,
		Supervision: supervisor.Policy{Keeper: p, TTL: ttl, OnChange: func(st supervisor.Status) {
			if st.State == supervisor.StandingBy && st.Err != nil {
				lost.CompareAndSwap(nil, st.Err)
			}
		}}})
	if err != nil {
		t.Fatal(err)
	}
	stop := runInBackground(t, r)
	if err := r.WaitFor(ctx, head); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-cancelled:
		t.Errorf("the slow batch was cancelled (%v): the holder lost its lease while its own write held the lease's row", err)
	default:
	}
	if err := lost.Load(); err != nil {
		t.Errorf("the runner stood by (%v), with nobody else to take its lease", err)
	}
	if err := stop(); !errors.Is(err, context.Canceled) {
		t.Fatalf("Run: %v, want context.Canceled", err)
	}
}

// fenceName is the projection of the pgstore fencing tests.
const fenceName = "fence"

func fenceSetup(ctx context.Context, tx *pgstore.ProjectionTx) error {
	_, err := tx.Tx.Exec(ctx, "CREATE TABLE "+tx.Schema()+".applied (seq bigserial PRIMARY KEY, position bigint NOT NULL, replica int NOT NULL)")
	return err
}

func fenceProjection(replica int) projection.Projection[*pgstore.ProjectionTx] {
	return projection.Projection[*pgstore.ProjectionTx]{
		Name:   fenceName,
		Filter: &annals.Filter{Categories: []string{"acct"}},
		Handle: func(ctx context.Context, tx *pgstore.ProjectionTx, ev annals.RecordedEvent) error {
			if replica == 1 {
				// The child's writes go on when its supervisor cancels its work, as its Update
				// does (see childStore): only the database's check of the lease may refuse it.
				ctx = context.WithoutCancel(ctx)
			}
			_, err := tx.Tx.Exec(ctx, "INSERT INTO "+tx.Schema()+".applied (position, replica) VALUES ($1, $2)", int64(ev.Position), replica)
			return err
		},
	}
}
