package tables_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/annalsdb/annals"
	"github.com/annalsdb/annals/internal/teststores"
	"github.com/annalsdb/annals/internal/testwait"
	"github.com/annalsdb/annals/projection"
	"github.com/annalsdb/annals/tables"
	"github.com/google/go-cmp/cmp"
)

// counter is a read model that a replayed event would double-count: one row per stream with
// the number of its events, and one "total" row.
type counter struct {
	perStream *tables.Table[int]
	total     *tables.Table[int]
}

func newCounter(t testing.TB, db *tables.DB) counter {
	per, err := tables.NewTable[int](db, "counter", "streams")
	if err != nil {
		t.Fatal(err)
	}
	total, err := tables.NewTable[int](db, "counter", "total")
	if err != nil {
		t.Fatal(err)
	}
	return counter{per, total}
}

func (c counter) projection() projection.Projection[*tables.Tx] {
	return projection.Projection[*tables.Tx]{
		Name:   "counter",
		Filter: &annals.Filter{Categories: []string{"acct"}},
		Handle: func(_ context.Context, tx *tables.Tx, ev annals.RecordedEvent) error {
			n, _, err := c.perStream.Read(tx, ev.Stream)
			if err != nil {
				return err
			}
			if err := c.perStream.Put(tx, ev.Stream, n+1); err != nil {
				return err
			}
			total, _, err := c.total.Read(tx, "all")
			if err != nil {
				return err
			}
			return c.total.Put(tx, "all", total+1)
		},
	}
}

// rows returns the read model as a map (queries on the active generation).
func (c counter) rows(t testing.TB) map[string]int {
	t.Helper()
	out := map[string]int{}
	for row, err := range c.perStream.List(context.Background(), nil) {
		if err != nil {
			t.Fatal(err)
		}
		out[row.Key] = row.Value
	}
	total, _, err := c.total.Get(context.Background(), "all")
	if err != nil {
		t.Fatal(err)
	}
	out["$total"] = total
	return out
}

// singlePass folds the log in one pass: what the read model must equal.
func singlePass(t testing.TB, s annals.Store) map[string]int {
	t.Helper()
	out := map[string]int{"$total": 0}
	for ev, err := range s.ReadAll(context.Background(), &annals.ReadOptions{Filter: &annals.Filter{Categories: []string{"acct"}}}) {
		if err != nil {
			t.Fatal(err)
		}
		out[ev.Stream]++
		out["$total"]++
	}
	return out
}

// appendEvents appends n events over streams accounts (and some other events) and returns the
// last position. It fails the test at once: call it from the test's goroutine only (others:
// tryAppendEvents).
func appendEvents(t testing.TB, s annals.Store, n, streams int) uint64 {
	t.Helper()
	last, err := tryAppendEvents(s, n, streams)
	if err != nil {
		t.Fatal(err)
	}
	return last
}

// tryAppendEvents is appendEvents returning its error, for goroutines other than the test's.
func tryAppendEvents(s annals.Store, n, streams int) (uint64, error) {
	var last uint64
	for i := 0; i < n; {
		k := min(50, n-i)
		evs := make([]annals.Event, k)
		for j := range evs {
			evs[j] = annals.Event{Type: "Deposited", Data: []byte(`{}`)}
		}
		stream := fmt.Sprintf("acct-%d", (i/50)%streams)
		if i%150 == 0 {
			stream = fmt.Sprintf("other-%d", i) // events the filter leaves out
		}
		res, err := s.Append(context.Background(), stream, annals.Any, evs...)
		if err != nil {
			return 0, fmt.Errorf("append: %w", err)
		}
		last = res.Position
		i += k
	}
	return last, nil
}

func runInBackground(t *testing.T, r *projection.Runner[*tables.Tx]) func() error {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx) }()
	var once sync.Once
	var err error
	stop := func() error {
		once.Do(func() { cancel(); err = <-done })
		return err
	}
	t.Cleanup(func() { stop() })
	return stop
}

