package process_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/annalsdb/annals"
	"github.com/annalsdb/annals/codec"
	"github.com/annalsdb/annals/internal/teststores"
	"github.com/annalsdb/annals/internal/testwait"
	"github.com/annalsdb/annals/memstore"
	"github.com/annalsdb/annals/process"
	"github.com/google/go-cmp/cmp"
)

// The test domain: an order ("order-<id>": Placed, Paid) needs its items reserved
// ("stock-<sku>": Reserved, by commands); a refused reservation rejects the order, and an
// order not paid within the payment window is cancelled.

type orderState struct {
	Placed, Reserved, Rejected, Paid, Cancelled bool
	SKU                                         string
}

type (
	reserve struct{ Order, SKU string }
	reject  struct{ Order, Reason string }
	cancel  struct{ Order string }
)

// The events of the test domain, as registered in testRegistry.
type (
	placed    struct{ SKU string }
	paid      struct{}
	reserved  struct{ Order string }
	rejected  struct{ Reason string }
	cancelled struct{}
	nilEvent  struct{} // makes TestDeadlineOrder's manager send a nil command
)

func testRegistry() *codec.Registry {
	reg := codec.New(nil)
	if err := errors.Join(
		codec.Register[placed](reg, "Placed", nil),
		codec.Register[paid](reg, "Paid", nil),
		codec.Register[reserved](reg, "Reserved", nil),
		codec.Register[rejected](reg, "Rejected", nil),
		codec.Register[cancelled](reg, "Cancelled", nil),
		codec.Register[nilEvent](reg, "Nil", nil),
	); err != nil {
		panic(err)
	}
	return reg
}

func orderManager(window time.Duration) process.Manager[orderState, any] {
	return process.Manager[orderState, any]{
		Name:   "orderflow",
		Filter: &annals.Filter{Categories: []string{"order", "stock"}},
		Decode: process.Decoder[any](testRegistry()),
		Instance: func(e any, rec annals.RecordedEvent) (string, bool) {
			if r, ok := e.(reserved); ok {
				return r.Order, r.Order != ""
			}
			return strings.CutPrefix(rec.Stream, "order-")
		},
		Initial: func() orderState { return orderState{} },
		React: func(id string, s orderState, in process.Input[any]) []process.Action {
			switch e := in.Event.(type) {
			case placed:
				return []process.Action{process.Send{Stream: "stock-" + e.SKU, Command: reserve{id, e.SKU}}}
			case reserved:
				return []process.Action{process.SetDeadline{Name: "payment", After: window}}
			case paid:
				return []process.Action{process.CancelDeadline{Name: "payment"}}
			}
			switch {
			case in.Refusal != nil:
				return []process.Action{process.Send{Stream: "order-" + id, Command: reject{id, in.Refusal.Error}}}
			case in.Deadline != nil && !s.Paid:
				return []process.Action{process.Send{Stream: "order-" + id, Command: cancel{id}}}
			}
			return nil
		},
		Evolve: func(s orderState, in process.Input[any]) orderState {
			switch e := in.Event.(type) {
			case placed:
				s.Placed, s.SKU = true, e.SKU
			case reserved:
				s.Reserved = true
			case paid:
				s.Paid = true
			}
			switch {
			case in.Refusal != nil:
				s.Rejected = true
			case in.Deadline != nil:
				s.Cancelled = !s.Paid
			}
			return s
		},
	}
}

// handlers stands for the command handlers: it applies each command once per idempotency key,
// as package decider does, refuses reservations of the SKU "none", and can be told to fail
// (as an unreachable store would) on chosen commands.
type handlers struct {
	store annals.Store
	mu    sync.Mutex
	seen  map[string]bool // idempotency keys applied
	sent  []string        // every command received, repeats included
	fail  func(cmd process.Command) bool
}

var errNoStock = errors.New("no stock")

