package replicatest

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"math/rand/v2"
	"strconv"
	"testing"
	"time"

	"github.com/annalsdb/annals"
	"github.com/annalsdb/annals/lease"
	"github.com/annalsdb/annals/projection"
	"github.com/annalsdb/annals/supervisor"
	"github.com/google/go-cmp/cmp"
)

// TTL is the time to live of the replicas' leases: short, so that a takeover after a crash
// comes quickly.
const TTL = 200 * time.Millisecond

// Policy returns the supervision of a replica named holder with keeper k.
func Policy(k lease.Keeper, holder string) supervisor.Policy {
	return supervisor.Policy{Keeper: k, Holder: holder, TTL: TTL, MinBackoff: 10 * time.Millisecond, MaxBackoff: time.Second}
}

// Setup says how a scenario runs its replicas.
type Setup struct {
	// Replicas is how many replicas run; Rounds how many rounds the schedule runs (fewer
	// with -short).
	Replicas, Rounds int
	// Keeper keeps the leases of replicas in process.
	Keeper lease.Keeper
	// Child, when not empty, names the test that runs a replica in a child process (it calls
	// [RunChild]); the replicas then run as child processes, killed with SIGKILL, and Env is
	// added to their environment.
	Child string
	Env   []string
}

func (s Setup) rounds() int {
	if testing.Short() {
		return max(s.Rounds/3, 3)
	}
	return s.Rounds
}

// Accounts are the streams the writer of the projection scenarios appends to.
const accounts = 5

// ProjectionFilter selects the events the projection scenarios count.
var ProjectionFilter = &annals.Filter{Categories: []string{"acct"}}

// Deposits returns a Write (see [Options]) that appends bursts of Deposited events to acct-0 … acct-4.
func Deposits(events annals.Appender) func(rng *rand.Rand) (uint64, error) {
	return func(rng *rand.Rand) (uint64, error) {
		var last uint64
		for range 1 + rng.IntN(25) {
			stream := "acct-" + strconv.Itoa(rng.IntN(accounts))
			n := 1 + rng.IntN(3)
			evs := make([]annals.Event, n)
			for i := range evs {
				evs[i] = annals.Event{Type: "Deposited", Data: []byte(`{}`)}
			}
			res, err := events.Append(context.Background(), stream, annals.Any, evs...)
			if err != nil {
				return 0, fmt.Errorf("append: %w", err)
			}
			last = res.Position
		}
		return last, nil
	}
}

// OnePass returns the count of the events of each stream that ProjectionFilter selects, and
// "$total" for all of them: the read model of one clean pass over the log.
func OnePass(t testing.TB, events annals.Reader) map[string]int {
	t.Helper()
	want := map[string]int{}
	for ev, err := range events.ReadAll(context.Background(), &annals.ReadOptions{Filter: ProjectionFilter}) {
		if err != nil {
			t.Fatal(err)
		}
		want[ev.Stream]++
		want["$total"]++
	}
	return want
}

// counts is the read model of [ProjectionMemory]: a counter per stream and their total, and
// the checkpoint moves committed with it.
type counts struct {
	per   map[string]int
	moves []Move
}

func newCounts() *counts { return &counts{per: map[string]int{}} }

// Clone makes Memory's Updates atomic: a failed one leaves the model (and its moves) as it was.
func (c *counts) Clone() *counts {
	return &counts{per: maps.Clone(c.per), moves: append([]Move(nil), c.moves...)}
}

// recorder records, in the read model, the checkpoint move of every Update with the lease
// of its context: the move commits with the batch, or not at all.
type recorder struct {
	projection.Store[*counts]
}

func (r recorder) Update(ctx context.Context, name string, gen, from, to uint64, fn func(*counts) error) error {
	l, _ := lease.FromContext(ctx)
	return r.Store.Update(ctx, name, gen, from, to, func(c *counts) error {
		if err := fn(c); err != nil {
			return err
		}
		c.moves = append(c.moves, Move{From: from, To: to, Holder: l.Holder, Token: l.Token})
		return nil
	})
}

