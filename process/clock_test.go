package process_test

import (
	"errors"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/annalsdb/annals"
	"github.com/annalsdb/annals/internal/teststores"
	"github.com/annalsdb/annals/internal/testwait"
	"github.com/annalsdb/annals/memstore"
	"github.com/annalsdb/annals/process"
)

// fakeClock is a [process.Clock] that moves only when told to.
type fakeClock struct {
	mu    sync.Mutex
	now   time.Time
	waits []fakeWait
}

type fakeWait struct {
	at time.Time
	c  chan time.Time
}

func newFakeClock(now time.Time) *fakeClock { return &fakeClock{now: now} }

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) WakeAt(t time.Time) <-chan time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	ch := make(chan time.Time, 1)
	if !t.After(c.now) {
		ch <- c.now
		return ch
	}
	c.waits = append(c.waits, fakeWait{t, ch})
	return ch
}

// Advance moves the clock forwards by d and wakes the waits that are due.
func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
	c.waits = slices.DeleteFunc(c.waits, func(w fakeWait) bool {
		if w.at.After(c.now) {
			return false
		}
		w.c <- c.now
		return true
	})
}

// waitingFor reports whether something waits for the clock to read t or later.
func (c *fakeClock) waitingFor(t time.Time) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.ContainsFunc(c.waits, func(w fakeWait) bool { return !w.at.Before(t) })
}

// TestFakeClockFiresDeadline sets a payment deadline of an hour and moves a fake clock an hour
// on: the deadline fires at once, with no real waiting (the test's waits are seconds).
func TestFakeClockFiresDeadline(t *testing.T) {
	teststores.Each(t, func(t *testing.T, s annals.Store) {
		h := &handlers{store: s, seen: map[string]bool{}}
		// A minute ahead of the store's clock, which records the times deadlines count from.
		clock := newFakeClock(time.Now().Add(time.Minute))
		r, err := process.NewRunner(s, orderManager(time.Hour), h.send, &process.RunnerOptions{Clock: clock})
		if err != nil {
			t.Fatal(err)
		}
		start(t, r)
		append1(t, s, "order-1", "Placed", `{"SKU":"apple"}`)
		testwait.Until(t, "the payment deadline", func() bool { return len(r.Status().Pending) == 1 })
		due := r.Status().Pending[0].At
		testwait.Until(t, "the runner to wait on the clock for the deadline", func() bool { return clock.waitingFor(due) })
		if got := types(t, s, "order-1"); !slices.Equal(got, []string{"Placed"}) {
			t.Fatalf("order-1 before the clock moved: %q, want [Placed]", got)
		}
		clock.Advance(time.Hour)
		testwait.Until(t, "the order cancelled", func() bool { return slices.Equal(types(t, s, "order-1"), []string{"Placed", "Cancelled"}) })
		testwait.Until(t, "no deadline pending", func() bool { return len(r.Status().Pending) == 0 })
	})
}

func TestClockAndNowTogether(t *testing.T) {
	s := memstore.New(nil)
	defer s.Close()
	h := &handlers{store: s, seen: map[string]bool{}}
	_, err := process.NewRunner(s, orderManager(time.Hour), h.send, &process.RunnerOptions{Clock: newFakeClock(time.Now()), Now: time.Now})
	if !errors.Is(err, process.ErrInvalidManager) {
		t.Fatalf("NewRunner with both Clock and Now: %v, want ErrInvalidManager", err)
	}
}
