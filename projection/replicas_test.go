package projection_test

import (
	"context"
	"errors"
	"math/rand/v2"
	"sync"
	"testing"
	"time"

	"github.com/annalsdb/annals"
	"github.com/annalsdb/annals/internal/teststores"
	"github.com/annalsdb/annals/projection"
	"github.com/annalsdb/annals/supervisor"
)

// TestTwoRunnersApplyEachEventOnce is the double-apply reproduction: two runners of one
// projection over one Memory (two replicas of a service), 100 events, one counter. The read
// model counts 100, and neither runner stops: with leases one works and the other stands by;
// without them (NoLease) both work and the compare-and-set checkpoints keep the count.
func TestTwoRunnersApplyEachEventOnce(t *testing.T) {
	for _, noLease := range []bool{false, true} {
		t.Run(map[bool]string{false: "lease", true: "no-lease"}[noLease], func(t *testing.T) {
			twoRunnersApplyEachEventOnce(t, noLease)
		})
	}
}

func twoRunnersApplyEachEventOnce(t *testing.T, noLease bool) {
	teststores.Each(t, func(t *testing.T, s annals.Store) {
		accts := streams("acct", 3)
		appendN(t, s, accts, "Deposited", 50)
		m := projection.NewMemory(newCounts)
		opts := &projection.RunnerOptions{MaxBatch: 7, Supervision: supervisor.Policy{NoLease: noLease}}
		a := newCountRunner(t, s, m, nil, opts)
		b := newCountRunner(t, s, m, nil, opts)
		stopA, stopB := start(t, a), start(t, b)
		head := appendN(t, s, accts, "Deposited", 50)
		ctx := waitCtx(t)
		for _, r := range []*projection.Runner[*counts]{a, b} {
			if err := r.WaitFor(ctx, head); err != nil {
				t.Fatal(err)
			}
		}
		live := 0
		for _, r := range []*projection.Runner[*counts]{a, b} {
			st := waitState(t, r, "live or standing by, with no error", func(st projection.Status) bool {
				return (st.State == projection.StateLive || !noLease && st.State == projection.StateStandingBy) && st.LastError == nil
			})
			if st.State == projection.StateLive {
				live++
				if !noLease && st.Supervisor.Lease.Token == 0 {
					t.Fatalf("the live runner holds no lease: %+v", st.Supervisor)
				}
			} else if st.Supervisor.Other.Holder == "" || st.Supervisor.Other.Holder == st.Supervisor.Holder {
				t.Fatalf("the standing-by runner does not say who works: %+v", st.Supervisor)
			}
		}
		if !noLease && live != 1 {
			t.Fatalf("%d runners live under one lease", live)
		}
		got, cp := readCounts(m, "counts")
		if got.total != 100 || cp != head {
			t.Fatalf("two runners: counter %d at checkpoint %d, want 100 at %d", got.total, cp, head)
		}
		compareCounts(t, got, expected(t, s, nil))
		for _, stop := range []func() error{stopA, stopB} {
			if err := stop(); !errors.Is(err, context.Canceled) {
				t.Fatalf("Run: %v, want context.Canceled", err)
			}
		}
	})
}

// checkConflict fails the test unless err is the refusal of an Update that continued from
// expected while the store held actual.
func checkConflict(t *testing.T, err error, name string, gen, expected, actual uint64) {
	t.Helper()
	if !errors.Is(err, projection.ErrCheckpointMoved) {
		t.Fatalf("stale Update: %v, want ErrCheckpointMoved", err)
	}
	ce, ok := errors.AsType[*projection.CheckpointConflictError](err)
	want := projection.CheckpointConflictError{Projection: name, Generation: gen, Expected: expected, Actual: actual}
	if !ok || *ce != want {
		t.Fatalf("stale Update: %#v, want %#v", ce, want)
	}
}

// A stale Update of Memory is refused with the typed error, without calling fn, and changes
// nothing; a checkpoint never moves backwards.
func TestMemoryUpdateIsCompareAndSet(t *testing.T) {
	ctx := context.Background()
	m := projection.NewMemory(newCounts)
	add := func(c *counts) error { c.total++; return nil }
	if err := m.Update(ctx, "p", 0, 0, 5, add); err != nil {
		t.Fatal(err)
	}
	called := false
	err := m.Update(ctx, "p", 0, 0, 7, func(c *counts) error { called = true; return add(c) })
	checkConflict(t, err, "p", 0, 0, 5)
	if called {
		t.Error("a refused Update called fn")
	}
	if err := m.Update(ctx, "p", 0, 5, 3, add); !errors.Is(err, projection.ErrInvalid) {
		t.Fatalf("Update from 5 to 3: %v, want ErrInvalid", err)
	}
	checkConflict(t, m.Update(ctx, "p", 0, 3, 9, add), "p", 0, 3, 5)
	// A generation that does not exist holds checkpoint 0.
	checkConflict(t, m.Update(ctx, "p", 1, 5, 9, add), "p", 1, 5, 0)
	if got, cp := readCounts(m, "p"); got.total != 1 || cp != 5 {
		t.Fatalf("after refused updates: total %d at checkpoint %d, want 1 at 5", got.total, cp)
	}
	if cp, _ := m.Checkpoint(ctx, "p", 1); cp != 0 {
		t.Fatalf("a refused Update left generation 1 at checkpoint %d", cp)
	}
	if err := m.Update(ctx, "p", 0, 5, 5, add); err != nil {
		t.Fatalf("Update from 5 to 5: %v", err)
	}
}