func TestProjectionCancelAndRestart(t *testing.T) {
	teststores.Each(t, func(t *testing.T, s annals.Store) {
		db := openDB(t, t.TempDir())
		c := newCounter(t, db)
		appendEvents(t, s, 3000, 7)
		for round := range 5 {
			r, err := projection.NewRunner(s, db, c.projection(), &projection.RunnerOptions{MaxBatch: 32})
			if err != nil {
				t.Fatal(err)
			}
			cp0, _ := db.Checkpoint(context.Background(), "counter", 0)
			stop := runInBackground(t, r)
			testwait.Until(t, fmt.Sprintf("round %d: progress", round), func() bool {
				cp, _ := db.Checkpoint(context.Background(), "counter", 0)
				return cp > cp0
			})
			if err := stop(); !errors.Is(err, context.Canceled) {
				t.Fatalf("round %d: Run: %v", round, err)
			}
			appendEvents(t, s, 100, 7)
		}
		r, _ := projection.NewRunner(s, db, c.projection(), nil)
		runInBackground(t, r)
		head := appendEvents(t, s, 10, 7)
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if err := r.WaitFor(ctx, head); err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff(singlePass(t, s), c.rows(t)); diff != "" {
			t.Fatalf("read model after restarts differs from a single pass (-want +got):\n%s", diff)
		}
	})
}

func TestProjectionRebuildWhileQueried(t *testing.T) {
	teststores.Each(t, func(t *testing.T, s annals.Store) {
		db := openDB(t, t.TempDir())
		c := newCounter(t, db)
		appendEvents(t, s, 4000, 5)
		r, _ := projection.NewRunner(s, db, c.projection(), &projection.RunnerOptions{MaxBatch: 256})
		runInBackground(t, r)
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		defer cancel()
		if err := r.WaitFor(ctx, appendEvents(t, s, 1, 5)); err != nil {
			t.Fatal(err)
		}
		stop := make(chan struct{})
		var wg sync.WaitGroup
		wg.Go(func() { // live writes with read-your-writes
			for {
				select {
				case <-stop:
					return
				default:
				}
				pos, err := tryAppendEvents(s, 5, 5)
				if err != nil {
					t.Error(err)
					return
				}
				if err := r.WaitFor(ctx, pos); err != nil {
					t.Errorf("WaitFor: %v", err)
					return
				}
			}
		})
		wg.Go(func() { // queries keep answering from the live generation
			prev := 0
			for {
				select {
				case <-stop:
					return
				default:
				}
				total, ok, err := c.total.Get(ctx, "all")
				if err != nil || !ok || total < prev {
					t.Errorf("query during rebuild: total %d (before %d), found %v, %v", total, prev, ok, err)
					return
				}
				prev = total
			}
		})
		reports := 0
		err := r.Rebuild(ctx, func(projection.Status) { reports++ })
		close(stop)
		wg.Wait()
		if err != nil {
			t.Fatal(err)
		}
		if gen, _ := db.Generation(ctx, "counter"); gen != 1 || reports < 2 {
			t.Fatalf("generation %d after rebuild, %d reports", gen, reports)
		}
		if err := r.WaitFor(ctx, appendEvents(t, s, 3, 5)); err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff(singlePass(t, s), c.rows(t)); diff != "" {
			t.Fatalf("rebuilt read model differs (-want +got):\n%s", diff)
		}
		if cp, _ := db.Checkpoint(ctx, "counter", 0); cp != 0 {
			t.Fatalf("old generation not dropped: checkpoint %d", cp)
		}
	})
}

func lastPos(t testing.TB, s annals.Store) uint64 {
	t.Helper()
	for ev, err := range s.ReadAll(context.Background(), &annals.ReadOptions{Backwards: true, From: annals.End, Limit: 1}) {
		if err != nil {
			t.Fatal(err)
		}
		return ev.Position
	}
	return 0
}