func (h *handlers) send(ctx context.Context, cmd process.Command) error {
	h.mu.Lock()
	h.sent = append(h.sent, fmt.Sprintf("%s %T", cmd.Stream, cmd.Command))
	fail := h.fail != nil && h.fail(cmd)
	dup := h.seen[cmd.IdempotencyKey]
	h.mu.Unlock()
	if fail {
		return fmt.Errorf("send: %w", annals.ErrClosed)
	}
	if dup {
		return nil
	}
	if cmd.IdempotencyKey == "" || cmd.CausationID == "" || cmd.CorrelationID == "" {
		return fmt.Errorf("command %T without idempotency key, causation or correlation: %+v", cmd.Command, cmd)
	}
	var ev annals.Event
	switch c := cmd.Command.(type) {
	case reserve:
		if c.SKU == "none" {
			return process.Refused(errNoStock)
		}
		ev = annals.Event{Type: "Reserved", Data: fmt.Appendf(nil, `{"Order":%q}`, c.Order)}
	case reject:
		ev = annals.Event{Type: "Rejected", Data: fmt.Appendf(nil, `{"Reason":%q}`, c.Reason)}
	case cancel:
		ev = annals.Event{Type: "Cancelled", Data: []byte(`{}`)}
	default:
		return fmt.Errorf("unknown command %T", c)
	}
	md, err := codec.Metadata{CorrelationID: cmd.CorrelationID, CausationID: cmd.CausationID}.Marshal()
	if err != nil {
		return err
	}
	ev.Metadata = md
	if _, err := h.store.Append(ctx, cmd.Stream, annals.Any, ev); err != nil {
		return err
	}
	h.mu.Lock()
	h.seen[cmd.IdempotencyKey] = true
	h.mu.Unlock()
	return nil
}

func append1(t *testing.T, s annals.Store, stream, typ, data string) {
	t.Helper()
	if _, err := s.Append(context.Background(), stream, annals.Any, annals.Event{Type: typ, Data: []byte(data)}); err != nil {
		t.Fatal(err)
	}
}

// types returns the event types of stream, in order.
func types(t *testing.T, s annals.Store, stream string) []string {
	t.Helper()
	var got []string
	for ev, err := range s.ReadStream(context.Background(), stream, nil) {
		if errors.Is(err, annals.ErrStreamNotFound) {
			return nil
		}
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, ev.Type)
	}
	return got
}

// start runs r until the test ends or stop is called; stop returns Run's error.
func start[S any](t *testing.T, r *process.Runner[S]) (stop func() error) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx) }()
	var once sync.Once
	var err error
	stop = func() error {
		once.Do(func() { cancel(); err = <-done })
		return err
	}
	t.Cleanup(func() { stop() })
	return stop
}

