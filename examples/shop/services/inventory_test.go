package services_test

import (
	"context"
	"errors"
	"fmt"
	"iter"
	"slices"
	"sync"
	"testing"

	"github.com/annalsdb/annals"
	"github.com/annalsdb/annals/decider"
	"github.com/annalsdb/annals/examples/shop/cart"
	"github.com/annalsdb/annals/examples/shop/inventory"
	"github.com/annalsdb/annals/examples/shop/services"
	"github.com/annalsdb/annals/groups"
	"github.com/annalsdb/annals/memstore"
)

// flakyStore is a store whose allocation streams misbehave once each, as seen by a handling
// that dies or is slow: failAppend fails the first append to an allocation stream (the
// handling dies before recording its outcome), hideRead answers the first read of one as if
// the stream did not exist (the handling read before another recorded the outcome).
type flakyStore struct {
	annals.Store
	failAppend, hideRead bool
	mu                   struct {
		sync.Mutex
		appended, read bool
	}
}

var errDied = errors.New("test: the handling died")

func (s *flakyStore) Append(ctx context.Context, stream string, expected annals.ExpectedRevision, events ...annals.Event) (annals.AppendResult, error) {
	if _, ok := inventory.AllocationOrder(stream); ok && s.failAppend {
		s.mu.Lock()
		first := !s.mu.appended
		s.mu.appended = true
		s.mu.Unlock()
		if first {
			return annals.AppendResult{}, errDied
		}
	}
	return s.Store.Append(ctx, stream, expected, events...)
}

func (s *flakyStore) ReadStream(ctx context.Context, stream string, opts *annals.ReadOptions) iter.Seq2[annals.RecordedEvent, error] {
	if _, ok := inventory.AllocationOrder(stream); ok && s.hideRead {
		s.mu.Lock()
		first := !s.mu.read
		s.mu.read = true
		s.mu.Unlock()
		if first {
			return func(yield func(annals.RecordedEvent, error) bool) {
				yield(annals.RecordedEvent{}, annals.ErrStreamNotFound)
			}
		}
	}
	return s.Store.ReadStream(ctx, stream, opts)
}

// TestInventoryHandlesAnOrderOnce hands the inventory the same OrderPlaced twice, for an order
// whose first line (apple) is in stock and whose second (pear) is not, where the first handling
// stops before recording its outcome, or where the second read the allocation before the first
// recorded it. Each product's stream must record the order's reservation once (apple: one
// StockReserved, one StockReleased), and the allocation the one OrderOutOfStock.
func TestInventoryHandlesAnOrderOnce(t *testing.T) {
	for _, c := range []struct {
		name                 string
		failAppend, hideRead bool
		firstErr             error
	}{
		{name: "first dies before its outcome", failAppend: true, firstErr: errDied},
		{name: "second read before the first's outcome", hideRead: true},
	} {
		t.Run(c.name, func(t *testing.T) {
			ctx := context.Background()
			mem := memstore.New(nil)
			store := &flakyStore{Store: mem, failAppend: c.failAppend}
			inv, err := services.NewInventory(store)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := inv.Stock().Handle(ctx, inventory.Stream("apple"), inventory.Restock{Qty: 10}, nil); err != nil {
				t.Fatal(err)
			}
			placed := placeOrder(t, mem, "carol", []cart.AddItem{{SKU: "apple", Qty: 2, UnitPrice: 50}, {SKU: "pear", Qty: 1, UnitPrice: 80}})

			err = inv.Handle(ctx, groups.Message{Event: placed})
			if !errors.Is(err, c.firstErr) {
				t.Fatalf("first handling: %v, want %v", err, c.firstErr)
			}
			store.hideRead = c.hideRead // the second handling's read of the allocation is stale
			if err := inv.Handle(ctx, groups.Message{Event: placed, Retries: 1}); err != nil {
				t.Fatalf("second handling: %v", err)
			}
			if err := inv.Handle(ctx, groups.Message{Event: placed, Retries: 2}); err != nil {
				t.Fatalf("third handling: %v", err)
			}

			if got, want := types(t, mem, inventory.Stream("apple")), []string{inventory.TypeRestocked, inventory.TypeReserved, inventory.TypeReleased}; !slices.Equal(got, want) {
				t.Errorf("stock-apple: %v, want %v", got, want)
			}
			if got := types(t, mem, inventory.Stream("pear")); len(got) != 0 {
				t.Errorf("stock-pear: %v, want nothing", got)
			}
			if got, want := types(t, mem, inventory.AllocationStream("carol")), []string{inventory.TypeOrderOutOfStock}; !slices.Equal(got, want) {
				t.Errorf("allocation-carol: %v, want %v", got, want)
			}
			st, err := inv.Stock().Load(ctx, inventory.Stream("apple"), nil)
			if err != nil {
				t.Fatal(err)
			}
			if st.Value.OnHand != 10 || len(st.Value.Reserved) != 0 {
				t.Errorf("apple: on hand %d, reserved %v; want 10, nothing reserved", st.Value.OnHand, st.Value.Reserved)
			}
		})
	}
}

