package projection_test

import (
	"context"
	"errors"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/annalsdb/annals"
	"github.com/annalsdb/annals/internal/teststores"
	"github.com/annalsdb/annals/internal/testwait"
	"github.com/annalsdb/annals/projection"
	"github.com/annalsdb/annals/supervisor"
	"github.com/google/go-cmp/cmp"
)

var cartFilter = &annals.Filter{Categories: []string{"cart"}}

func newCountRunner(t *testing.T, s annals.Store, m *projection.Memory[*counts], f *annals.Filter, opts *projection.RunnerOptions) *projection.Runner[*counts] {
	t.Helper()
	r, err := projection.NewRunner(s, m, projection.Projection[*counts]{Name: "counts", Filter: f, Handle: countHandler}, opts)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func compareCounts(t *testing.T, got counts, want *counts) {
	t.Helper()
	if diff := cmp.Diff(want.per, got.per); diff != "" || got.total != want.total {
		t.Fatalf("read model (-want +got):\n%s\ntotal got %d, want %d", diff, got.total, want.total)
	}
}

func TestCatchUpThenLive(t *testing.T) {
	teststores.Each(t, func(t *testing.T, s annals.Store) {
		appendBatches(t, s, streams("cart", 7), "Added", 3000)
		appendN(t, s, streams("user", 3), "Seen", 50)
		m := projection.NewMemory(newCounts)
		r := newCountRunner(t, s, m, cartFilter, &projection.RunnerOptions{MaxBatch: 256})
		start(t, r)
		ctx := waitCtx(t)
		head := appendN(t, s, streams("cart", 7), "Added", 1)
		if err := r.WaitFor(ctx, head); err != nil {
			t.Fatal(err)
		}
		got, cp := readCounts(m, "counts")
		compareCounts(t, got, expected(t, s, cartFilter))
		if cp != head {
			t.Fatalf("checkpoint %d, want %d", cp, head)
		}
		// Live: each new event is applied.
		for i := range 20 {
			pos := appendN(t, s, []string{"cart-live"}, "Added", 1)
			if err := r.WaitFor(ctx, pos); err != nil {
				t.Fatal(err)
			}
			if got, _ := readCounts(m, "counts"); got.per["cart-live"] != i+1 {
				t.Fatalf("after live append %d: count %d", i, got.per["cart-live"])
			}
		}
		st := waitState(t, r, "live", func(st projection.Status) bool { return st.State == projection.StateLive })
		if st.LagEvents != 0 || st.LagSeconds != 0 {
			t.Fatalf("live status %+v, want no lag", st)
		}
	})
}

func TestWaitForWithFilter(t *testing.T) {
	teststores.Each(t, func(t *testing.T, s annals.Store) {
		m := projection.NewMemory(newCounts)
		r := newCountRunner(t, s, m, cartFilter, nil)
		ctx := waitCtx(t)
		cartPos := appendN(t, s, []string{"cart-1"}, "Added", 1)
		otherPos := appendN(t, s, []string{"user-1"}, "Seen", 5)
		// Not running: the cart event is not applied, so waiting for a later position blocks.
		short, cancel := context.WithTimeout(ctx, 20*time.Millisecond)
		err := r.WaitFor(short, otherPos)
		cancel()
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("WaitFor before the runner applied the cart event: %v, want deadline exceeded", err)
		}
		// A waiter blocked before Run starts is woken by the runner's progress.
		waited := make(chan error, 1)
		go func() { waited <- r.WaitFor(ctx, otherPos) }()
		start(t, r)
		if err := <-waited; err != nil {
			t.Fatal(err)
		}
		if _, cp := readCounts(m, "counts"); cp != cartPos {
			t.Fatalf("checkpoint %d, want %d (the last matching event)", cp, cartPos)
		}
		// Waiting for a position after which only non-matching events lie returns at once.
		more := appendN(t, s, []string{"user-2"}, "Seen", 3)
		if err := r.WaitFor(ctx, more); err != nil {
			t.Fatal(err)
		}
	})
}

