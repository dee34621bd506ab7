package process_test

import (
	"context"
	"errors"
	"fmt"
	"iter"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/annalsdb/annals"
	"github.com/annalsdb/annals/codec"
	"github.com/annalsdb/annals/decider"
	"github.com/annalsdb/annals/internal/teststores"
	"github.com/annalsdb/annals/internal/testwait"
	"github.com/annalsdb/annals/memstore"
	"github.com/annalsdb/annals/process"
	"github.com/annalsdb/annals/supervisor"
)

// The deciders of the test domain: a stock ("stock-<sku>") reserves for any order but of the
// SKU "none"; an order ("order-<id>") records its rejection or cancellation.

var stockDecider = decider.Decider[struct{}, reserve, reserved]{
	Initial: func() struct{} { return struct{}{} },
	Decide: func(_ struct{}, c reserve) ([]reserved, error) {
		if c.SKU == "none" {
			return nil, errNoStock
		}
		return []reserved{{Order: c.Order}}, nil
	},
	Evolve: func(s struct{}, _ reserved) struct{} { return s },
}

var orderDecider = decider.Decider[struct{}, any, any]{
	Initial: func() struct{} { return struct{}{} },
	Decide: func(_ struct{}, c any) ([]any, error) {
		switch c := c.(type) {
		case reject:
			return []any{rejected{Reason: c.Reason}}, nil
		case cancel:
			return []any{cancelled{}}, nil
		}
		return nil, fmt.Errorf("unknown order command %T", c)
	},
	Evolve: func(s struct{}, _ any) struct{} { return s },
}

func validateReserve(c reserve) error {
	if c.Order == "" {
		return errors.New("reserve: no order")
	}
	return nil
}

func stockHandler(t *testing.T, s decider.EventStore) *decider.Handler[struct{}, reserve, reserved] {
	t.Helper()
	h, err := decider.NewHandler(s, testRegistry(), stockDecider, &decider.Options[reserve]{Validate: validateReserve})
	if err != nil {
		t.Fatal(err)
	}
	return h
}

// deciderSender routes stock commands to stock's handler and order commands to order's.
func deciderSender(t *testing.T, stock, order decider.EventStore) process.Sender {
	t.Helper()
	oh, err := decider.NewHandler(order, testRegistry(), orderDecider, nil)
	if err != nil {
		t.Fatal(err)
	}
	send, err := process.HandlerSender(process.To("stock", stockHandler(t, stock)), process.To("order", oh))
	if err != nil {
		t.Fatal(err)
	}
	return send
}

// unreachable fails every read and append, as a store that cannot be reached does.
type unreachable struct{ annals.Store }

var errUnreachable = errors.New("store unreachable")

func (unreachable) ReadStream(context.Context, string, *annals.ReadOptions) iter.Seq2[annals.RecordedEvent, error] {
	return func(yield func(annals.RecordedEvent, error) bool) { yield(annals.RecordedEvent{}, errUnreachable) }
}

func (unreachable) Append(context.Context, string, annals.ExpectedRevision, ...annals.Event) (annals.AppendResult, error) {
	return annals.AppendResult{}, errUnreachable
}

// TestHandlerSender sends commands to deciders: the idempotency key makes a command sent
// twice take effect once, the correlation and causation ids land on the events, refusals of
// the domain come back as process refusals, and failures and misrouted commands do not.
func TestHandlerSender(t *testing.T) {
	ctx := context.Background()
	s := memstore.New(nil)
	t.Cleanup(func() { s.Close() })
	send := deciderSender(t, s, s)

	cmd := process.Command{Stream: "stock-apple", Command: reserve{"1", "apple"}, IdempotencyKey: "key-1", CorrelationID: "corr-1", CausationID: "cause-1"}
	for range 2 {
		if err := send(ctx, cmd); err != nil {
			t.Fatal(err)
		}
	}
	evs := readAll(t, s, "stock-apple")
	if len(evs) != 1 {
		t.Fatalf("a command sent twice with one key: %d events, want 1", len(evs))
	}
	md, err := codec.ParseMetadata(evs[0].Metadata)
	if err != nil {
		t.Fatal(err)
	}
	if md.IdempotencyKey != "key-1" || md.CorrelationID != "corr-1" || md.CausationID != "cause-1" {
		t.Errorf("metadata %s: want key key-1, correlation corr-1, causation cause-1", evs[0].Metadata)
	}
	cmd.IdempotencyKey = "key-2"
	if err := send(ctx, cmd); err != nil {
		t.Fatal(err)
	}
	if n := len(readAll(t, s, "stock-apple")); n != 2 {
		t.Errorf("the command with another key: %d events, want 2", n)
	}

	broken := deciderSender(t, unreachable{s}, s)
	for _, tc := range []struct {
		name    string
		send    process.Sender
		cmd     process.Command
		refused bool
		is      error
	}{
		{"rule", send, process.Command{Stream: "stock-none", Command: reserve{"2", "none"}}, true, errNoStock},
		{"validation", send, process.Command{Stream: "stock-apple", Command: reserve{"", "apple"}}, true, decider.ErrInvalidCommand},
		{"store unreachable", broken, process.Command{Stream: "stock-apple", Command: reserve{"3", "apple"}}, false, errUnreachable},
		{"wrong command type", send, process.Command{Stream: "stock-apple", Command: cancel{"3"}}, false, process.ErrNoHandler},
		{"pointer command", send, process.Command{Stream: "stock-apple", Command: &reserve{"3", "apple"}}, false, process.ErrNoHandler},
		{"nil command", send, process.Command{Stream: "stock-apple"}, false, process.ErrNoHandler},
		{"no route", send, process.Command{Stream: "invoice-1", Command: reserve{"3", "apple"}}, false, process.ErrNoHandler},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.send(ctx, tc.cmd)
			if err == nil {
				t.Fatal("got no error")
			}
			if got := errors.Is(err, process.ErrRefused); got != tc.refused {
				t.Errorf("errors.Is(%v, process.ErrRefused): got %v, want %v", err, got, tc.refused)
			}
			if !errors.Is(err, tc.is) {
				t.Errorf("got %v, want an error matching %v", err, tc.is)
			}
		})
	}
	if n := len(readAll(t, s, "stock-apple")); n != 2 {
		t.Errorf("stock-apple after the failures: %d events, want 2", n)
	}
}

