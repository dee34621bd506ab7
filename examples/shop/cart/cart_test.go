package cart_test

import (
	"testing"

	"github.com/annalsdb/annals"
	"github.com/annalsdb/annals/codec"
	"github.com/annalsdb/annals/decider"
	"github.com/annalsdb/annals/examples/shop/cart"
	"github.com/annalsdb/annals/testkit"
)

// carts runs the cart's decider as the app's handler does: commands checked by its Validate,
// events and states through its registry.
var carts = testkit.ForDecider(cart.Decider, registry(), &decider.Options[cart.Command]{Validate: cart.Validate})

func registry() *codec.Registry {
	reg := codec.New(nil)
	if err := cart.Register(reg); err != nil {
		panic(err)
	}
	return reg
}

var (
	apple = cart.ItemAdded{SKU: "apple", Qty: 3, UnitPrice: 50}
	pear  = cart.ItemAdded{SKU: "pear", Qty: 1, UnitPrice: 80}
)

func TestAddAndRemove(t *testing.T) {
	carts.Given(t).When(cart.AddItem{SKU: "apple", Qty: 3, UnitPrice: 50}).Then(apple)
	carts.Given(t, apple).When(cart.RemoveItem{SKU: "apple", Qty: 2}).Then(cart.ItemRemoved{SKU: "apple", Qty: 2})
	carts.Given(t, apple).When(cart.RemoveItem{SKU: "apple", Qty: 4}).ThenError(cart.ErrNotInCart)
	carts.Given(t, apple).When(cart.RemoveItem{SKU: "pear", Qty: 1}).ThenError(cart.ErrNotInCart)
	carts.Given(t, apple, cart.ItemRemoved{SKU: "apple", Qty: 3}).When(cart.PlaceOrder{}).ThenError(cart.ErrEmpty)
	carts.Given(t, apple).When(cart.RemoveItem{SKU: "apple", Qty: 0}).ThenError(cart.ErrInvalidAmount) // refused by Validate
}

func TestPlaceOrder(t *testing.T) {
	placed := cart.OrderPlaced{Lines: []cart.Line{{SKU: "apple", Qty: 2, UnitPrice: 50}, {SKU: "pear", Qty: 1, UnitPrice: 80}}, Total: 180}
	carts.Given(t, pear, apple, cart.ItemRemoved{SKU: "apple", Qty: 1}).When(cart.PlaceOrder{}).Then(placed)
	carts.Given(t).When(cart.PlaceOrder{}).ThenError(cart.ErrEmpty)
	carts.Given(t, apple, placed).When(cart.AddItem{SKU: "pear", Qty: 1}).ThenError(cart.ErrNotOpen)
	carts.Given(t, apple, placed).When(cart.PlaceOrder{}).ThenError(cart.ErrNotOpen)
	carts.Given(t, apple, placed).When(cart.ConfirmOrder{}).ThenState(cart.State{
		Status: cart.Confirmed, Items: map[string]cart.Line{"apple": {SKU: "apple", Qty: 3, UnitPrice: 50}}, Total: 180})
}

func TestOrderLifecycle(t *testing.T) {
	placed := cart.OrderPlaced{Lines: []cart.Line{{SKU: "apple", Qty: 3, UnitPrice: 50}}, Total: 150}
	confirmed := []any{apple, placed, cart.OrderConfirmed{}}
	carts.Given(t, confirmed...).When(cart.Pay{Amount: 150}).Then(cart.OrderPaid{Amount: 150})
	carts.Given(t, confirmed...).When(cart.Pay{Amount: 100}).ThenError(cart.ErrWrongAmount)
	carts.Given(t, apple, placed).When(cart.Pay{Amount: 150}).ThenError(cart.ErrWrongStatus)
	carts.Given(t, confirmed...).When(cart.ConfirmOrder{}).Then() // a repeat changes nothing
	carts.Given(t, confirmed...).When(cart.CancelOrder{Reason: "late"}).Then(cart.OrderCancelled{Reason: "late"})
	carts.Given(t, apple, placed).When(cart.RejectOrder{Reason: "no stock"}).Then(cart.OrderRejected{Reason: "no stock"})
	carts.Given(t, apple, placed, cart.OrderRejected{}).When(cart.ConfirmOrder{}).ThenError(cart.ErrWrongStatus)
	carts.Given(t, append(confirmed, cart.OrderPaid{Amount: 150})...).When(cart.CancelOrder{}).ThenError(cart.ErrWrongStatus)
}

func TestValidate(t *testing.T) {
	for _, c := range []cart.Command{
		cart.AddItem{SKU: "", Qty: 1}, cart.AddItem{SKU: "a", Qty: 0}, cart.AddItem{SKU: "a", Qty: 1, UnitPrice: -1},
		cart.RemoveItem{SKU: "a", Qty: -1}, cart.Pay{Amount: 0},
	} {
		if err := cart.Validate(c); err == nil {
			t.Errorf("Validate(%#v) = nil, want an error", c)
		}
	}
	if err := cart.Validate(cart.AddItem{SKU: "a", Qty: 1, UnitPrice: 5}); err != nil {
		t.Errorf("Validate of a good AddItem: %v", err)
	}
}

// TestUpcastItemAddedV1 loads a version 1 ItemAddedToCart ({"sku","quantity"}) as the
// current type.
func TestUpcastItemAddedV1(t *testing.T) {
	reg := codec.New(nil)
	if err := cart.Register(reg); err != nil {
		t.Fatal(err)
	}
	ev := annals.RecordedEvent{Stream: cart.Stream("1"), Type: cart.TypeItemAdded, ContentType: annals.ContentTypeJSON,
		Data: []byte(`{"sku":"apple","quantity":4}`), Metadata: []byte(`{"$schemaVersion":1}`)}
	got, _, err := codec.Decode[cart.Event](reg, ev)
	if err != nil {
		t.Fatal(err)
	}
	if want := (cart.ItemAdded{SKU: "apple", Qty: 4}); got != want {
		t.Errorf("got %#v, want %#v", got, want)
	}
}