func TestCancelAndRestartExactlyOnce(t *testing.T) {
	teststores.Each(t, func(t *testing.T, s annals.Store) {
		m := projection.NewMemory(newCounts)
		ss := streams("cart", 5)
		appendBatches(t, s, ss, "Added", 2000)
		// Writers keep appending while the runner is cancelled and restarted several times.
		var wg sync.WaitGroup
		stopWriting := make(chan struct{})
		stopWriters := sync.OnceFunc(func() { close(stopWriting); wg.Wait() })
		t.Cleanup(stopWriters) // also when the test fails early
		wg.Go(func() {
			for {
				select {
				case <-stopWriting:
					return
				default:
				}
				if _, err := tryAppendN(s, ss, "Added", 10); err != nil {
					t.Error(err)
					return
				}
			}
		})
		for round := range 6 {
			r := newCountRunner(t, s, m, nil, &projection.RunnerOptions{MaxBatch: 64})
			stop := start(t, r)
			// Let it apply something, then cancel it in the middle of the stream.
			_, cp0 := readCounts(m, "counts")
			waitState(t, r, "progress", func(st projection.Status) bool { return st.Position > cp0 })
			if err := stop(); !errors.Is(err, context.Canceled) {
				t.Fatalf("round %d: Run returned %v, want context.Canceled", round, err)
			}
		}
		stopWriters()
		r := newCountRunner(t, s, m, nil, nil)
		start(t, r)
		head := appendN(t, s, ss, "Added", 1)
		if err := r.WaitFor(waitCtx(t), head); err != nil {
			t.Fatal(err)
		}
		got, _ := readCounts(m, "counts")
		compareCounts(t, got, expected(t, s, nil))
	})
}

// failing is a handler that fails on events of type "Bad" while fail is set; it counts the
// events it applied.
type failing struct {
	fail  atomic.Bool
	calls atomic.Int64
}

func (f *failing) handle(ctx context.Context, c *cloneCounts, ev annals.RecordedEvent) error {
	f.calls.Add(1)
	if ev.Type == "Bad" && f.fail.Load() {
		return errors.New("cannot handle Bad")
	}
	return countHandler(ctx, &c.counts, ev)
}

func (f *failing) handlePlain(ctx context.Context, c *counts, ev annals.RecordedEvent) error {
	if ev.Type == "Bad" && f.fail.Load() {
		return errors.New("cannot handle Bad")
	}
	return countHandler(ctx, c, ev)
}

func TestFailureRetrySkip(t *testing.T) {
	teststores.Each(t, func(t *testing.T, s annals.Store) {
		for _, choice := range []string{"retry", "skip"} {
			t.Run(choice, func(t *testing.T) {
				stream := "cart-" + choice
				f := &annals.Filter{StreamPrefixes: []string{stream}}
				h := &failing{}
				h.fail.Store(true)
				m := projection.NewMemory(func() *cloneCounts { return &cloneCounts{counts: *newCounts()} })
				r, err := projection.NewRunner(s, m, projection.Projection[*cloneCounts]{Name: "p", Filter: f, Handle: h.handle}, nil)
				if err != nil {
					t.Fatal(err)
				}
				appendBatches(t, s, []string{stream}, "Good", 150)
				bad, err := s.Append(context.Background(), stream, annals.Any, annals.Event{Type: "Bad", Data: []byte(`{}`)})
				if err != nil {
					t.Fatal(err)
				}
				after := appendN(t, s, []string{stream}, "Good", 10)
				start(t, r)
				st := waitState(t, r, "failed", func(st projection.Status) bool { return st.State == projection.StateFailed })
				if st.FailedEvent == nil || st.FailedEvent.Position != bad.Position || st.Position != bad.Position-1 {
					t.Fatalf("failed status %+v, want failed at %d with checkpoint %d", st, bad.Position, bad.Position-1)
				}
				if !errors.Is(st.LastError, projection.ErrFailed) || !strings.Contains(st.LastError.Error(), "cannot handle Bad") {
					t.Fatalf("last error %v", st.LastError)
				}
				// The read model holds everything before the failing event, once.
				var total int
				m.Read("p", func(c *cloneCounts, _ uint64) { total = c.total })
				if total != 150 {
					t.Fatalf("while failed: %d events applied, want 150", total)
				}
				// Read-your-writes past the failure reports it instead of waiting in vain.
				err = r.WaitFor(waitCtx(t), after)
				if he, ok := errors.AsType[*projection.HandlerError](err); !ok || he.Event.Position != bad.Position {
					t.Fatalf("WaitFor past the failure: %v", err)
				}
				if err := r.WaitFor(waitCtx(t), bad.Position-1); err != nil {
					t.Fatalf("WaitFor before the failure: %v", err)
				}
				want := 161
				if choice == "retry" {
					h.fail.Store(false)
					err = r.Retry()
				} else {
					want = 160
					err = r.Skip()
				}
				if err != nil {
					t.Fatal(err)
				}
				if err := r.WaitFor(waitCtx(t), after); err != nil {
					t.Fatal(err)
				}
				m.Read("p", func(c *cloneCounts, _ uint64) { total = c.total })
				if total != want {
					t.Fatalf("after %s: %d events applied, want %d", choice, total, want)
				}
				if err := r.Retry(); !errors.Is(err, projection.ErrNotFailed) {
					t.Fatalf("Retry when not failed: %v", err)
				}
				if st, _ := r.Status(context.Background()); st.LastError != nil || st.FailedEvent != nil {
					t.Fatalf("status after %s: %+v", choice, st)
				}
			})
		}
	})
}