func TestHandlerSenderRoutes(t *testing.T) {
	s := memstore.New(nil)
	t.Cleanup(func() { s.Close() })
	h := stockHandler(t, s)
	for _, tc := range []struct {
		name   string
		routes []process.Route
	}{
		{"zero route", []process.Route{{}}},
		{"nil handler", []process.Route{process.To[struct{}, reserve, reserved]("stock", nil)}},
		{"empty category", []process.Route{process.To("", h)}},
		{"dash in category", []process.Route{process.To("st-ock", h)}},
		{"category twice", []process.Route{process.To("stock", h), process.To("stock", h)}},
	} {
		if _, err := process.HandlerSender(tc.routes...); !errors.Is(err, annals.ErrInvalidArgument) {
			t.Errorf("%s: got %v, want ErrInvalidArgument", tc.name, err)
		}
	}
}

// TestRunnerWithDeciders runs the order manager against deciders through HandlerSender, with
// no RunnerOptions: the refused reservation is compensated, the events caused carry the
// correlation and causation of the event that started it all, and a store that cannot be
// reached stops the runner instead of counting as a refusal.
func TestRunnerWithDeciders(t *testing.T) {
	teststores.Each(t, func(t *testing.T, s annals.Store) {
		r, err := process.NewRunner(s, orderManager(time.Hour), deciderSender(t, s, s), nil)
		if err != nil {
			t.Fatal(err)
		}
		stop := start(t, r)
		append1(t, s, "order-1", "Placed", `{"SKU":"apple"}`)
		append1(t, s, "order-2", "Placed", `{"SKU":"none"}`)
		testwait.Until(t, "the reservation of order 1", func() bool { return slices.Equal(types(t, s, "stock-apple"), []string{"Reserved"}) })
		testwait.Until(t, "the rejection of order 2", func() bool { return slices.Equal(types(t, s, "order-2"), []string{"Placed", "Rejected"}) })
		for _, stream := range []string{"order-1", "order-2"} {
			evs := readAll(t, s, stream)
			caused := readAll(t, s, "stock-apple")[0]
			if stream == "order-2" {
				caused = evs[1]
			}
			md, err := codec.ParseMetadata(caused.Metadata)
			if err != nil {
				t.Fatal(err)
			}
			if id := evs[0].ID.String(); md.CorrelationID != id || md.CausationID != id || md.IdempotencyKey == "" {
				t.Errorf("%s@%d caused by %s: metadata %s, want correlation and causation %s and a key", caused.Stream, caused.Revision, stream, caused.Metadata, id)
			}
		}

		// A runner whose stock store cannot be reached retries the next order, which stays
		// unhandled (not refused).
		testwait.Until(t, "the runner to catch up", func() bool { return r.Status().Position >= lastPosition(t, s) })
		stop()
		append1(t, s, "order-4", "Placed", `{"SKU":"plum"}`)
		r2, err := process.NewRunner(s, orderManager(time.Hour), deciderSender(t, unreachable{s}, s), nil)
		if err != nil {
			t.Fatal(err)
		}
		stop2 := start(t, r2)
		testwait.UntilNil(t, "the runner retrying on the store's error", func() error {
			st := r2.Status().Supervisor
			if st.State != supervisor.Retrying || !errors.Is(st.Err, errUnreachable) || errors.Is(st.Err, process.ErrRefused) {
				return fmt.Errorf("supervisor status %+v, want retrying on the store's error, not a refusal", st)
			}
			return nil
		})
		stop2()
		if got := types(t, s, "order-4"); !slices.Equal(got, []string{"Placed"}) {
			t.Errorf("order-4: %q, want only Placed (not rejected)", got)
		}
	})
}

// readAll returns the events of stream.
func readAll(t *testing.T, s annals.Store, stream string) []annals.RecordedEvent {
	t.Helper()
	var out []annals.RecordedEvent
	for ev, err := range s.ReadStream(context.Background(), stream, nil) {
		if errors.Is(err, annals.ErrStreamNotFound) {
			return nil
		}
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, ev)
	}
	return out
}

