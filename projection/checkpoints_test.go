package projection_test

import (
	"context"
	"errors"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/annalsdb/annals"
	"github.com/annalsdb/annals/internal/teststores"
	"github.com/annalsdb/annals/projection"
	"github.com/annalsdb/annals/supervisor"
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
		// id → times applied; atomic, as a rebuild applies concurrently with Run
		var applied sync.Map
		handle := func(_ context.Context, tx extTx, ev annals.RecordedEvent) error {
			n, _ := applied.LoadOrStore(ev.ID, new(atomic.Int64))
			n.(*atomic.Int64).Add(1)
			tx.e.mu.Lock()
			defer tx.e.mu.Unlock()
			if tx.e.seen[tx.gen] == nil {
				tx.e.seen[tx.gen] = map[annals.UUID]bool{}
			}
			tx.e.seen[tx.gen][ev.ID] = true
			return nil
		}
		p := projection.Projection[extTx]{Name: "ext", Handle: handle}
		times := func(id annals.UUID) int {
			n, ok := applied.Load(id)
			if !ok {
				return 0
			}
			return int(n.(*atomic.Int64).Load())
		}
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
		// (It may lie past head: the batch may end with checkpoint events, which count.)
		cp, err := newStore().Checkpoint(context.Background(), "ext", 0)
		if err != nil || cp < head {
			t.Fatalf("stored checkpoint %d, %v; want %d or after", cp, err, head)
		}

		// A crash between the read model's writes and the checkpoint: the handler has applied
		// a batch, its checkpoint is never written.
		more := appendN(t, s, streams("order", 3), "Placed", 20)
		var fresh []annals.UUID
		for ev, err := range s.ReadAll(context.Background(), &annals.ReadOptions{From: head + 1, Filter: &annals.Filter{StreamPrefixes: []string{"order-"}}}) {
			if err != nil {
				t.Fatal(err)
			}
			fresh = append(fresh, ev.ID)
		}
		crashing := &crashBeforeCheckpoint{Store: s}
		crashing.armed.Store(true)
		rc, _ := projection.NewRunner(s, projection.NewCheckpoints(crashing, &projection.CheckpointsOptions[extTx]{
			Tx: func(_ string, gen uint64) extTx { return extTx{ext, gen} },
		}), p, &projection.RunnerOptions{Supervision: supervisor.Policy{NoLease: true, Permanent: func(err error) bool { return errors.Is(err, errCrash) }}})
		if err := rc.Run(waitCtx(t)); !errors.Is(err, errCrash) {
			t.Fatalf("Run with a crash before the checkpoint: %v, want the crash", err)
		}
		before := make([]int, len(fresh))
		for i, id := range fresh {
			before[i] = times(id)
		}
		if before[0] != 1 {
			t.Fatalf("the crashed batch did not reach the read model: first new event applied %d times", before[0])
		}
		if after, _ := newStore().Checkpoint(context.Background(), "ext", 0); after != cp {
			t.Fatalf("checkpoint %d after the crash, want %d (not written)", after, cp)
		}

		// The restarted process applies the crashed batch again: at least once.
		r2, _ := projection.NewRunner(s, newStore(), p, nil)
		start(t, r2)
		if err := r2.WaitFor(waitCtx(t), more); err != nil {
			t.Fatal(err)
		}
		for i, id := range fresh {
			if got, want := times(id), before[i]+1; got != want {
				t.Errorf("new event %d applied %d times, want %d (%d before the restart)", i, got, want, before[i])
			}
		}
		var once, twice int
		applied.Range(func(_, n any) bool {
			switch n.(*atomic.Int64).Load() {
			case 1:
				once++
			case 2:
				twice++
			default:
				t.Errorf("an event applied %d times", n.(*atomic.Int64).Load())
			}
			return true
		})
		if once+twice != 520 || twice == 0 {
			t.Errorf("%d events applied once, %d twice; want 520 in all, some twice", once, twice)
		}
		// The idempotent read model holds each event once.
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

var errCrash = errors.New("crash before the checkpoint")

// crashBeforeCheckpoint fails the next append of a checkpoint, as a process that dies after
// its handler wrote the read model and before the checkpoint was appended.
type crashBeforeCheckpoint struct {
	annals.Store
	armed atomic.Bool
}

func (c *crashBeforeCheckpoint) Append(ctx context.Context, stream string, expected annals.ExpectedRevision, events ...annals.Event) (annals.AppendResult, error) {
	if strings.HasPrefix(stream, projection.CheckpointStreamPrefix) && c.armed.CompareAndSwap(true, false) {
		return annals.AppendResult{}, errCrash
	}
	return c.Store.Append(ctx, stream, expected, events...)
}

// Each checkpoint stream is bounded to its latest event: reading it costs one event however
// many batches were committed, and the log keeps them all.
func TestCheckpointStreamsHoldTheLatestOnly(t *testing.T) {
	teststores.Each(t, func(t *testing.T, s annals.Store) {
		cps := projection.NewCheckpoints[struct{}](s, nil)
		r, err := projection.NewRunner(s, cps, projection.Projection[struct{}]{
			Name: "bounded", Filter: &annals.Filter{Categories: []string{"x"}},
			Handle: func(context.Context, struct{}, annals.RecordedEvent) error { return nil },
		}, &projection.RunnerOptions{MaxBatch: 1})
		if err != nil {
			t.Fatal(err)
		}
		start(t, r)
		ctx := waitCtx(t)
		var pos uint64
		for range 5 {
			pos = appendN(t, s, []string{"x-1"}, "X", 1)
			if err := r.WaitFor(ctx, pos); err != nil {
				t.Fatal(err)
			}
		}
		if err := r.Rebuild(ctx, nil); err != nil { // writes the generations' streams too
			t.Fatal(err)
		}
		for _, stream := range []string{projection.CheckpointStreamPrefix + "bounded@0", projection.CheckpointStreamPrefix + "bounded@1", projection.CheckpointStreamPrefix + "bounded"} {
			meta, _, err := s.GetMetadata(ctx, stream)
			if err != nil || meta.MaxCount != 1 {
				t.Errorf("%s: metadata %+v, %v; want maxCount 1", stream, meta, err)
			}
			var n int
			for _, err := range s.ReadStream(ctx, stream, nil) {
				if err != nil {
					t.Fatalf("%s: %v", stream, err)
				}
				n++
			}
			if n != 1 {
				t.Errorf("%s reads as %d events, want the latest only", stream, n)
			}
		}
		if cp, err := cps.Checkpoint(ctx, "bounded", 1); err != nil || cp != pos {
			t.Errorf("checkpoint of generation 1: %d, %v; want %d", cp, err, pos)
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