// A stale Update of Checkpoints is refused with the typed error and does not move the
// checkpoint; when another writer appends between its read and its append, fn has run but
// the checkpoint is still refused.
func TestCheckpointsUpdateIsCompareAndSet(t *testing.T) {
	teststores.Each(t, func(t *testing.T, s annals.Store) {
		ctx := context.Background()
		a := projection.NewCheckpoints[int](s, nil)
		b := projection.NewCheckpoints[int](s, nil)
		nop := func(int) error { return nil }
		if err := a.Update(ctx, "p", 0, 0, 5, nop); err != nil {
			t.Fatal(err)
		}
		called := false
		checkConflict(t, b.Update(ctx, "p", 0, 0, 7, func(int) error { called = true; return nil }), "p", 0, 0, 5)
		if called {
			t.Error("a refused Update called fn")
		}
		if err := b.Update(ctx, "p", 0, 5, 3, nop); !errors.Is(err, projection.ErrInvalid) {
			t.Fatalf("Update from 5 to 3: %v, want ErrInvalid", err)
		}
		// b commits while a's fn runs: a's append finds the stream moved.
		err := a.Update(ctx, "p", 0, 5, 9, func(int) error { return b.Update(ctx, "p", 0, 5, 8, nop) })
		checkConflict(t, err, "p", 0, 5, 8)
		if cp, err := a.Checkpoint(ctx, "p", 0); err != nil || cp != 8 {
			t.Fatalf("checkpoint %d (%v), want 8", cp, err)
		}
	})
}

// recording wraps a Store and records the checkpoint moves of the Updates that committed, in
// commit order (fn runs under Memory's lock).
type recording struct {
	projection.Store[*counts]
	mu    sync.Mutex
	moves [][2]uint64
}

func (r *recording) Update(ctx context.Context, name string, gen, from, to uint64, fn func(*counts) error) error {
	return r.Store.Update(ctx, name, gen, from, to, func(c *counts) error {
		if err := fn(c); err != nil {
			return err
		}
		r.mu.Lock()
		r.moves = append(r.moves, [2]uint64{from, to})
		r.mu.Unlock()
		return nil
	})
}

// TestThreeRunnersWithRestarts runs three runners of one projection over one Memory while
// events are appended, stopping and restarting them on a random schedule (the seed is
// printed): the read model equals one pass over the log, and the committed checkpoints form
// one chain that never moves backwards.
func TestThreeRunnersWithRestarts(t *testing.T) {
	seed := uint64(time.Now().UnixNano())
	t.Logf("seed %d", seed)
	rng := rand.New(rand.NewPCG(seed, 0))
	teststores.Each(t, func(t *testing.T, s annals.Store) {
		m := projection.NewMemory(newCounts)
		rec := &recording{Store: m}
		newRunner := func() *projection.Runner[*counts] {
			r, err := projection.NewRunner(s, rec, projection.Projection[*counts]{Name: "counts", Handle: countHandler}, &projection.RunnerOptions{MaxBatch: 1 + rng.IntN(20),
				Supervision: supervisor.Policy{Keeper: m, TTL: 100 * time.Millisecond}})
			if err != nil {
				t.Fatal(err)
			}
			return r
		}
		runners := make([]*projection.Runner[*counts], 3)
		stops := make([]func() error, 3)
		for i := range runners {
			runners[i] = newRunner()
			stops[i] = start(t, runners[i])
		}
		accts := streams("acct", 5)
		var head uint64
		for range 30 {
			head = appendN(t, s, accts, "Deposited", 1+rng.IntN(10))
			i := rng.IntN(3)
			if err := stops[i](); !errors.Is(err, context.Canceled) {
				t.Fatalf("runner %d: Run: %v, want context.Canceled", i, err)
			}
			if rng.IntN(2) == 0 {
				runners[i] = newRunner() // a replica that restarts
			}
			stops[i] = start(t, runners[i])
		}
		ctx := waitCtx(t)
		for _, r := range runners {
			if err := r.WaitFor(ctx, head); err != nil {
				t.Fatal(err)
			}
		}
		got, cp := readCounts(m, "counts")
		compareCounts(t, got, expected(t, s, nil))
		if cp != head {
			t.Fatalf("checkpoint %d, want %d", cp, head)
		}
		rec.mu.Lock()
		defer rec.mu.Unlock()
		var at uint64
		for i, mv := range rec.moves {
			// A runner that takes the lease commits an empty update (from = to) first.
			if mv[0] != at || mv[1] < mv[0] {
				t.Fatalf("commit %d moved the checkpoint %d → %d, with the checkpoint at %d", i, mv[0], mv[1], at)
			}
			at = mv[1]
		}
		t.Logf("%d commits", len(rec.moves))
	})
}