func newRunner(t *testing.T, s annals.Store, h *handlers, window time.Duration) *process.Runner[orderState] {
	t.Helper()
	r, err := process.NewRunner(s, orderManager(window), h.send, nil)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func TestReactAndCompensate(t *testing.T) {
	teststores.Each(t, func(t *testing.T, s annals.Store) {
		h := &handlers{store: s, seen: map[string]bool{}}
		r := newRunner(t, s, h, time.Hour)
		start(t, r)
		append1(t, s, "order-1", "Placed", `{"SKU":"apple"}`)
		append1(t, s, "order-2", "Placed", `{"SKU":"none"}`)
		testwait.Until(t, "the reservation of order 1", func() bool { return slices.Equal(types(t, s, "stock-apple"), []string{"Reserved"}) })
		testwait.Until(t, "the rejection of order 2", func() bool { return slices.Equal(types(t, s, "order-2"), []string{"Placed", "Rejected"}) })
		testwait.Until(t, "the runner to catch up", func() bool { return r.Status().Position >= lastPosition(t, s) })

		st, err := r.State(context.Background(), "2")
		if err != nil {
			t.Fatal(err)
		}
		if want := (orderState{Placed: true, Rejected: true, SKU: "none"}); st != want {
			t.Errorf("state of order 2: got %+v, want %+v", st, want)
		}
		var inputs []string
		for in, err := range r.Journal(context.Background(), "2") {
			if err != nil {
				t.Fatal(err)
			}
			switch {
			case in.Recorded != nil:
				inputs = append(inputs, fmt.Sprintf("event %s %T", in.Recorded.Type, in.Event))
			case in.Refusal != nil:
				inputs = append(inputs, "refusal "+in.Refusal.Type+": "+in.Refusal.Error)
			}
		}
		if want := []string{"event Placed process_test.placed", "refusal process_test.reserve: no stock", "event Rejected process_test.rejected"}; !slices.Equal(inputs, want) {
			t.Errorf("journal of order 2: got %q, want %q", inputs, want)
		}
		// The rejection carries the correlation of the event that started it all.
		var placed, rejected annals.RecordedEvent
		for ev, err := range s.ReadStream(context.Background(), "order-2", nil) {
			if err != nil {
				t.Fatal(err)
			}
			if ev.Type == "Placed" {
				placed = ev
			} else {
				rejected = ev
			}
		}
		md, err := codec.ParseMetadata(rejected.Metadata)
		if err != nil {
			t.Fatal(err)
		}
		if md.CorrelationID != placed.ID.String() || md.CausationID != placed.ID.String() {
			t.Errorf("rejection metadata %s: want correlation and causation %s", rejected.Metadata, placed.ID)
		}
	})
}

func TestDeadlines(t *testing.T) {
	teststores.Each(t, func(t *testing.T, s annals.Store) {
		h := &handlers{store: s, seen: map[string]bool{}}
		const window = time.Second
		r := newRunner(t, s, h, window)
		start(t, r)
		append1(t, s, "order-paid", "Placed", `{"SKU":"apple"}`)
		append1(t, s, "order-late", "Placed", `{"SKU":"pear"}`)
		testwait.Until(t, "two payment deadlines", func() bool { return len(r.Status().Pending) == 2 })
		append1(t, s, "order-paid", "Paid", `{}`)
		// The payment cancels its order's deadline at once.
		testwait.Until(t, "the paid order's deadline cancelled", func() bool {
			p := r.Status().Pending
			return len(p) == 1 && p[0].Instance == "late"
		})
		testwait.Until(t, "the late order cancelled", func() bool { return slices.Equal(types(t, s, "order-late"), []string{"Placed", "Cancelled"}) })
		// The paid order's deadline was cancelled: once the late one has fired (both were due
		// at about the same time), none is pending, and the paid order was not cancelled.
		testwait.Until(t, "no deadline pending", func() bool { return len(r.Status().Pending) == 0 })
		if got := types(t, s, "order-paid"); !slices.Equal(got, []string{"Placed", "Paid"}) {
			t.Errorf("paid order: got %q, want Placed, Paid", got)
		}
	})
}

// TestDeadlineSurvivesRestart stops the runner while a deadline is pending and starts a new one
// after it is due: the new runner fires it, once.
func TestDeadlineSurvivesRestart(t *testing.T) {
	teststores.Each(t, func(t *testing.T, s annals.Store) {
		h := &handlers{store: s, seen: map[string]bool{}}
		const window = 200 * time.Millisecond
		r := newRunner(t, s, h, window)
		stop := start(t, r)
		append1(t, s, "order-1", "Placed", `{"SKU":"apple"}`)
		testwait.Until(t, "the payment deadline", func() bool { return len(r.Status().Pending) == 1 })
		due := r.Status().Pending[0].At
		if err := stop(); !errors.Is(err, context.Canceled) {
			t.Fatalf("Run after cancel: got %v, want context.Canceled", err)
		}
		testwait.Until(t, "the deadline to pass", func() bool { return time.Now().After(due) })

		r2 := newRunner(t, s, h, window)
		stop2 := start(t, r2)
		testwait.Until(t, "the order cancelled", func() bool { return slices.Equal(types(t, s, "order-1"), []string{"Placed", "Cancelled"}) })
		testwait.Until(t, "no deadline pending", func() bool { return len(r2.Status().Pending) == 0 })
		stop2()

		// A third runner finds nothing left to do: no command is sent again.
		h.mu.Lock()
		sent := len(h.sent)
		h.mu.Unlock()
		r3 := newRunner(t, s, h, window)
		stop3 := start(t, r3)
		append1(t, s, "order-marker", "Paid", `{}`) // handled after everything before it
		testwait.Until(t, "the marker", func() bool { return r3.Status().Position >= lastPosition(t, s) })
		stop3()
		h.mu.Lock()
		defer h.mu.Unlock()
		if len(h.sent) != sent {
			t.Errorf("a restarted runner sent %q again", h.sent[sent:])
		}
	})
}

// lastPosition returns the position of the last event the test manager follows.
func lastPosition(t *testing.T, s annals.Store) uint64 {
	t.Helper()
	filter := orderManager(0).Filter
	for ev, err := range s.ReadAll(context.Background(), &annals.ReadOptions{Backwards: true, From: annals.End, Limit: 1, Filter: filter}) {
		if err != nil {
			t.Fatal(err)
		}
		return ev.Position
	}
	return 0
}

// TestResendAfterFailure fails the runner between two commands of one input (as a crash would
// between sending and journaling): after a restart both are sent, the first again with the
// same idempotency key, so each takes effect once; and an event delivered again is not
// handled twice.
func TestResendAfterFailure(t *testing.T) {
	teststores.Each(t, func(t *testing.T, s annals.Store) {
		mgr := orderManager(time.Hour)
		react := mgr.React
		mgr.React = func(id string, st orderState, in process.Input[any]) []process.Action {
			acts := react(id, st, in)
			if _, ok := in.Event.(placed); ok {
				acts = append(acts, process.Send{Stream: "order-" + id, Command: cancel{"x"}})
			}
			return acts
		}
		var failing sync.Mutex
		failNext := true
		h := &handlers{store: s, seen: map[string]bool{}, fail: func(cmd process.Command) bool {
			failing.Lock()
			defer failing.Unlock()
			if _, ok := cmd.Command.(cancel); ok && failNext {
				failNext = false
				return true
			}
			return false
		}}
		r, err := process.NewRunner(s, mgr, h.send, nil)
		if err != nil {
			t.Fatal(err)
		}
		append1(t, s, "order-1", "Placed", `{"SKU":"apple"}`)
		if err := r.Run(context.Background()); !errors.Is(err, annals.ErrClosed) {
			t.Fatalf("Run: got %v, want the send failure (annals.ErrClosed)", err)
		}
		if got := types(t, s, "orderflow-1"); got != nil {
			t.Fatalf("journal after the failure: %q, want none", got)
		}
		stop := start(t, r)
		testwait.Until(t, "the order handled", func() bool { return slices.Equal(types(t, s, "order-1"), []string{"Placed", "Cancelled"}) })
		testwait.Until(t, "the runner to catch up", func() bool { return r.Status().Position >= lastPosition(t, s) })
		stop()
		steps := len(types(t, s, "orderflow-1"))
		if got, want := types(t, s, "stock-apple"), []string{"Reserved"}; !slices.Equal(got, want) {
			t.Errorf("stock-apple: got %q, want %q (one reservation despite two sends)", got, want)
		}
		if got, want := types(t, s, "order-1"), []string{"Placed", "Cancelled"}; !slices.Equal(got, want) {
			t.Errorf("order-1: got %q, want %q", got, want)
		}
		h.mu.Lock()
		want := []string{"stock-apple process_test.reserve", "order-1 process_test.cancel", "stock-apple process_test.reserve", "order-1 process_test.cancel"}
		if diff := cmp.Diff(want, h.sent); diff != "" {
			t.Errorf("commands sent (-want +got):\n%s", diff)
		}
		h.mu.Unlock()

		// Replay the log from the start, as after widening the manager's filter: the journal
		// recognises every event already handled, and nothing is sent again.
		r2, err := process.NewRunner(s, mgr, h.send, &process.RunnerOptions{From: 1})
		if err != nil {
			t.Fatal(err)
		}
		stop2 := start(t, r2)
		testwait.Until(t, "the replay to catch up", func() bool { return r2.Status().Position >= lastPosition(t, s) })
		stop2()
		h.mu.Lock()
		defer h.mu.Unlock()
		if len(h.sent) != len(want) {
			t.Errorf("a replay sent commands again: %q", h.sent[len(want):])
		}
		if got := types(t, s, "orderflow-1"); len(got) != steps {
			t.Errorf("journal after the replay: %d steps, want %d as before", len(got), steps)
		}
	})
}

func TestInvalidManager(t *testing.T) {
	s := memstore.New(nil)
	defer s.Close()
	send := func(context.Context, process.Command) error { return nil }
	for _, tc := range []struct {
		name string
		edit func(*process.Manager[orderState, any])
	}{
		{"empty name", func(m *process.Manager[orderState, any]) { m.Name = "" }},
		{"dash in name", func(m *process.Manager[orderState, any]) { m.Name = "order-flow" }},
		{"reserved name", func(m *process.Manager[orderState, any]) { m.Name = "$flow" }},
		{"no React", func(m *process.Manager[orderState, any]) { m.React = nil }},
		{"no Decode", func(m *process.Manager[orderState, any]) { m.Decode = nil }},
		{"bad filter", func(m *process.Manager[orderState, any]) { m.Filter = &annals.Filter{Categories: []string{""}} }},
	} {
		m := orderManager(time.Hour)
		tc.edit(&m)
		_, err := process.NewRunner(s, m, send, nil)
		if !errors.Is(err, process.ErrInvalidManager) && !errors.Is(err, annals.ErrInvalidArgument) {
			t.Errorf("%s: got %v, want ErrInvalidManager or ErrInvalidArgument", tc.name, err)
		}
	}
}

// TestWaitFor waits for a position before the runner has started: the wait ends once the
// runner, resuming from its journals, has handled everything up to it.
func TestWaitFor(t *testing.T) {
	teststores.Each(t, func(t *testing.T, s annals.Store) {
		h := &handlers{store: s, seen: map[string]bool{}}
		r := newRunner(t, s, h, time.Hour)
		stop := start(t, r)
		append1(t, s, "order-1", "Placed", `{"SKU":"apple"}`)
		testwait.Until(t, "the reservation", func() bool { return len(types(t, s, "stock-apple")) == 1 })
		ctx := testwait.Context(t)
		if err := r.WaitFor(ctx, lastPosition(t, s)); err != nil {
			t.Fatal(err)
		}
		stop()

		r2 := newRunner(t, s, h, time.Hour)
		done := make(chan error, 1)
		go func() { done <- r2.WaitFor(ctx, lastPosition(t, s)) }()
		start(t, r2)
		if err := <-done; err != nil {
			t.Errorf("WaitFor on a restarted runner: %v", err)
		}
		if err := r2.WaitFor(ctx, 0); err != nil {
			t.Errorf("WaitFor(0): %v", err)
		}
		short, cancelShort := context.WithTimeout(context.Background(), 50*time.Millisecond)
		defer cancelShort()
		append1(t, s, "order-2", "Placed", `{"SKU":"pear"}`)
		stopped := newRunner(t, s, h, time.Hour) // never run: it cannot reach the new event
		if err := stopped.WaitFor(short, lastPosition(t, s)); !errors.Is(err, context.DeadlineExceeded) {
			t.Errorf("WaitFor on a runner that does not run: %v, want context.DeadlineExceeded", err)
		}
	})
}

// TestDeadlineAfterLateRestart stops the runner while a deadline is pending, records the
// payment before the deadline, and starts a runner only after the deadline: the payment counts,
// as it would have for a runner that never stopped.
func TestDeadlineAfterLateRestart(t *testing.T) {
	teststores.Each(t, func(t *testing.T, s annals.Store) {
		h := &handlers{store: s, seen: map[string]bool{}}
		const window = 300 * time.Millisecond
		r := newRunner(t, s, h, window)
		stop := start(t, r)
		append1(t, s, "order-1", "Placed", `{"SKU":"apple"}`)
		testwait.Until(t, "the payment deadline", func() bool { return len(r.Status().Pending) == 1 })
		due := r.Status().Pending[0].At
		stop()
		append1(t, s, "order-1", "Paid", `{}`)
		testwait.Until(t, "the deadline to pass", func() bool { return time.Now().After(due) })

		r2 := newRunner(t, s, h, window)
		start(t, r2)
		testwait.Until(t, "the runner to catch up", func() bool { return r2.Status().Position >= lastPosition(t, s) })
		testwait.Until(t, "no deadline pending", func() bool { return len(r2.Status().Pending) == 0 })
		if got := types(t, s, "order-1"); !slices.Equal(got, []string{"Placed", "Paid"}) {
			t.Errorf("order-1: got %q, want Placed, Paid (paid before the deadline)", got)
		}
	})
}

// TestDeadlineOrder: a deadline set and cancelled by one input is not pending, live or after a
// restart (the journal keeps the order of React's actions); and a Send of a nil command is
// refused cleanly rather than a panic.
func TestDeadlineOrder(t *testing.T) {
	teststores.Each(t, func(t *testing.T, s annals.Store) {
		m := orderManager(time.Hour)
		m.React = func(_ string, _ orderState, in process.Input[any]) []process.Action {
			switch in.Event.(type) {
			case placed:
				return []process.Action{process.SetDeadline{Name: "x", After: time.Hour}, process.CancelDeadline{Name: "x"},
					process.SetDeadline{Name: "y", After: time.Hour}}
			case nilEvent:
				return []process.Action{process.Send{Stream: "order-1"}}
			}
			return nil
		}
		send := func(context.Context, process.Command) error { return process.Refused(errors.New("no command")) }
		r, err := process.NewRunner(s, m, send, nil)
		if err != nil {
			t.Fatal(err)
		}
		stop := start(t, r)
		append1(t, s, "order-1", "Placed", `{}`)
		append1(t, s, "order-1", "Nil", `{}`)
		testwait.Until(t, "the runner to catch up", func() bool { return r.Status().Position >= lastPosition(t, s) })
		if err := stop(); !errors.Is(err, context.Canceled) {
			t.Fatalf("Run: %v", err)
		}
		names := func(st process.Status) (out []string) {
			for _, p := range st.Pending {
				out = append(out, p.Name)
			}
			return out
		}
		if got := names(r.Status()); !slices.Equal(got, []string{"y"}) {
			t.Errorf("pending live: %q, want [y]", got)
		}
		r2, err := process.NewRunner(s, m, send, nil)
		if err != nil {
			t.Fatal(err)
		}
		start(t, r2)
		testwait.Until(t, "the restarted runner's deadlines", func() bool { return len(r2.Status().Pending) > 0 })
		if got := names(r2.Status()); !slices.Equal(got, []string{"y"}) {
			t.Errorf("pending after a restart: %q, want [y]", got)
		}
	})
}