// ProjectionMemory runs replicas of a counting projection over events, each with its own
// runner, sharing one projection.Memory (which keeps their leases), and kills and restarts
// them while events are appended (see [Schedule]). The read model must equal one pass over
// the log, and every Update that committed must continue from the checkpoint the one before
// it left, under a lease token no older than that one's.
func ProjectionMemory(t *testing.T, events annals.Store, setup Setup) {
	rng := Seed(t)
	m := projection.NewMemory(newCounts)
	target := recorder{m}
	const name = "counts"
	p := projection.Projection[*counts]{Name: name, Filter: ProjectionFilter, Handle: func(_ context.Context, c *counts, ev annals.RecordedEvent) error {
		c.per[ev.Stream]++
		c.per["$total"]++
		return nil
	}}
	read := func() (c *counts, cp uint64) {
		m.Read(name, func(model *counts, checkpoint uint64) { c, cp = model.Clone(), checkpoint })
		return c, cp
	}
	st := Schedule(t, rng, Options{
		Replicas: setup.Replicas, Rounds: setup.rounds(),
		Start: InProcess(m, func(holder string, k lease.Keeper) (Runner, error) {
			return projection.NewRunner(events, target, p, &projection.RunnerOptions{MaxBatch: 1 + rng.IntN(20), Supervision: Policy(k, holder)})
		}),
		Write:    Deposits(events),
		Progress: func() (uint64, error) { _, cp := read(); return cp, nil },
		Holder:   holderOf(m, projection.LeasePrefix+name),
	})
	got, cp := read()
	if want := OnePass(t, events); !cmp.Equal(got.per, want) {
		t.Fatalf("read model differs from one pass over the log (-want +got):\n%s", cmp.Diff(want, got.per))
	}
	if cp != st.Head {
		t.Fatalf("checkpoint %d, want %d", cp, st.Head)
	}
	holders := CheckChain(t, got.moves, st.Head, true)
	t.Logf("%v; %d commits by %d holders", st, len(got.moves), holders)
}

// holderOf returns a function that returns the holder of the lease name that k keeps (nil
// without a keeper).
func holderOf(k lease.Keeper, name string) func() (string, error) {
	if k == nil {
		return nil
	}
	return func() (string, error) {
		ls, err := k.Leases(context.Background(), name)
		for _, l := range ls {
			if l.Name == name {
				return l.Holder, err
			}
		}
		return "", err
	}
}

// LogProjection is the name of the projection of [ProjectionLog].
const LogProjection = "applied"

// AppliedStream is the stream where the projection of [ProjectionLog] records that it applied
// the event id.
func AppliedStream(id annals.UUID) string { return "applied-" + id.String() }

type appliedData struct {
	Stream string `json:"stream"`
}

// NewLogRunner returns a runner of the projection of [ProjectionLog] over events, for the
// replica holder with keeper k: its checkpoints are projection.Checkpoints in events, and its
// read model lives in the log too, one stream per event applied ([AppliedStream]), created
// with the expected revision NoStream so that an event applied again (at-least-once, after
// a crash) changes nothing.
func NewLogRunner(events annals.Store, k lease.Keeper, holder string, maxBatch int) (*projection.Runner[struct{}], error) {
	p := projection.Projection[struct{}]{Name: LogProjection, Filter: ProjectionFilter, Handle: func(ctx context.Context, _ struct{}, ev annals.RecordedEvent) error {
		data, _ := json.Marshal(appliedData{Stream: ev.Stream})
		_, err := events.Append(ctx, AppliedStream(ev.ID), annals.NoStream, annals.Event{Type: "Applied", Data: data})
		if errors.Is(err, annals.ErrWrongExpectedVersion) {
			return nil // applied before
		}
		return err
	}}
	return projection.NewRunner(events, projection.NewCheckpoints[struct{}](events, nil), p, &projection.RunnerOptions{MaxBatch: maxBatch, Supervision: Policy(k, holder)})
}