// TestDecodeOnce counts the calls of Decode: each event is decoded once, however many of
// Instance, React and Evolve use it.
func TestDecodeOnce(t *testing.T) {
	s := memstore.New(nil)
	t.Cleanup(func() { s.Close() })
	m := orderManager(time.Hour)
	var mu sync.Mutex
	decoded := map[annals.UUID]int{}
	decode := m.Decode
	m.Decode = func(ev annals.RecordedEvent) (any, bool, error) {
		mu.Lock()
		decoded[ev.ID]++
		mu.Unlock()
		return decode(ev)
	}
	h := &handlers{store: s, seen: map[string]bool{}}
	r, err := process.NewRunner(s, m, h.send, nil)
	if err != nil {
		t.Fatal(err)
	}
	start(t, r)
	append1(t, s, "order-1", "Placed", `{"SKU":"apple"}`)
	append1(t, s, "order-1", "Paid", `{}`)
	testwait.Until(t, "the reservation", func() bool { return len(types(t, s, "stock-apple")) == 1 })
	testwait.Until(t, "the runner to catch up", func() bool { return r.Status().Position >= lastPosition(t, s) })
	mu.Lock()
	defer mu.Unlock()
	if len(decoded) != 3 {
		t.Errorf("decoded %d events, want 3 (Placed, Paid, Reserved)", len(decoded))
	}
	for id, n := range decoded {
		if n != 1 {
			t.Errorf("event %s decoded %d times, want once", id, n)
		}
	}
}

// TestDecodeErrors: an event the manager follows that does not decode stops the runner with
// an error that names it; so does a journaled event that no longer decodes when its instance
// is loaded.
func TestDecodeErrors(t *testing.T) {
	for _, tc := range []struct {
		name, typ, data string
		is              error
	}{
		{"bad body", "Placed", `{"SKU":1}`, codec.ErrDecode},
		{"unknown type", "Mystery", `{}`, codec.ErrUnknownType},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := memstore.New(nil)
			t.Cleanup(func() { s.Close() })
			h := &handlers{store: s, seen: map[string]bool{}}
			r := newRunner(t, s, h, time.Hour)
			append1(t, s, "order-1", "Placed", `{"SKU":"apple"}`)
			append1(t, s, "order-9", tc.typ, tc.data)
			err := r.Run(testwait.Context(t))
			if !errors.Is(err, process.ErrDecode) || !errors.Is(err, tc.is) || !strings.Contains(err.Error(), "order-9@0") || !strings.Contains(err.Error(), tc.typ) {
				t.Fatalf("Run: got %v, want ErrDecode and %v naming order-9@0 (%s)", err, tc.is, tc.typ)
			}
			if got := types(t, s, "orderflow-9"); got != nil {
				t.Errorf("journal of the undecodable event: %q, want none", got)
			}
		})
	}
	t.Run("journal", func(t *testing.T) {
		s := memstore.New(nil)
		t.Cleanup(func() { s.Close() })
		h := &handlers{store: s, seen: map[string]bool{}}
		r := newRunner(t, s, h, time.Hour)
		stop := start(t, r)
		append1(t, s, "order-1", "Placed", `{"SKU":"apple"}`)
		testwait.Until(t, "the runner to catch up", func() bool { return r.Status().Position >= lastPosition(t, s) })
		stop()
		m := orderManager(time.Hour)
		m.Decode = func(ev annals.RecordedEvent) (any, bool, error) { return nil, false, nil } // ignores everything now
		r2, err := process.NewRunner(s, m, h.send, nil)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := r2.State(context.Background(), "1"); !errors.Is(err, process.ErrDecode) || !strings.Contains(err.Error(), "order-1@0") {
			t.Errorf("State of an instance whose journal no longer decodes: got %v, want ErrDecode naming order-1@0", err)
		}
	})
}

// TestDefaultIsRefusal: a Sender of its own that returns a decider's refusal as it is (not
// marked with process.Refused) is compensated for by a runner with the default IsRefusal.
func TestDefaultIsRefusal(t *testing.T) {
	s := memstore.New(nil)
	t.Cleanup(func() { s.Close() })
	stock := stockHandler(t, s)
	h := &handlers{store: s, seen: map[string]bool{}}
	send := func(ctx context.Context, cmd process.Command) error {
		if c, ok := cmd.Command.(reserve); ok {
			_, err := stock.Handle(ctx, cmd.Stream, c, &decider.CommandOptions{IdempotencyKey: cmd.IdempotencyKey})
			return err
		}
		return h.send(ctx, cmd)
	}
	r, err := process.NewRunner(s, orderManager(time.Hour), send, nil)
	if err != nil {
		t.Fatal(err)
	}
	start(t, r)
	append1(t, s, "order-1", "Placed", `{"SKU":"none"}`)
	testwait.Until(t, "the rejection of order 1", func() bool { return slices.Equal(types(t, s, "order-1"), []string{"Placed", "Rejected"}) })
}
