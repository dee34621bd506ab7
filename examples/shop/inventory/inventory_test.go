package inventory_test

import (
	"testing"

	"github.com/annalsdb/annals/codec"
	"github.com/annalsdb/annals/decider"
	"github.com/annalsdb/annals/examples/shop/inventory"
	"github.com/annalsdb/annals/testkit"
)

// stock runs the inventory's decider as the app's handler does: commands checked by its
// Validate, events and states through its registry.
var stock = testkit.ForDecider(inventory.Decider, registry(), &decider.Options[inventory.Command]{Validate: inventory.Validate})

func registry() *codec.Registry {
	reg := codec.New(nil)
	if err := inventory.Register(reg); err != nil {
		panic(err)
	}
	return reg
}

func TestReserve(t *testing.T) {
	ten := inventory.Restocked{Qty: 10}
	stock.Given(t, ten).When(inventory.Reserve{Order: "a", Qty: 4}).Then(inventory.Reserved{Order: "a", Qty: 4})
	stock.Given(t, ten, inventory.Reserved{Order: "a", Qty: 8}).
		When(inventory.Reserve{Order: "b", Qty: 3}).ThenError(inventory.ErrInsufficientStock)
	stock.Given(t, ten, inventory.Reserved{Order: "a", Qty: 8}).
		When(inventory.Reserve{Order: "a", Qty: 8}).Then() // reserving again for the same order
	stock.Given(t).When(inventory.Reserve{Order: "a", Qty: 1}).ThenError(inventory.ErrInsufficientStock)
}

func TestReleaseAndShip(t *testing.T) {
	given := []any{inventory.Restocked{Qty: 10}, inventory.Reserved{Order: "a", Qty: 4}}
	stock.Given(t, given...).When(inventory.Release{Order: "a", Reason: "x"}).
		Then(inventory.Released{Order: "a", Qty: 4, Reason: "x"})
	stock.Given(t, given...).When(inventory.Release{Order: "b"}).Then()
	stock.Given(t, given...).When(inventory.Ship{Order: "a"}).Then(inventory.Shipped{Order: "a", Qty: 4})
	stock.Given(t, given...).When(inventory.Ship{Order: "a"}).
		ThenState(inventory.State{OnHand: 6, Reserved: map[string]int{}, Closed: map[string]bool{"a": true}})
	stock.Given(t, given...).When(inventory.Release{Order: "a"}).
		ThenState(inventory.State{OnHand: 10, Reserved: map[string]int{}, Closed: map[string]bool{"a": true}})
	stock.Given(t, given...).When(inventory.Release{Order: "b"}). // nothing reserved: nothing closed
									ThenState(inventory.State{OnHand: 10, Reserved: map[string]int{"a": 4}})
}

// TestClosedOrderReservesNoMore replays what a second handling of an order sees after the
// first released or shipped the order's reservation: it must not reserve again, and neither a
// release nor a shipment of the closed order changes anything.
func TestClosedOrderReservesNoMore(t *testing.T) {
	ten := inventory.Restocked{Qty: 10}
	released := []any{ten, inventory.Reserved{Order: "a", Qty: 4}, inventory.Released{Order: "a", Qty: 4, Reason: "out of stock"}}
	shipped := []any{ten, inventory.Reserved{Order: "a", Qty: 4}, inventory.Shipped{Order: "a", Qty: 4}}
	for name, given := range map[string][]any{"released": released, "shipped": shipped} {
		t.Run(name, func(t *testing.T) {
			stock.Given(t, given...).When(inventory.Reserve{Order: "a", Qty: 4}).ThenError(inventory.ErrOrderClosed)
			stock.Given(t, given...).When(inventory.Reserve{Order: "a", Qty: 4}).ThenError(decider.ErrRefused)
			stock.Given(t, given...).When(inventory.Release{Order: "a", Reason: "again"}).Then()
			stock.Given(t, given...).When(inventory.Ship{Order: "a"}).Then()
			stock.Given(t, given...).When(inventory.Reserve{Order: "b", Qty: 4}).Then(inventory.Reserved{Order: "b", Qty: 4})
		})
	}
}

func TestValidate(t *testing.T) {
	for _, c := range []inventory.Command{inventory.Restock{Qty: 0}, inventory.Reserve{Order: "", Qty: 1},
		inventory.Reserve{Order: "a", Qty: 0}, inventory.Release{}, inventory.Ship{}} {
		if err := inventory.Validate(c); err == nil {
			t.Errorf("Validate(%#v) = nil, want an error", c)
		}
	}
}
