package process_test

import (
	"context"
	"errors"
	"fmt"
	"iter"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/annalsdb/annals"
	"github.com/annalsdb/annals/internal/teststores"
	"github.com/annalsdb/annals/internal/testwait"
	"github.com/annalsdb/annals/memstore"
	"github.com/annalsdb/annals/process"
	"github.com/annalsdb/annals/supervisor"
)

// onceHandlers applies each command once per idempotency key, atomically (as package decider
// does with the key among the target stream's last events), and counts what it receives.
type onceHandlers struct {
	h       *handlers
	mu      sync.Mutex
	applied map[string]int // by idempotency key
	sent    int
}

func (o *onceHandlers) send(ctx context.Context, cmd process.Command) error {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.sent++
	if o.applied[cmd.IdempotencyKey] > 0 {
		return nil
	}
	if err := o.h.send(ctx, cmd); err != nil {
		return err
	}
	o.applied[cmd.IdempotencyKey]++
	return nil
}

// TestTwoRunnersHandleEachInputOnce runs two runners of one manager (two replicas of a
// service) without leases, both working, while orders are placed: each command takes effect
// once, each journal records each input once, and neither runner stops on the other's journal
// writes.
func TestTwoRunnersHandleEachInputOnce(t *testing.T) {
	teststores.Each(t, func(t *testing.T, s annals.Store) {
		o := &onceHandlers{h: &handlers{store: s, seen: map[string]bool{}}, applied: map[string]int{}}
		const orders = 40
		var stops []func() error
		var runners []*process.Runner[orderState]
		for range 2 {
			r, err := process.NewRunner(s, orderManager(time.Hour), o.send, &process.RunnerOptions{Supervision: supervisor.Policy{NoLease: true}})
			if err != nil {
				t.Fatal(err)
			}
			runners = append(runners, r)
			stops = append(stops, start(t, r))
		}
		for i := range orders {
			sku := fmt.Sprintf("sku%d", i)
			if i%5 == 0 {
				sku = "none"
			}
			append1(t, s, fmt.Sprintf("order-%d", i), "Placed", fmt.Sprintf(`{"SKU":%q}`, sku))
		}
		testwait.Until(t, "every order handled", func() bool {
			for i := range orders {
				want := []string{"Reserved"}
				stream := fmt.Sprintf("stock-sku%d", i)
				if i%5 == 0 {
					want, stream = []string{"Placed", "Rejected"}, fmt.Sprintf("order-%d", i)
				}
				if !slices.Equal(types(t, s, stream), want) {
					return false
				}
			}
			return true
		})
		for _, r := range runners {
			testwait.Until(t, "the runners to catch up", func() bool { return r.Status().Position >= lastPosition(t, s) })
		}
		for i, stop := range stops {
			if err := stop(); !errors.Is(err, context.Canceled) {
				t.Fatalf("runner %d: Run: %v, want context.Canceled", i, err)
			}
		}
		for i := range orders {
			stream := fmt.Sprintf("stock-sku%d", i)
			want := []string{"Reserved"}
			if i%5 == 0 {
				stream = fmt.Sprintf("order-%d", i)
				want = []string{"Placed", "Rejected"}
			}
			if got := types(t, s, stream); !slices.Equal(got, want) {
				t.Errorf("%s: %q, want %q (each command once)", stream, got, want)
			}
			// Placed and Reserved; or Placed, the refusal of the reservation and Rejected.
			steps := 2
			if i%5 == 0 {
				steps = 3
			}
			if got := types(t, s, fmt.Sprintf("orderflow-%d", i)); len(got) != steps {
				t.Errorf("journal of order %d: %d steps, want %d (each input once)", i, len(got), steps)
			}
		}
		o.mu.Lock()
		defer o.mu.Unlock()
		for key, n := range o.applied {
			if n != 1 {
				t.Errorf("command %s applied %d times", key, n)
			}
		}
		t.Logf("%d commands sent for %d applied", o.sent, len(o.applied))
	})
}