// placeOrder adds the lines to the cart id and places the order, and returns the OrderPlaced
// recorded.
func placeOrder(t *testing.T, store annals.Store, id string, lines []cart.AddItem) annals.RecordedEvent {
	t.Helper()
	ctx := context.Background()
	reg, err := services.Registry()
	if err != nil {
		t.Fatal(err)
	}
	carts, err := decider.NewHandler(store, reg, cart.Decider, nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range lines {
		if _, err := carts.Handle(ctx, cart.Stream(id), l, nil); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := carts.Handle(ctx, cart.Stream(id), cart.PlaceOrder{}, nil); err != nil {
		t.Fatal(err)
	}
	for ev, err := range store.ReadStream(ctx, cart.Stream(id), nil) {
		if err != nil {
			t.Fatal(err)
		}
		if ev.Type == cart.TypeOrderPlaced {
			return ev
		}
	}
	t.Fatalf("no OrderPlaced in %s", cart.Stream(id))
	return annals.RecordedEvent{}
}

// types returns the types of the events of stream, none if it does not exist.
func types(t *testing.T, store annals.Store, stream string) []string {
	t.Helper()
	var got []string
	for ev, err := range store.ReadStream(context.Background(), stream, nil) {
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

// hookStore calls before (once, then forgets it) ahead of the next append that reaches it.
type hookStore struct {
	annals.Store
	appends int // appends that reached the store while counting
	at      int // the append (counted from 1) ahead of which before runs; 0 for none
	before  func()
}

func (s *hookStore) Append(ctx context.Context, stream string, expected annals.ExpectedRevision, events ...annals.Event) (annals.AppendResult, error) {
	if s.at > 0 {
		s.appends++
		if s.appends == s.at {
			s.at = 0
			s.before()
		}
	}
	return s.Store.Append(ctx, stream, expected, events...)
}

// TestInventoryConcurrentHandlings runs a second handling of an OrderPlaced (on another
// replica: its own Inventory and cache) in full ahead of each append of the first handling, the
// interleavings of two replicas handling the order at once. The order's apple is in stock and
// its pear is not; in the second handling's run pear may come back in stock (another order
// released it). Whatever the interleaving, the outcome recorded must be the state of the
// stock: an order allocated has every line reserved once; an order out of stock has nothing
// left reserved, and each product records its reservation at most once.
func TestInventoryConcurrentHandlings(t *testing.T) {
	for _, pearBack := range []bool{false, true} {
		for at := 1; ; at++ {
			ctx := context.Background()
			mem := memstore.New(nil)
			store := &hookStore{Store: mem}
			first, err := services.NewInventory(store)
			if err != nil {
				t.Fatal(err)
			}
			second, err := services.NewInventory(mem)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := first.Stock().Handle(ctx, inventory.Stream("apple"), inventory.Restock{Qty: 10}, nil); err != nil {
				t.Fatal(err)
			}
			placed := placeOrder(t, mem, "dave", []cart.AddItem{{SKU: "apple", Qty: 2, UnitPrice: 50}, {SKU: "pear", Qty: 1, UnitPrice: 80}})
			ran := false
			store.at, store.before = at, func() {
				ran = true
				if pearBack {
					if _, err := second.Stock().Handle(ctx, inventory.Stream("pear"), inventory.Restock{Qty: 1}, nil); err != nil {
						t.Fatal(err)
					}
				}
				if err := second.Handle(ctx, groups.Message{Event: placed}); err != nil {
					t.Errorf("pear back %v, ahead of append %d: second handling: %v", pearBack, at, err)
				}
			}
			if err := first.Handle(ctx, groups.Message{Event: placed}); err != nil {
				t.Errorf("pear back %v, ahead of append %d: first handling: %v", pearBack, at, err)
			}
			if !ran {
				break // the first handling made fewer appends: every interleaving is done
			}
			checkOrder(t, ctx, mem, second, "dave", map[string]int{"apple": 2, "pear": 1}, fmt.Sprintf("pear back %v, ahead of append %d", pearBack, at))
		}
	}
}

// checkOrder checks that the stock agrees with the outcome recorded for the order.
func checkOrder(t *testing.T, ctx context.Context, store annals.Store, inv *services.Inventory, order string, lines map[string]int, where string) {
	t.Helper()
	outcome := types(t, store, inventory.AllocationStream(order))
	if len(outcome) != 1 {
		t.Errorf("%s: allocation %v, want one outcome", where, outcome)
		return
	}
	allocated := outcome[0] == inventory.TypeOrderAllocated
	for sku, qty := range lines {
		var perOrder []string
		for ev, err := range store.ReadStream(ctx, inventory.Stream(sku), nil) {
			if errors.Is(err, annals.ErrStreamNotFound) {
				break
			}
			if err != nil {
				t.Fatal(err)
			}
			if ev.Type != inventory.TypeRestocked {
				perOrder = append(perOrder, ev.Type)
			}
		}
		st, err := inv.Stock().Load(ctx, inventory.Stream(sku), nil)
		if err != nil {
			t.Fatal(err)
		}
		if allocated {
			if want := []string{inventory.TypeReserved}; !slices.Equal(perOrder, want) || st.Value.Reserved[order] != qty {
				t.Errorf("%s: allocated, yet %s records %v and reserves %d; want %v, %d", where, sku, perOrder, st.Value.Reserved[order], want, qty)
			}
			continue
		}
		if len(perOrder) != 0 && !slices.Equal(perOrder, []string{inventory.TypeReserved, inventory.TypeReleased}) {
			t.Errorf("%s: out of stock, yet %s records %v; want nothing or [StockReserved StockReleased]", where, sku, perOrder)
		}
		if q, ok := st.Value.Reserved[order]; ok {
			t.Errorf("%s: out of stock, yet %d %s left reserved", where, q, sku)
		}
	}
}
