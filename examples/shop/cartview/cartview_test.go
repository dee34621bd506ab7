package cartview_test

import (
	"testing"

	"github.com/annalsdb/annals"
	"github.com/annalsdb/annals/codec"
	"github.com/annalsdb/annals/examples/shop/cart"
	"github.com/annalsdb/annals/examples/shop/cartview"
	"github.com/annalsdb/annals/testkit"
)

func TestCartView(t *testing.T) {
	reg := codec.New(nil)
	if err := cart.Register(reg); err != nil {
		t.Fatal(err)
	}
	p := cartview.MemoryProjection(reg)
	empty := func() map[string]cartview.CartView { return map[string]cartview.CartView{} }
	placed := cart.OrderPlaced{Lines: []cart.Line{{SKU: "apple", Qty: 2, UnitPrice: 50}}, Total: 100}

	testkit.ForProjection(p, empty, reg).
		Given(cart.Stream("a"),
			cart.ItemAdded{SKU: "pear", Qty: 1, UnitPrice: 80},
			cart.ItemAdded{SKU: "apple", Qty: 3, UnitPrice: 50},
			cart.ItemRemoved{SKU: "apple", Qty: 1}).
		Given(cart.Stream("b"),
			cart.ItemAdded{SKU: "apple", Qty: 2, UnitPrice: 50}, placed, cart.OrderRejected{Reason: "no stock"}).
		GivenRaw("stock-apple", annals.Event{Type: "StockRestocked", Data: []byte(`{"qty":1}`)}).
		Then(t, map[string]cartview.CartView{
			"a": {ID: "a", Status: cart.Open, Lines: []cart.Line{{SKU: "apple", Qty: 2, UnitPrice: 50}, {SKU: "pear", Qty: 1, UnitPrice: 80}},
				Total: 180, Items: 3, Revision: 2},
			"b": {ID: "b", Status: cart.Rejected, Lines: placed.Lines, Total: 100, Items: 2, Reason: "no stock", Revision: 2},
		})

	// Removing every unit of a line removes the line.
	testkit.ForProjection(p, empty, reg).
		Given(cart.Stream("c"), cart.ItemAdded{SKU: "plum", Qty: 1, UnitPrice: 20}, cart.ItemRemoved{SKU: "plum", Qty: 1}).
		Then(t, map[string]cartview.CartView{"c": {ID: "c", Status: cart.Open, Lines: []cart.Line{}, Revision: 1}})
}