// TestRebuildOnAnotherReplica rebuilds on one of two runners: the other, still on the old
// generation, finds its checkpoint gone with the generation, reads the active one again and
// continues on it.
func TestRebuildOnAnotherReplica(t *testing.T) {
	teststores.Each(t, func(t *testing.T, s annals.Store) {
		accts := streams("acct", 3)
		appendN(t, s, accts, "Deposited", 30)
		m := projection.NewMemory(newCounts)
		a := newCountRunner(t, s, m, nil, &projection.RunnerOptions{MaxBatch: 5})
		b := newCountRunner(t, s, m, nil, &projection.RunnerOptions{MaxBatch: 5})
		start(t, a)
		start(t, b)
		// One of them works, the other stands by; rebuild on either.
		ctx := waitCtx(t)
		head := appendN(t, s, accts, "Deposited", 10)
		if err := a.WaitFor(ctx, head); err != nil {
			t.Fatal(err)
		}
		if err := b.Rebuild(ctx, nil); err != nil {
			t.Fatal(err)
		}
		head = appendN(t, s, accts, "Deposited", 10)
		for _, r := range []*projection.Runner[*counts]{a, b} {
			if err := r.WaitFor(ctx, head); err != nil {
				t.Fatal(err)
			}
			st := waitState(t, r, "live or standing by on generation 1", func(st projection.Status) bool {
				return st.Generation == 1 && (st.State == projection.StateLive || st.State == projection.StateStandingBy)
			})
			if st.LastError != nil {
				t.Fatalf("status %+v", st)
			}
		}
		got, cp := readCounts(m, "counts")
		compareCounts(t, got, expected(t, s, nil))
		if cp != head {
			t.Fatalf("checkpoint %d, want %d", cp, head)
		}
	})
}

// TestFailureResolvedByAnotherReplica: a runner that failed on an event and stopped working
// (its Run ended; the same holds when it loses its lease while parked) does not park again on
// that event when it works again after another runner of the projection applied it: it goes on
// from the stored checkpoint, past the event, and applies what was appended since.
func TestFailureResolvedByAnotherReplica(t *testing.T) {
	s := newMem(t)
	h := &failing{}
	h.fail.Store(true)
	m := projection.NewMemory(func() *cloneCounts { return &cloneCounts{counts: *newCounts()} })
	newRunner := func() *projection.Runner[*cloneCounts] {
		r, err := projection.NewRunner(s, m, projection.Projection[*cloneCounts]{Name: "p", Handle: h.handle},
			&projection.RunnerOptions{Supervision: supervisor.Policy{TTL: 200 * time.Millisecond}})
		if err != nil {
			t.Fatal(err)
		}
		return r
	}
	appendN(t, s, []string{"cart-1"}, "Good", 5)
	if _, err := s.Append(context.Background(), "cart-1", annals.Any, annals.Event{Type: "Bad", Data: []byte(`{}`)}); err != nil {
		t.Fatal(err)
	}
	head := appendN(t, s, []string{"cart-1"}, "Good", 5)
	a := newRunner()
	stopA := start(t, a)
	waitState(t, a, "a failed", func(st projection.Status) bool { return st.State == projection.StateFailed })
	if err := stopA(); !errors.Is(err, context.Canceled) {
		t.Fatalf("Run: %v", err)
	}
	h.fail.Store(false) // the handler is fixed: the other replica, deployed with it, applies Bad
	b := newRunner()
	stopB := start(t, b)
	if err := b.WaitFor(waitCtx(t), head); err != nil {
		t.Fatal(err)
	}
	if err := stopB(); !errors.Is(err, context.Canceled) {
		t.Fatalf("Run: %v", err)
	}
	start(t, a)
	more := appendN(t, s, []string{"cart-1"}, "Good", 5)
	if err := a.WaitFor(waitCtx(t), more); err != nil {
		st, _ := a.Status(context.Background())
		t.Fatalf("a working again: WaitFor: %v (state %v, failed at %v)", err, st.State, st.FailedEvent)
	}
	var total int
	m.Read("p", func(c *cloneCounts, _ uint64) { total = c.total })
	if total != 16 {
		t.Fatalf("%d events applied, want 16, each once", total)
	}
}
