package decider_test

import (
	"context"
	"errors"
	"fmt"
	"iter"
	"maps"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/annalsdb/annals"
	"github.com/annalsdb/annals/codec"
	"github.com/annalsdb/annals/decider"
	"github.com/annalsdb/annals/filestore"
	"github.com/annalsdb/annals/memstore"
)

// The test domain: a shopping cart.

type cartEvent interface{ isCartEvent() }

type ItemAdded struct {
	SKU string `json:"sku"`
	Qty int    `json:"qty"`
}
type ItemRemoved struct {
	SKU string `json:"sku"`
}
type CheckedOut struct{}

func (ItemAdded) isCartEvent()   {}
func (ItemRemoved) isCartEvent() {}
func (CheckedOut) isCartEvent()  {}

type cartCmd interface{ isCartCmd() }

type AddItem struct {
	SKU string
	Qty int
}
type AddMany struct{ N int } // N events of one item each
type RemoveItem struct{ SKU string }
type Checkout struct{}
type Nothing struct{} // decides no events

// Peek decides nothing and copies the state it was decided on into *Into: what a handler
// holds for the stream (its cached state, when it has one).
type Peek struct{ Into *cart }

// AddPointer decides a *ItemAdded: Encode takes it, but it decodes as an ItemAdded, which
// evolveCart treats otherwise.
type AddPointer struct{ SKU string }

// Count adds an item named after the number of events the decision saw.
type Count struct{}

// Wrap decides a *Gift, which encodes but decodes as a Gift, not a cartEvent.
type Wrap struct{}

// Gift is a cartEvent only through its pointer.
type Gift struct{}

func (*Gift) isCartEvent() {}

func (AddItem) isCartCmd()    {}
func (AddMany) isCartCmd()    {}
func (RemoveItem) isCartCmd() {}
func (Checkout) isCartCmd()   {}
func (Nothing) isCartCmd()    {}
func (Peek) isCartCmd()       {}
func (AddPointer) isCartCmd() {}
func (Wrap) isCartCmd()       {}
func (Count) isCartCmd()      {}

type cart struct {
	Items  map[string]int `json:"items"`
	Events int            `json:"events"`
	Closed bool           `json:"closed"`
}

var (
	errNotInCart = errors.New("item not in cart")
	errClosed    = errors.New("cart is checked out")
)

func newCart() cart { return cart{Items: map[string]int{}} }

func decideCart(s cart, c cartCmd) ([]cartEvent, error) {
	if p, ok := c.(Peek); ok {
		*p.Into = cart{Items: maps.Clone(s.Items), Events: s.Events, Closed: s.Closed}
		return nil, nil
	}
	if s.Closed {
		return nil, errClosed
	}
	switch c := c.(type) {
	case AddItem:
		return []cartEvent{ItemAdded{SKU: c.SKU, Qty: c.Qty}}, nil
	case AddMany:
		evs := make([]cartEvent, c.N)
		for i := range evs {
			evs[i] = ItemAdded{SKU: fmt.Sprintf("sku-%d", i%7), Qty: 1}
		}
		return evs, nil
	case RemoveItem:
		if s.Items[c.SKU] == 0 {
			return nil, fmt.Errorf("remove %s: %w", c.SKU, errNotInCart)
		}
		return []cartEvent{ItemRemoved{SKU: c.SKU}}, nil
	case Checkout:
		return []cartEvent{CheckedOut{}}, nil
	case Nothing:
		return nil, nil
	case AddPointer:
		return []cartEvent{&ItemAdded{SKU: c.SKU, Qty: 1}}, nil
	case Wrap:
		return []cartEvent{&Gift{}}, nil
	case Count:
		return []cartEvent{ItemAdded{SKU: fmt.Sprintf("seen-%d", s.Events), Qty: 1}}, nil
	}
	return nil, fmt.Errorf("unknown command %T", c)
}

// evolveCart modifies the state's map in place, as real code does: the handler must never
// share a state between goroutines.
func evolveCart(s cart, e cartEvent) cart {
	if s.Items == nil {
		s.Items = map[string]int{}
	}
	switch e := e.(type) {
	case ItemAdded:
		s.Items[e.SKU] += e.Qty
	case ItemRemoved:
		delete(s.Items, e.SKU)
	case CheckedOut:
		s.Closed = true
	}
	s.Events++
	return s
}

var cartDecider = decider.Decider[cart, cartCmd, cartEvent]{Initial: newCart, Decide: decideCart, Evolve: evolveCart}

func validateCart(c cartCmd) error {
	if a, ok := c.(AddItem); ok && (a.Qty <= 0 || a.SKU == "") {
		return fmt.Errorf("add %q: quantity %d must be positive", a.SKU, a.Qty)
	}
	return nil
}