// ProjectionLog runs replicas of a projection whose checkpoints (projection.Checkpoints) and
// read model ([NewLogRunner]) live in the event store, the way replicas that run in separate
// processes share a read model through `annals serve`, and kills and restarts them while
// events are appended (see [Schedule]): in process, over setup.Keeper, or as child processes
// (setup.Child). The read model must hold each event of the log once, and the checkpoints the
// log records must never move backwards nor be written under a lease token older than the
// one before.
func ProjectionLog(t *testing.T, events annals.Store, setup Setup) {
	rng := Seed(t)
	var start Start
	if setup.Child != "" {
		start = ChildStart(t, rng, setup, RoleLogProjection)
	} else {
		start = InProcess(setup.Keeper, func(holder string, k lease.Keeper) (Runner, error) {
			return NewLogRunner(events, k, holder, 1+rng.IntN(20))
		})
	}
	cps := projection.NewCheckpoints[struct{}](events, nil)
	st := Schedule(t, rng, Options{
		Replicas: setup.Replicas, Rounds: setup.rounds(), Start: start, Write: Deposits(events),
		Holder:   holderOf(setup.Keeper, projection.LeasePrefix+LogProjection),
		Progress: func() (uint64, error) { return cps.Checkpoint(context.Background(), LogProjection, 0) },
	})
	got := map[string]int{}
	for ev, err := range events.ReadAll(context.Background(), &annals.ReadOptions{Filter: &annals.Filter{Categories: []string{"applied"}}}) {
		if err != nil {
			t.Fatal(err)
		}
		var d appliedData
		if err := json.Unmarshal(ev.Data, &d); err != nil {
			t.Fatalf("%s: %v", ev.Stream, err)
		}
		got[d.Stream]++
		got["$total"]++
	}
	for ev, err := range events.ReadAll(context.Background(), &annals.ReadOptions{Filter: ProjectionFilter}) {
		if err != nil {
			t.Fatal(err)
		}
		n := 0
		for _, err := range events.ReadStream(context.Background(), AppliedStream(ev.ID), nil) {
			if err != nil {
				t.Fatalf("event %s (%s, position %d) was never applied: %v", ev.ID, ev.Stream, ev.Position, err)
			}
			n++
		}
		if n != 1 {
			t.Fatalf("event %s applied %d times", ev.ID, n)
		}
	}
	if want := OnePass(t, events); !cmp.Equal(got, want) {
		t.Fatalf("read model differs from one pass over the log (-want +got):\n%s", cmp.Diff(want, got))
	}
	moves := CheckpointMoves(t, events, projection.CheckpointStreamPrefix+LogProjection+"@0")
	holders := CheckChain(t, moves, st.Head, false)
	t.Logf("%v; %d checkpoints written by %d holders", st, len(moves), holders)
}

// CheckpointMoves returns the checkpoints that projection.Checkpoints wrote to stream, as
// the log holds them (every one, in the order they were written), each a move from the one
// before.
func CheckpointMoves(t testing.TB, events annals.Reader, stream string) []Move {
	t.Helper()
	var moves []Move
	var at uint64
	for ev, err := range events.ReadAll(context.Background(), &annals.ReadOptions{Filter: &annals.Filter{Categories: []string{annals.Category(stream)}}}) {
		if err != nil {
			t.Fatal(err)
		}
		if ev.Stream != stream {
			continue
		}
		var d struct {
			Checkpoint uint64 `json:"checkpoint"`
			Holder     string `json:"holder"`
			Token      uint64 `json:"token"`
		}
		if err := json.Unmarshal(ev.Data, &d); err != nil {
			t.Fatalf("%s@%d: %v", ev.Stream, ev.Revision, err)
		}
		moves = append(moves, Move{From: at, To: d.Checkpoint, Holder: d.Holder, Token: d.Token})
		at = d.Checkpoint
	}
	return moves
}