// Without a Clone method, Memory keeps the part of a failed batch before the failing event.
func TestFailureWithoutCloneKeepsEarlierEvents(t *testing.T) {
	teststores.Each(t, func(t *testing.T, s annals.Store) {
		h := &failing{}
		h.fail.Store(true)
		m := projection.NewMemory(newCounts)
		r, err := projection.NewRunner(s, m, projection.Projection[*counts]{Name: "p", Handle: h.handlePlain}, nil)
		if err != nil {
			t.Fatal(err)
		}
		appendBatches(t, s, []string{"a-1"}, "Good", 300)
		bad, _ := s.Append(context.Background(), "a-1", annals.Any, annals.Event{Type: "Bad"})
		after := appendN(t, s, []string{"a-1"}, "Good", 5)
		start(t, r)
		waitState(t, r, "failed", func(st projection.Status) bool { return st.State == projection.StateFailed })
		if got, cp := readCounts(m, "p"); got.total != 300 || cp != bad.Position-1 {
			t.Fatalf("while failed: total %d checkpoint %d, want 300 and %d", got.total, cp, bad.Position-1)
		}
		h.fail.Store(false)
		if err := r.Retry(); err != nil {
			t.Fatal(err)
		}
		if err := r.WaitFor(waitCtx(t), after); err != nil {
			t.Fatal(err)
		}
		got, _ := readCounts(m, "p")
		compareCounts(t, got, expected(t, s, nil))
	})
}