// TestTwoRunnersWithSkewedClocks runs two runners whose clocks disagree (one two hours ahead),
// so that one fires a deadline the other does not see due yet and their journal writes for
// the instance differ: the one that finds the journal moved reads it again and goes on,
// each input is journaled once and each command takes effect once.
func TestTwoRunnersWithSkewedClocks(t *testing.T) {
	teststores.Each(t, func(t *testing.T, s annals.Store) {
		o := &onceHandlers{h: &handlers{store: s, seen: map[string]bool{}}, applied: map[string]int{}}
		ahead := func() time.Time { return time.Now().Add(2 * time.Hour) }
		var stops []func() error
		var runners []*process.Runner[orderState]
		for _, now := range []func() time.Time{ahead, time.Now} {
			r, err := process.NewRunner(s, orderManager(time.Hour), o.send, &process.RunnerOptions{Now: now, Supervision: supervisor.Policy{NoLease: true}})
			if err != nil {
				t.Fatal(err)
			}
			runners = append(runners, r)
			stops = append(stops, start(t, r))
		}
		const orders = 10
		for i := range orders {
			append1(t, s, fmt.Sprintf("order-%d", i), "Placed", fmt.Sprintf(`{"SKU":"sku%d"}`, i))
		}
		// Placed, Reserved, the payment deadline and the Cancelled event it led to.
		testwait.Until(t, "every order cancelled and journaled", func() bool {
			for i := range orders {
				if len(types(t, s, fmt.Sprintf("orderflow-%d", i))) < 4 {
					return false
				}
			}
			return true
		})
		for _, r := range runners {
			testwait.Until(t, "the runners to catch up", func() bool { return r.Status().Position >= lastPosition(t, s) })
		}
		for i, stop := range stops {
			if err := stop(); !errors.Is(err, context.Canceled) {
				t.Fatalf("runner %d: Run: %v, want context.Canceled", i, err)
			}
		}
		for i := range orders {
			if got, want := types(t, s, fmt.Sprintf("order-%d", i)), []string{"Placed", "Cancelled"}; !slices.Equal(got, want) {
				t.Errorf("order-%d: %q, want %q (each command once)", i, got, want)
			}
			if got := types(t, s, fmt.Sprintf("orderflow-%d", i)); len(got) != 4 {
				t.Errorf("journal of order %d: %d steps, want 4 (each input once)", i, len(got))
			}
		}
		o.mu.Lock()
		defer o.mu.Unlock()
		for key, n := range o.applied {
			if n != 1 {
				t.Errorf("command %s applied %d times", key, n)
			}
		}
	})
}

// TestRunnersUnderLease runs two runners of one manager under the store's lease: one works,
// the other stands by and still answers WaitFor (from the manager's checkpoint); when the
// working one stops, the other takes over, and every command takes effect once.
func TestRunnersUnderLease(t *testing.T) {
	teststores.Each(t, func(t *testing.T, s annals.Store) {
		o := &onceHandlers{h: &handlers{store: s, seen: map[string]bool{}}, applied: map[string]int{}}
		var stops []func() error
		var runners []*process.Runner[orderState]
		for range 2 {
			r, err := process.NewRunner(s, orderManager(time.Hour), o.send, &process.RunnerOptions{Supervision: supervisor.Policy{TTL: 200 * time.Millisecond}})
			if err != nil {
				t.Fatal(err)
			}
			runners = append(runners, r)
			stops = append(stops, start(t, r))
		}
		working := func() int {
			w := -1
			testwait.Until(t, "one runner working, the other standing by", func() bool {
				states := []supervisor.State{runners[0].Status().Supervisor.State, runners[1].Status().Supervisor.State}
				switch {
				case states[0] == supervisor.Running && states[1] == supervisor.StandingBy:
					w = 0
				case states[1] == supervisor.Running && states[0] == supervisor.StandingBy:
					w = 1
				default:
					return false
				}
				return true
			})
			return w
		}
		place := func(from, to int) {
			for i := from; i < to; i++ {
				append1(t, s, fmt.Sprintf("order-%d", i), "Placed", fmt.Sprintf(`{"SKU":"sku%d"}`, i))
			}
			head := lastPosition(t, s)
			for _, r := range runners {
				if err := r.WaitFor(testwait.Context(t), head); err != nil {
					t.Fatal(err)
				}
			}
		}
		w := working()
		place(0, 10)
		if err := stops[w](); !errors.Is(err, context.Canceled) {
			t.Fatalf("Run: %v", err)
		}
		other := runners[1-w]
		testwait.Until(t, "the other runner to take over", func() bool { return other.Status().Supervisor.State == supervisor.Running })
		place(10, 20)
		for i := range 20 {
			if got := types(t, s, fmt.Sprintf("stock-sku%d", i)); !slices.Equal(got, []string{"Reserved"}) {
				t.Errorf("stock-sku%d: %q, want one reservation", i, got)
			}
		}
		o.mu.Lock()
		defer o.mu.Unlock()
		for key, n := range o.applied {
			if n != 1 {
				t.Errorf("command %s applied %d times", key, n)
			}
		}
	})
}

// signalingStore signals on readAll each ReadAll once armed is set.
type signalingStore struct {
	annals.Store
	armed   atomic.Bool
	readAll chan struct{}
}

func (s *signalingStore) ReadAll(ctx context.Context, opts *annals.ReadOptions) iter.Seq2[annals.RecordedEvent, error] {
	if s.armed.Load() {
		select {
		case s.readAll <- struct{}{}:
		default:
		}
	}
	return s.Store.ReadAll(ctx, opts)
}

