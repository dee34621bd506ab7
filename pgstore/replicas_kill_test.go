package pgstore_test

import (
	"context"
	"fmt"
	"os"
	"testing"

	"github.com/annalsdb/annals"
	"github.com/annalsdb/annals/internal/replicatest"
	"github.com/annalsdb/annals/lease"
	"github.com/annalsdb/annals/pgstore"
	"github.com/annalsdb/annals/projection"
	"github.com/google/go-cmp/cmp"
	"github.com/jackc/pgx/v5"
)

// The replicas of the tests below run as processes that share one PostgreSQL schema: its
// event store, its leases, and the read model of pgstore.Projections.

// killedProjection is the projection the replicas run: a counter per stream and their total,
// beside a table of the checkpoint moves committed, written in the transaction of each
// Update.
const killedProjection = "killcount"

func killedSetup(ctx context.Context, tx *pgstore.ProjectionTx) error {
	_, err := tx.Tx.Exec(ctx, "CREATE TABLE "+tx.Schema()+`.counts (stream text COLLATE "C" PRIMARY KEY, n bigint NOT NULL);
		CREATE TABLE `+tx.Schema()+`.moves (id bigserial PRIMARY KEY, "from" bigint NOT NULL, "to" bigint NOT NULL, holder text NOT NULL, token numeric NOT NULL)`)
	return err
}

// movesRecorder records each Update's checkpoint move, with the lease its context carries, in
// the Update's transaction: the move commits with the batch or not at all, and the moves'
// ids follow the order of the commits (taken under the checkpoint's row lock).
type movesRecorder struct{ *pgstore.Projections }

func (r movesRecorder) Update(ctx context.Context, name string, gen, from, to uint64, fn func(*pgstore.ProjectionTx) error) error {
	l, _ := lease.FromContext(ctx)
	return r.Projections.Update(ctx, name, gen, from, to, func(tx *pgstore.ProjectionTx) error {
		if err := fn(tx); err != nil {
			return err
		}
		_, err := tx.Tx.Exec(ctx, "INSERT INTO "+tx.Schema()+`.moves ("from", "to", holder, token) VALUES ($1, $2, $3, $4::text::numeric)`,
			int64(from), int64(to), l.Holder, fmt.Sprint(l.Token))
		return err
	})
}

func newKilledRunner(s *pgstore.Store, holder string, batch int) (replicatest.Runner, error) {
	p := pgstore.NewProjections(s, &pgstore.ProjectionsOptions{Setup: killedSetup})
	return projection.NewRunner(s, movesRecorder{p}, projection.Projection[*pgstore.ProjectionTx]{
		Name:   killedProjection,
		Filter: replicatest.ProjectionFilter,
		Handle: func(ctx context.Context, tx *pgstore.ProjectionTx, ev annals.RecordedEvent) error {
			b := &pgx.Batch{}
			for _, key := range []string{ev.Stream, "$total"} {
				b.Queue("INSERT INTO "+tx.Schema()+".counts AS c VALUES ($1, 1) ON CONFLICT (stream) DO UPDATE SET n = c.n + 1", key)
			}
			return tx.Tx.SendBatch(ctx, b).Close()
		},
	}, &projection.RunnerOptions{MaxBatch: batch, Supervision: replicatest.Policy(p, holder)})
}

// The environment of a replica's child process: the database and the schema of the store.
const (
	replicaURLEnv    = "ANNALS_REPLICA_URL"
	replicaSchemaEnv = "ANNALS_REPLICA_SCHEMA"
	roleKilled       = "pg-projection"
)

// TestReplicaChild is the body of a replica's child process (see replicatest.RunChild): it
// opens the store in the schema its parent gives. It does nothing in a normal test run.
func TestReplicaChild(t *testing.T) {
	var s *pgstore.Store
	replicatest.RunChild(t, func() (annals.Store, lease.Keeper, error) {
		var err error
		s, err = pgstore.Open(context.Background(), os.Getenv(replicaURLEnv), &pgstore.Options{Schema: os.Getenv(replicaSchemaEnv), MaxConns: 4})
		return s, s, err
	}, map[string]replicatest.ChildRunner{
		roleKilled: func(holder string, _ lease.Keeper, batch int) (replicatest.Runner, error) {
			return newKilledRunner(s, holder, batch)
		},
	})
}

func killSetup(t *testing.T, n int) (*pgstore.Store, replicatest.Setup) {
	s := openStore(t, nil)
	return s, replicatest.Setup{Replicas: n, Rounds: 8, Child: "TestReplicaChild",
		Env: []string{replicaURLEnv + "=" + testDatabase(t), replicaSchemaEnv + "=" + s.Schema()}}
}

// TestReplicasSIGKILL runs two and three replicas of a projection over pgstore.Projections as
// processes, killing them with SIGKILL and restarting them on a random schedule while events
// are appended (the seed is logged; ANNALS_SEED replays it): the read model equals one pass
// over the log, and the moves of the checkpoint committed with it form one chain that never
// moves backwards, under lease tokens that never go back.
func TestReplicasSIGKILL(t *testing.T) {
	for _, n := range []int{2, 3} {
		t.Run(fmt.Sprintf("%d-replicas", n), func(t *testing.T) {
			s, setup := killSetup(t, n)
			rng := replicatest.Seed(t)
			p := pgstore.NewProjections(s, &pgstore.ProjectionsOptions{Setup: killedSetup})
			st := replicatest.Schedule(t, rng, replicatest.Options{
				Replicas: n, Rounds: setup.Rounds, Start: replicatest.ChildStart(t, rng, setup, roleKilled),
				Write:    replicatest.Deposits(s),
				Progress: func() (uint64, error) { return p.Checkpoint(context.Background(), killedProjection, 0) },
			})
			counts := map[string]int{}
			var moves []replicatest.Move
			err := p.Read(t.Context(), killedProjection, func(schema string) error {
				rows, err := s.Pool().Query(t.Context(), "SELECT stream, n FROM "+schema+".counts")
				if err != nil {
					return err
				}
				var stream string
				var n int
				if _, err := pgx.ForEachRow(rows, []any{&stream, &n}, func() error { counts[stream] = n; return nil }); err != nil {
					return err
				}
				rows, err = s.Pool().Query(t.Context(), `SELECT "from", "to", holder, token::text FROM `+schema+".moves ORDER BY id")
				if err != nil {
					return err
				}
				var m replicatest.Move
				var token string
				_, err = pgx.ForEachRow(rows, []any{&m.From, &m.To, &m.Holder, &token}, func() error {
					if _, err := fmt.Sscan(token, &m.Token); err != nil {
						return err
					}
					moves = append(moves, m)
					return nil
				})
				return err
			})
			if err != nil {
				t.Fatal(err)
			}
			if want := replicatest.OnePass(t, s); !cmp.Equal(counts, want) {
				t.Fatalf("read model differs from one pass over the log (-want +got):\n%s", cmp.Diff(want, counts))
			}
			holders := replicatest.CheckChain(t, moves, st.Head, true)
			t.Logf("%v; %d commits by %d holders", st, len(moves), holders)
		})
	}
}

// TestReplicasSIGKILLProcess runs three replicas of a process manager over the store as
// processes, killing them with SIGKILL and restarting them on a random schedule while orders
// are placed: every command takes effect once, every input is journaled once, and the
// manager's checkpoints never move backwards.
func TestReplicasSIGKILLProcess(t *testing.T) {
	s, setup := killSetup(t, 3)
	replicatest.Process(t, s, setup)
}