func TestStatusLag(t *testing.T) {
	teststores.Each(t, func(t *testing.T, s annals.Store) {
		m := projection.NewMemory(newCounts)
		r := newCountRunner(t, s, m, cartFilter, nil)
		first := appendN(t, s, []string{"cart-1"}, "Added", 1)
		last := appendN(t, s, []string{"cart-1", "user-1"}, "Added", 9)
		st, err := r.Status(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		if st.State != projection.StateStopped || st.Position != 0 || st.Head != last || st.LagEvents != last {
			t.Fatalf("before Run: %+v, want stopped at 0 with lag %d", st, last)
		}
		// The lag in seconds is the age of the oldest event not applied.
		var firstTime time.Time
		for ev := range s.ReadAll(context.Background(), &annals.ReadOptions{From: first, Limit: 1}) {
			firstTime = ev.Time
		}
		if max := time.Since(firstTime).Seconds(); st.LagSeconds <= 0 || st.LagSeconds > max {
			t.Fatalf("lag %.6fs, want in (0, %.6f]", st.LagSeconds, max)
		}
		start(t, r)
		if err := r.WaitFor(waitCtx(t), last); err != nil {
			t.Fatal(err)
		}
		st = waitState(t, r, "live", func(st projection.Status) bool { return st.State == projection.StateLive })
		if st.LagEvents != 0 || st.LagSeconds != 0 || st.Head != last {
			t.Fatalf("caught up: %+v", st)
		}
		// Events the filter leaves out do not count as lag.
		other := appendN(t, s, []string{"user-9"}, "Seen", 3)
		if st, _ := r.Status(context.Background()); st.Head != other || st.LagEvents != 0 {
			t.Fatalf("after non-matching events: %+v", st)
		}
	})
}

func TestRebuildWhileLive(t *testing.T) {
	teststores.Each(t, func(t *testing.T, s annals.Store) {
		m := projection.NewMemory(newCounts)
		ss := streams("cart", 4)
		appendBatches(t, s, ss, "Added", 5000)
		r := newCountRunner(t, s, m, nil, &projection.RunnerOptions{MaxBatch: 128})
		start(t, r)
		ctx := waitCtx(t)
		if err := r.WaitFor(ctx, appendN(t, s, ss, "Added", 1)); err != nil {
			t.Fatal(err)
		}
		var wg sync.WaitGroup
		stop := make(chan struct{})
		// Writers append and read their writes while the rebuild runs.
		var writes atomic.Int64
		wg.Go(func() {
			for {
				select {
				case <-stop:
					return
				default:
				}
				pos, err := tryAppendN(s, ss, "Added", 1)
				if err != nil {
					t.Error(err)
					return
				}
				if err := r.WaitFor(ctx, pos); err != nil {
					t.Errorf("WaitFor during rebuild: %v", err)
					return
				}
				writes.Add(1)
			}
		})
		// Queries keep answering from the live generation: the total never goes back.
		var queries atomic.Int64
		wg.Go(func() {
			prev := 0
			for {
				select {
				case <-stop:
					return
				default:
				}
				got, _ := readCounts(m, "counts")
				if got.total < prev {
					t.Errorf("query saw the total go back from %d to %d", prev, got.total)
					return
				}
				prev = got.total
				queries.Add(1)
			}
		})
		// The first report after a batch holds the rebuild until a write has been read back and
		// a query has answered since it: both overlap the rebuild whatever the scheduler does.
		var reports []projection.Status
		overlapped := false
		progress := func(st projection.Status) {
			reports = append(reports, st)
			if overlapped || st.State != projection.StateRebuilding || st.Position == 0 {
				return
			}
			w, q := writes.Load(), queries.Load()
			testwait.Until(t, "a write and a query during the rebuild", func() bool {
				return writes.Load() > w && queries.Load() > q
			})
			overlapped = true
		}
		if err := r.Rebuild(ctx, progress); err != nil {
			t.Fatal(err)
		}
		close(stop)
		wg.Wait()
		if len(reports) < 3 || reports[0].Generation != 1 || reports[len(reports)-1].State != projection.StateLive {
			t.Fatalf("progress reports: %d, first %+v, last %+v", len(reports), reports[0], reports[len(reports)-1])
		}
		for i := 1; i < len(reports); i++ {
			if reports[i].Position < reports[i-1].Position {
				t.Fatalf("progress went back: %+v then %+v", reports[i-1], reports[i])
			}
		}
		if !overlapped {
			t.Fatal("the rebuild reported no progress between batches")
		}
		if gen, _ := m.Generation(ctx, "counts"); gen != 1 {
			t.Fatalf("active generation %d, want 1", gen)
		}
		// The live runner continues on the new generation.
		head := appendN(t, s, ss, "Added", 5)
		if err := r.WaitFor(ctx, head); err != nil {
			t.Fatal(err)
		}
		got, _ := readCounts(m, "counts")
		compareCounts(t, got, expected(t, s, nil))
		if st, _ := r.Status(ctx); st.Generation != 1 || st.Rebuilding {
			t.Fatalf("status after rebuild: %+v", st)
		}
		// The old generation was dropped.
		if cp, _ := m.Checkpoint(ctx, "counts", 0); cp != 0 {
			t.Fatalf("old generation still has checkpoint %d", cp)
		}
		// A second rebuild, with Run stopped, goes to generation 2.
		if err := r.Rebuild(ctx, nil); err != nil {
			t.Fatal(err)
		}
		if gen, _ := m.Generation(ctx, "counts"); gen != 2 {
			t.Fatalf("active generation %d, want 2", gen)
		}
		got, _ = readCounts(m, "counts")
		compareCounts(t, got, expected(t, s, nil))
	})
}

func TestRebuildFailureKeepsActive(t *testing.T) {
	teststores.Each(t, func(t *testing.T, s annals.Store) {
		h := &failing{}
		m := projection.NewMemory(func() *cloneCounts { return &cloneCounts{counts: *newCounts()} })
		r, err := projection.NewRunner(s, m, projection.Projection[*cloneCounts]{Name: "p", Handle: h.handle}, nil)
		if err != nil {
			t.Fatal(err)
		}
		appendN(t, s, []string{"a-1"}, "Good", 10)
		res, _ := s.Append(context.Background(), "a-1", annals.Any, annals.Event{Type: "Bad"})
		start(t, r)
		if err := r.WaitFor(waitCtx(t), res.Position); err != nil {
			t.Fatal(err)
		}
		h.fail.Store(true)
		err = r.Rebuild(waitCtx(t), nil)
		if he, ok := errors.AsType[*projection.HandlerError](err); !ok || he.Event.Position != res.Position {
			t.Fatalf("Rebuild: %v, want the handler error on event %d", err, res.Position)
		}
		if gen, _ := m.Generation(context.Background(), "p"); gen != 0 {
			t.Fatalf("generation %d after a failed rebuild", gen)
		}
		if cp, _ := m.Checkpoint(context.Background(), "p", 1); cp != 0 {
			t.Fatalf("the failed generation was left with checkpoint %d", cp)
		}
		var total int
		m.Read("p", func(c *cloneCounts, _ uint64) { total = c.total })
		if total != 11 {
			t.Fatalf("active read model has %d events, want 11", total)
		}
	})
}

func TestBusyAndInvalid(t *testing.T) {
	s := newMem(t)
	m := projection.NewMemory(newCounts)
	if _, err := projection.NewRunner(s, m, projection.Projection[*counts]{Name: "", Handle: countHandler}, nil); !errors.Is(err, projection.ErrInvalid) {
		t.Fatalf("empty name: %v", err)
	}
	if _, err := projection.NewRunner(s, m, projection.Projection[*counts]{Name: "x"}, nil); !errors.Is(err, projection.ErrInvalid) {
		t.Fatalf("nil handler: %v", err)
	}
	if _, err := projection.NewRunner(s, m, projection.Projection[*counts]{Name: "x", Handle: countHandler, Filter: &annals.Filter{Categories: []string{""}}}, nil); !errors.Is(err, projection.ErrInvalid) {
		t.Fatalf("bad filter: %v", err)
	}
	r := newCountRunner(t, s, m, nil, nil)
	start(t, r)
	waitState(t, r, "live", func(st projection.Status) bool { return st.State == projection.StateLive })
	if err := r.Run(context.Background()); !errors.Is(err, projection.ErrBusy) {
		t.Fatalf("second Run: %v", err)
	}
}

// A store error ends Run with the error recorded.
func TestRunEndsOnStoreError(t *testing.T) {
	s := newMem(t)
	m := projection.NewMemory(newCounts)
	r := newCountRunner(t, s, m, nil, nil)
	appendN(t, s, []string{"a-1"}, "A", 3)
	done := make(chan error, 1)
	go func() { done <- r.Run(context.Background()) }()
	waitState(t, r, "live", func(st projection.Status) bool { return st.State == projection.StateLive })
	s.Close()
	err := <-done
	if !errors.Is(err, annals.ErrClosed) {
		t.Fatalf("Run after the store closed: %v", err)
	}
	st, _ := r.Status(context.Background())
	if st.State != projection.StateStopped || !errors.Is(st.LastError, annals.ErrClosed) {
		t.Fatalf("status %+v", st)
	}
}

var errInjected = errors.New("injected store failure")

// flakyStore fails its failAt-th Update (counting from 1) in one of two ways that leave the
// target elsewhere than the runner thinks: "committed" keeps the Update and returns an error
// all the same (a commit whose answer was lost); "dropped" makes fn fail with an error that is
// not a handler's, on which Memory (without Clone) drops the generation.
type flakyStore struct {
	projection.Store[*counts]
	mode   string
	failAt int32
	calls  atomic.Int32
}

func (f *flakyStore) Update(ctx context.Context, name string, gen, from, to uint64, fn func(*counts) error) error {
	if f.calls.Add(1) != f.failAt {
		return f.Store.Update(ctx, name, gen, from, to, fn)
	}
	if f.mode == "committed" {
		if err := f.Store.Update(ctx, name, gen, from, to, fn); err != nil {
			return err
		}
		return errInjected
	}
	return f.Store.Update(ctx, name, gen, from, to, func(c *counts) error {
		if err := fn(c); err != nil {
			return err
		}
		return errInjected
	})
}

// After Run returns on a store error (made permanent here; see TestRunRetriesStoreErrors for
// the retries), the next Run starts from what the target holds: a batch committed despite the
// error is not applied again, a dropped generation is replayed.
func TestRunRereadsCheckpointAfterStoreError(t *testing.T) {
	for _, mode := range []string{"committed", "dropped"} {
		t.Run(mode, func(t *testing.T) {
			s := newMem(t)
			head := appendBatches(t, s, streams("cart", 3), "Added", 300)
			m := projection.NewMemory(newCounts)
			fs := &flakyStore{Store: m, mode: mode, failAt: 3}
			r, err := projection.NewRunner(s, fs, projection.Projection[*counts]{Name: "counts", Handle: countHandler}, &projection.RunnerOptions{MaxBatch: 50,
				// The wrapper hides m's keeper: name it, since m checks the lease of every Update.
				Supervision: supervisor.Policy{Keeper: m, Permanent: func(err error) bool { return errors.Is(err, errInjected) }}})
			if err != nil {
				t.Fatal(err)
			}
			if err := r.Run(waitCtx(t)); !errors.Is(err, errInjected) {
				t.Fatalf("Run: %v, want the injected failure", err)
			}
			start(t, r) // the same runner again
			if err := r.WaitFor(waitCtx(t), head); err != nil {
				t.Fatal(err)
			}
			got, cp := readCounts(m, "counts")
			compareCounts(t, got, expected(t, s, nil))
			if cp != head {
				t.Fatalf("checkpoint %d, want %d", cp, head)
			}
		})
	}
}