// TestWaitForAfterTheWorkStops: a WaitFor that began while its runner worked returns once
// another runner has handled the position, after this one stopped working (its Run ended, or
// it lost its lease): it then reads the manager's checkpoint, as a runner standing by does,
// instead of waiting for progress of its own that will never come.
func TestWaitForAfterTheWorkStops(t *testing.T) {
	mem := memstore.New(nil)
	t.Cleanup(func() { mem.Close() })
	s := &signalingStore{Store: mem, readAll: make(chan struct{}, 1)}
	inSend := make(chan struct{}, 1)
	blocking := func(ctx context.Context, cmd process.Command) error {
		select {
		case inSend <- struct{}{}:
		default:
		}
		<-ctx.Done()
		return ctx.Err()
	}
	policy := supervisor.Policy{Keeper: mem, TTL: 200 * time.Millisecond}
	a, err := process.NewRunner(s, orderManager(time.Hour), blocking, &process.RunnerOptions{Supervision: policy})
	if err != nil {
		t.Fatal(err)
	}
	stopA := start(t, a)
	testwait.Until(t, "a to work", func() bool { return a.Status().Supervisor.State == supervisor.Running })
	append1(t, mem, "order-0", "Placed", `{"SKU":"sku0"}`)
	head := lastPosition(t, mem)
	testwait.Recv(t, "a to send the reservation", inSend)
	s.armed.Store(true)
	waited := make(chan error, 1)
	go func() { waited <- a.WaitFor(testwait.Context(t), head) }()
	testwait.Recv(t, "a's WaitFor to look at the log while a works", s.readAll)
	if err := stopA(); !errors.Is(err, context.Canceled) {
		t.Fatalf("Run: %v", err)
	}
	h := &handlers{store: mem, seen: map[string]bool{}}
	b, err := process.NewRunner(mem, orderManager(time.Hour), h.send, &process.RunnerOptions{Supervision: policy})
	if err != nil {
		t.Fatal(err)
	}
	start(t, b)
	if err := b.WaitFor(testwait.Context(t), head); err != nil {
		t.Fatal(err)
	}
	if err := testwait.Recv(t, "a's WaitFor, once b handled the order", waited); err != nil {
		t.Fatalf("a's WaitFor: %v", err)
	}
}

// noCheckpoints refuses the appends to the managers' checkpoint streams as too large, which a
// runner takes as a checkpoint it cannot write: it goes on without one.
type noCheckpoints struct{ annals.Store }

func (s noCheckpoints) Append(ctx context.Context, stream string, expected annals.ExpectedRevision, events ...annals.Event) (annals.AppendResult, error) {
	if strings.HasPrefix(stream, process.CheckpointStreamPrefix) {
		return annals.AppendResult{}, fmt.Errorf("checkpoint refused: %w", annals.ErrTooLarge)
	}
	return s.Store.Append(ctx, stream, expected, events...)
}

// TestStandbyWaitForAfterTakeoverOfUncheckpointedWork: a runner stops after journaling inputs
// it never checkpointed; the runner that takes over finds them in the journals, and a runner
// standing by then sees them handled in WaitFor: the one that works checkpoints what it
// recovered once idle, not only the inputs it handles itself.
func TestStandbyWaitForAfterTakeoverOfUncheckpointedWork(t *testing.T) {
	mem := memstore.New(nil)
	t.Cleanup(func() { mem.Close() })
	h := &handlers{store: mem, seen: map[string]bool{}}
	policy := supervisor.Policy{Keeper: mem, TTL: 200 * time.Millisecond}
	a, err := process.NewRunner(noCheckpoints{mem}, orderManager(time.Hour), h.send, &process.RunnerOptions{Supervision: policy})
	if err != nil {
		t.Fatal(err)
	}
	stopA := start(t, a)
	append1(t, mem, "order-0", "Placed", `{"SKU":"sku0"}`)
	testwait.Until(t, "a to journal Placed and Reserved", func() bool { return len(types(t, mem, "orderflow-0")) == 2 })
	head := lastPosition(t, mem)
	if err := a.WaitFor(testwait.Context(t), head); err != nil {
		t.Fatal(err)
	}
	if err := stopA(); !errors.Is(err, context.Canceled) {
		t.Fatalf("Run: %v", err)
	}
	var runners []*process.Runner[orderState]
	for range 2 {
		r, err := process.NewRunner(mem, orderManager(time.Hour), h.send, &process.RunnerOptions{Supervision: policy})
		if err != nil {
			t.Fatal(err)
		}
		runners = append(runners, r)
		start(t, r)
		testwait.Until(t, "the runner to work or stand by", func() bool {
			st := r.Status().Supervisor.State
			return st == supervisor.Running || st == supervisor.StandingBy
		})
	}
	for i, r := range runners {
		if err := r.WaitFor(testwait.Context(t), head); err != nil {
			t.Fatalf("runner %d (%v): WaitFor: %v", i, r.Status().Supervisor.State, err)
		}
	}
}
