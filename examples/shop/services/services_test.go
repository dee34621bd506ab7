package services_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"slices"
	"testing"

	"github.com/annalsdb/annals"
	"github.com/annalsdb/annals/decider"
	"github.com/annalsdb/annals/examples/shop/cart"
	"github.com/annalsdb/annals/examples/shop/inventory"
	"github.com/annalsdb/annals/examples/shop/services"
	"github.com/annalsdb/annals/groups"
	"github.com/annalsdb/annals/memstore"
)

// TestServicesHandleEachEventTwice runs the three services over memstore as their groups
// would, but handing every event to its service twice (a redelivery after each handling), and
// checks the stock, the shipments and the notifications: what the orders imply, once.
func TestServicesHandleEachEventTwice(t *testing.T) {
	for _, times := range []int{1, 2, 3} {
		t.Run(fmt.Sprintf("handled %d times", times), func(t *testing.T) {
			got := runShop(t, times)
			want := map[string][]string{
				"stock-apple":                      {"StockRestocked", "StockReserved", "StockReserved", "StockReleased", "StockShipped"},
				"stock-pear":                       {"StockRestocked", "StockReserved", "StockShipped"},
				"allocation-alice":                 {"OrderAllocated"},
				"allocation-bob":                   {"OrderOutOfStock"},
				"shipment-alice":                   {"OrderPrepared", "OrderShipped"},
				"notification-alice-OrderPlaced":   {"NotificationSent"},
				"notification-alice-OrderShipped":  {"NotificationSent"},
				"notification-bob-OrderPlaced":     {"NotificationSent"},
				"notification-bob-OrderOutOfStock": {"NotificationSent"},
				"cart-alice":                       {"ItemAddedToCart", "ItemAddedToCart", "OrderPlaced"},
				"cart-bob":                         {"ItemAddedToCart", "ItemAddedToCart", "OrderPlaced"},
			}
			for _, s := range slices.Sorted(maps.Keys(want)) {
				if !slices.Equal(got[s], want[s]) {
					t.Errorf("%s: %v, want %v", s, got[s], want[s])
				}
			}
			for s := range got {
				if _, ok := want[s]; !ok {
					t.Errorf("unexpected stream %s: %v", s, got[s])
				}
			}
		})
	}
}

// runShop places alice's order (3 apples, 1 pear: in stock) and bob's (1 apple, 1 pear: the
// last pear is alice's, so bob's apple is released), runs the services until they have nothing more to do, handing each
// event times times, and returns the types of each stream's events.
func runShop(t *testing.T, times int) map[string][]string {
	ctx := context.Background()
	store := memstore.New(nil)
	inv, err := services.NewInventory(store)
	if err != nil {
		t.Fatal(err)
	}
	ful, err := services.NewFulfillment(store)
	if err != nil {
		t.Fatal(err)
	}
	note, err := services.NewNotification(store, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	for sku, qty := range map[string]int{"apple": 10, "pear": 1} {
		if _, err := inv.Stock().Handle(ctx, inventory.Stream(sku), inventory.Restock{Qty: qty}, nil); err != nil {
			t.Fatal(err)
		}
	}
	reg, err := services.Registry()
	if err != nil {
		t.Fatal(err)
	}
	carts, err := decider.NewHandler(store, reg, cart.Decider, nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		id    string
		lines []cart.AddItem
	}{
		{"alice", []cart.AddItem{{SKU: "apple", Qty: 3, UnitPrice: 50}, {SKU: "pear", Qty: 1, UnitPrice: 80}}},
		{"bob", []cart.AddItem{{SKU: "apple", Qty: 1, UnitPrice: 50}, {SKU: "pear", Qty: 1, UnitPrice: 80}}},
	} {
		for _, l := range c.lines {
			if _, err := carts.Handle(ctx, cart.Stream(c.id), l, nil); err != nil {
				t.Fatal(err)
			}
		}
		if _, err := carts.Handle(ctx, cart.Stream(c.id), cart.PlaceOrder{}, nil); err != nil {
			t.Fatal(err)
		}
	}
	// The bus: every event of the log, in order, to every service whose group takes it.
	svcs := []services.Service{inv, ful, note}
	var from uint64
	for {
		var batch []annals.RecordedEvent
		for ev, err := range store.ReadAll(ctx, &annals.ReadOptions{From: from}) {
			if err != nil {
				t.Fatal(err)
			}
			batch = append(batch, ev)
		}
		if len(batch) == 0 {
			break
		}
		for _, ev := range batch {
			for _, s := range svcs {
				if !s.Settings().Filter.Match(ev.Stream, ev.Type) {
					continue
				}
				for i := range times {
					if err := s.Handle(ctx, groups.Message{Event: ev, Retries: i}); err != nil {
						t.Fatalf("%s: %s@%d %s: %v", s.Group(), ev.Stream, ev.Revision, ev.Type, err)
					}
				}
			}
		}
		from = batch[len(batch)-1].Position + 1
	}
	for _, sku := range []string{"apple", "pear"} {
		st, err := inv.Stock().Load(ctx, inventory.Stream(sku), nil)
		if err != nil {
			t.Fatal(err)
		}
		if len(st.Value.Reserved) != 0 {
			t.Errorf("%s: reserved %v, want nothing left reserved", sku, st.Value.Reserved)
		}
		if want := map[string]int{"apple": 7, "pear": 0}[sku]; st.Value.OnHand != want {
			t.Errorf("%s: on hand %d, want %d", sku, st.Value.OnHand, want)
		}
	}
	got := map[string][]string{}
	for ev, err := range store.ReadAll(ctx, nil) {
		if err != nil {
			t.Fatal(err)
		}
		got[ev.Stream] = append(got[ev.Stream], ev.Type)
	}
	return got
}