func newRegistry(t testing.TB) *codec.Registry {
	t.Helper()
	reg := codec.New(nil)
	for _, err := range []error{
		codec.Register[ItemAdded](reg, "ItemAdded", nil),
		codec.Register[ItemRemoved](reg, "ItemRemoved", nil),
		codec.Register[CheckedOut](reg, "CheckedOut", nil),
		codec.Register[Gift](reg, "Gift", nil),
	} {
		if err != nil {
			t.Fatal(err)
		}
	}
	return reg
}

func newHandler(t testing.TB, s annals.Store, opts *decider.Options[cartCmd]) *decider.Handler[cart, cartCmd, cartEvent] {
	t.Helper()
	if opts == nil {
		opts = &decider.Options[cartCmd]{}
	}
	if opts.Validate == nil {
		opts.Validate = validateCart
	}
	if opts.OnError == nil {
		opts.OnError = func(err error) { t.Errorf("unexpected report: %v", err) }
	}
	h, err := decider.NewHandler(s, newRegistry(t), cartDecider, opts)
	if err != nil {
		t.Fatal(err)
	}
	return h
}

// reopenable is a store that a test can close and open again, as a restarted process does.
type reopenable struct {
	annals.Store
	reopen func() annals.Store
}

// forEachStore runs f on a fresh memstore and a fresh filestore.
func forEachStore(t *testing.T, f func(t *testing.T, s annals.Store)) {
	t.Run("memstore", func(t *testing.T) {
		s := memstore.New(nil)
		t.Cleanup(func() { s.Close() })
		f(t, &reopenable{Store: s, reopen: func() annals.Store { return s }})
	})
	t.Run("filestore", func(t *testing.T) {
		dir := t.TempDir()
		var cur annals.Store
		open := func() annals.Store {
			if cur != nil {
				if err := cur.Close(); err != nil {
					t.Fatal(err)
				}
			}
			s, err := filestore.Open(dir, nil)
			if err != nil {
				t.Fatal(err)
			}
			cur = s
			return s
		}
		s := open()
		t.Cleanup(func() { cur.Close() })
		f(t, &reopenable{Store: s, reopen: open})
	})
}

// restart closes s and opens it again (memstore: the same store, which is all a new process
// would have).
func restart(t *testing.T, s annals.Store) annals.Store {
	t.Helper()
	r := s.(*reopenable)
	return &reopenable{Store: r.reopen(), reopen: r.reopen}
}

// countingStore counts the events its reads yield, per stream.
type countingStore struct {
	annals.Store
	mu    sync.Mutex
	reads map[string]int
}

func newCountingStore(s annals.Store) *countingStore {
	return &countingStore{Store: s, reads: map[string]int{}}
}

func (c *countingStore) ReadStream(ctx context.Context, stream string, opts *annals.ReadOptions) iter.Seq2[annals.RecordedEvent, error] {
	return func(yield func(annals.RecordedEvent, error) bool) {
		for ev, err := range c.Store.ReadStream(ctx, stream, opts) {
			if err == nil {
				c.mu.Lock()
				c.reads[stream]++
				c.mu.Unlock()
			}
			if !yield(ev, err) {
				return
			}
		}
	}
}

func (c *countingStore) take() map[string]int {
	c.mu.Lock()
	defer c.mu.Unlock()
	r := maps.Clone(c.reads)
	clear(c.reads)
	return r
}

// racingStore appends a competing event to the stream just before each of the next n
// appends to it, so that each of them meets a genuine conflict.
type racingStore struct {
	annals.Store
	stream string
	left   atomic.Int32
	raced  atomic.Int32
}

func (r *racingStore) Append(ctx context.Context, stream string, expected annals.ExpectedRevision, events ...annals.Event) (annals.AppendResult, error) {
	if stream == r.stream && r.left.Add(-1) >= 0 {
		if _, err := r.Store.Append(ctx, stream, annals.Any, annals.Event{Type: "ItemAdded", Data: []byte(`{"sku":"rival","qty":1}`)}); err != nil {
			return annals.AppendResult{}, err
		}
		r.raced.Add(1)
	}
	return r.Store.Append(ctx, stream, expected, events...)
}

// storedEvents returns the decoded events of stream.
func storedEvents(t *testing.T, s annals.Store, stream string) []annals.RecordedEvent {
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

// fold is the oracle: the state after folding the stored events of stream in order.
func fold(t *testing.T, s annals.Store, stream string) cart {
	t.Helper()
	reg := newRegistry(t)
	st := newCart()
	for _, ev := range storedEvents(t, s, stream) {
		e, _, err := codec.Decode[cartEvent](reg, ev)
		if err != nil {
			t.Fatal(err)
		}
		st = evolveCart(st, e)
	}
	return st
}

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	t.Cleanup(cancel)
	return ctx
}
