package projection_test

import (
	"context"
	"fmt"
	"maps"
	"strconv"
	"sync"
	"testing"

	"github.com/annalsdb/annals"
	"github.com/annalsdb/annals/internal/testwait"
	"github.com/annalsdb/annals/memstore"
	"github.com/annalsdb/annals/projection"
)

// counts is a read model that double-counts any event applied twice.
type counts struct {
	per   map[string]int
	total int
	last  uint64 // position of the last event applied
}

func newCounts() *counts { return &counts{per: map[string]int{}} }

// cloneCounts is counts with a Clone method, for Memory's atomic updates.
type cloneCounts struct{ counts }

func (c *cloneCounts) Clone() *cloneCounts {
	return &cloneCounts{counts{per: maps.Clone(c.per), total: c.total, last: c.last}}
}

func countHandler(_ context.Context, c *counts, ev annals.RecordedEvent) error {
	c.per[ev.Stream]++
	c.total++
	c.last = ev.Position
	return nil
}

// appendN appends n events of type typ round-robin over streams and returns the last position.
// It fails the test at once: call it from the test's goroutine only (others: tryAppendN).
func appendN(t testing.TB, s annals.Store, streams []string, typ string, n int) uint64 {
	t.Helper()
	last, err := tryAppendN(s, streams, typ, n)
	if err != nil {
		t.Fatal(err)
	}
	return last
}

// tryAppendN is appendN returning its error, for goroutines other than the test's.
func tryAppendN(s annals.Store, streams []string, typ string, n int) (uint64, error) {
	var last uint64
	for i := range n {
		res, err := s.Append(context.Background(), streams[i%len(streams)], annals.Any,
			annals.Event{Type: typ, Data: []byte(`{"i":` + strconv.Itoa(i) + `}`)})
		if err != nil {
			return 0, fmt.Errorf("append: %w", err)
		}
		last = res.Position
	}
	return last, nil
}

// appendBatches appends n events in appends of up to 100 events each.
func appendBatches(t testing.TB, s annals.Store, streams []string, typ string, n int) uint64 {
	t.Helper()
	var last uint64
	for i := 0; i < n; {
		k := min(100, n-i)
		evs := make([]annals.Event, k)
		for j := range evs {
			evs[j] = annals.Event{Type: typ, Data: []byte(`{}`)}
		}
		res, err := s.Append(context.Background(), streams[(i/100)%len(streams)], annals.Any, evs...)
		if err != nil {
			t.Fatalf("append: %v", err)
		}
		last = res.Position
		i += k
	}
	return last
}

// expected folds the log the way countHandler does, in one pass: the oracle.
func expected(t testing.TB, s annals.Store, f *annals.Filter) *counts {
	t.Helper()
	c := newCounts()
	for ev, err := range s.ReadAll(context.Background(), &annals.ReadOptions{Filter: f}) {
		if err != nil {
			t.Fatal(err)
		}
		countHandler(context.Background(), c, ev)
	}
	return c
}

// start runs r in the background until the test ends; the returned stop cancels it and
// returns Run's error.
func start[Tx any](t *testing.T, r *projection.Runner[Tx]) (stop func() error) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx) }()
	var once sync.Once
	var err error
	stop = func() error {
		once.Do(func() {
			cancel()
			err = <-done
		})
		return err
	}
	t.Cleanup(func() { stop() })
	return stop
}

func waitCtx(t testing.TB) context.Context {
	return testwait.Context(t)
}

// waitState waits until the runner's status satisfies ok, with a deadline.
func waitState[Tx any](t *testing.T, r *projection.Runner[Tx], what string, ok func(projection.Status) bool) projection.Status {
	t.Helper()
	var st projection.Status
	testwait.UntilNil(t, what, func() error {
		var err error
		if st, err = r.Status(context.Background()); err != nil {
			t.Fatal(err)
		}
		if !ok(st) {
			return fmt.Errorf("status %+v", st)
		}
		return nil
	})
	return st
}

func readCounts(m *projection.Memory[*counts], name string) (c counts, cp uint64) {
	m.Read(name, func(model *counts, checkpoint uint64) {
		c = counts{per: maps.Clone(model.per), total: model.total, last: model.last}
		cp = checkpoint
	})
	return c, cp
}

func streams(prefix string, n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = fmt.Sprintf("%s-%d", prefix, i)
	}
	return out
}

func newMem(t *testing.T) annals.Store {
	s := memstore.New(nil)
	t.Cleanup(func() { s.Close() })
	return s
}
