package projection_test

import (
	"context"
	"strings"
	"sync"
	"testing"

	"github.com/annalsdb/annals"
	"github.com/annalsdb/annals/internal/teststores"
	"github.com/annalsdb/annals/projection"
)

// external is a read model outside any Store: a set keyed by event ID, so applying an event
// again (at-least-once) changes nothing.
type external struct {
	mu   sync.Mutex
	seen map[uint64]map[annals.UUID]bool // generation → ids
}

func (e *external) count(gen uint64) int {
	e.mu.Lock()
	defer e.mu.Unlock()
	return len(e.seen[gen])
}

type extTx struct {
	e   *external
	gen uint64
}

func TestCheckpointsAtLeastOnce(t *testing.T) {
	teststores.Each(t, func(t *testing.T, s annals.Store) {
		ext := &external{seen: map[uint64]map[annals.UUID]bool{}}
		newStore := func() *projection.Checkpoints[extTx] {
			return projection.NewCheckpoints(s, &projection.CheckpointsOptions[extTx]{
				Tx: func(_ string, gen uint64) extTx { return extTx{ext, gen} },
				Drop: func(_ context.Context, _ string, gen uint64) error {
					ext.mu.Lock()
					delete(ext.seen, gen)
					ext.mu.Unlock()
					return nil
				},
			})
		}
		var applied sync.Map // id → times applied
		handle := func(_ context.Context, tx extTx, ev annals.RecordedEvent) error {
			n, _ := applied.LoadOrStore(ev.ID, new(int))
			*n.(*int)++
			tx.e.mu.Lock()
			defer tx.e.mu.Unlock()
			if tx.e.seen[tx.gen] == nil {
				tx.e.seen[tx.gen] = map[annals.UUID]bool{}
			}
			tx.e.seen[tx.gen][ev.ID] = true
			return nil
		}
		p := projection.Projection[extTx]{Name: "ext", Handle: handle}
		head := appendBatches(t, s, streams("order", 3), "Placed", 500)
		cps := newStore()
		r, err := projection.NewRunner(s, cps, p, &projection.RunnerOptions{MaxBatch: 50})
		if err != nil {
			t.Fatal(err)
		}
		stop := start(t, r)
		if err := r.WaitFor(waitCtx(t), head); err != nil {
			t.Fatal(err)
		}
		stop()
		// The checkpoint is in the event store: a new store value (a restarted process) finds it.
		// It may lie past head: a batch that ends with the runner's own checkpoint events
		// (appended while it caught up, never applied) is committed up to its last event.
		cp, err := newStore().Checkpoint(context.Background(), "ext", 0)
		if last := lastPosition(t, s); err != nil || cp < head || cp > last {
			t.Fatalf("stored checkpoint %d, %v; want %d to %d", cp, err, head, last)
		}
		more := appendN(t, s, streams("order", 3), "Placed", 20)
		r2, _ := projection.NewRunner(s, newStore(), p, nil)
		start(t, r2)
		if err := r2.WaitFor(waitCtx(t), more); err != nil {
			t.Fatal(err)
		}
		if got, want := ext.count(0), 520; got != want {
			t.Fatalf("read model holds %d events, want %d", got, want)
		}
		// Checkpoint events are never handed to handlers.
		for ev := range s.ReadAll(context.Background(), nil) {
			if _, ok := applied.Load(ev.ID); ok && strings.HasPrefix(ev.Stream, projection.CheckpointStreamPrefix) {
				t.Fatalf("checkpoint event %d of %s was handed to the handler", ev.Position, ev.Stream)
			}
		}
		// A rebuild works through generations in the event store too.
		if err := r2.Rebuild(waitCtx(t), nil); err != nil {
			t.Fatal(err)
		}
		if gen, _ := newStore().Generation(context.Background(), "ext"); gen != 1 {
			t.Fatalf("generation %d, want 1", gen)
		}
		if ext.count(1) != 520 || ext.count(0) != 0 {
			t.Fatalf("after rebuild: generation 1 holds %d, generation 0 %d", ext.count(1), ext.count(0))
		}
	})
}

// Two runners over Checkpoints and no filter must not feed on each other's checkpoints.
func TestCheckpointsDoNotFeedEachOther(t *testing.T) {
	teststores.Each(t, func(t *testing.T, s annals.Store) {
		var runners []*projection.Runner[struct{}]
		for _, name := range []string{"a", "b"} {
			r, err := projection.NewRunner(s, projection.NewCheckpoints[struct{}](s, nil), projection.Projection[struct{}]{
				Name: name, Handle: func(context.Context, struct{}, annals.RecordedEvent) error { return nil },
			}, nil)
			if err != nil {
				t.Fatal(err)
			}
			start(t, r)
			runners = append(runners, r)
		}
		ctx := waitCtx(t)
		for range 5 {
			pos := appendN(t, s, []string{"x-1"}, "X", 1)
			for _, r := range runners {
				if err := r.WaitFor(ctx, pos); err != nil {
					t.Fatal(err)
				}
			}
		}
		head := lastPosition(t, s)
		for _, r := range runners {
			if err := r.WaitFor(ctx, head); err != nil {
				t.Fatal(err)
			}
		}
		// Having seen only checkpoint events since, neither runner wrote another checkpoint.
		if again := lastPosition(t, s); again != head {
			t.Fatalf("head moved from %d to %d with no user append", head, again)
		}
	})
}

func lastPosition(t *testing.T, s annals.Store) uint64 {
	t.Helper()
	for ev, err := range s.ReadAll(context.Background(), &annals.ReadOptions{Backwards: true, From: annals.End, Limit: 1}) {
		if err != nil {
			t.Fatal(err)
		}
		return ev.Position
	}
	return 0
}
