package filestore_test

import (
	"context"
	"errors"
	"fmt"
	"os"

	"github.com/annalsdb/annals"
	"github.com/annalsdb/annals/filestore"
)

func Example() {
	dir, _ := os.MkdirTemp("", "annals-example")
	defer os.RemoveAll(dir)
	store, err := filestore.Open(dir, nil)
	if err != nil {
		fmt.Println(err)
		return
	}
	defer store.Close()
	ctx := context.Background()

	// A new cart: NoStream makes sure nobody created it first.
	res, _ := store.Append(ctx, "cart-42", annals.NoStream,
		annals.Event{Type: "ItemAddedToCart", Data: []byte(`{"sku":"apple","qty":2}`)})
	// The next change expects the revision the last one returned.
	_, _ = store.Append(ctx, "cart-42", annals.Exact(res.Revision),
		annals.Event{Type: "ItemRemovedFromCart", Data: []byte(`{"sku":"apple","qty":1}`)})

	// A writer that read an older state conflicts instead of overwriting.
	_, err = store.Append(ctx, "cart-42", annals.Exact(res.Revision), annals.Event{Type: "CartCleared"})
	if conflict, ok := errors.AsType[*annals.WrongExpectedVersionError](err); ok {
		fmt.Println("conflict: the cart is at revision", conflict.Actual)
	}

	for ev, err := range store.ReadStream(ctx, "cart-42", nil) {
		if err != nil {
			fmt.Println(err)
			return
		}
		fmt.Println(ev.Revision, ev.Position, ev.Type, string(ev.Data))
	}
	// Output:
	// conflict: the cart is at revision 1
	// 0 1 ItemAddedToCart {"sku":"apple","qty":2}
	// 1 2 ItemRemovedFromCart {"sku":"apple","qty":1}
}

func ExampleStore_SubscribeAll() {
	dir, _ := os.MkdirTemp("", "annals-example")
	defer os.RemoveAll(dir)
	store, _ := filestore.Open(dir, nil)
	defer store.Close()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()

	store.Append(ctx, "cart-1", annals.Any, annals.Event{Type: "ItemAddedToCart"})
	store.Append(ctx, "order-1", annals.Any, annals.Event{Type: "OrderPlaced"})
	go store.Append(ctx, "cart-2", annals.Any, annals.Event{Type: "ItemAddedToCart"})

	// Catch up on the carts stored so far, then follow new ones live.
	seen := 0
	for ev, err := range store.SubscribeAll(ctx, &annals.SubscribeOptions{
		Filter: &annals.Filter{Categories: []string{"cart"}},
	}) {
		if err != nil {
			fmt.Println(err)
			return
		}
		fmt.Println(ev.Stream, ev.Type)
		if seen++; seen == 2 {
			break
		}
	}
	// Output:
	// cart-1 ItemAddedToCart
	// cart-2 ItemAddedToCart
}
