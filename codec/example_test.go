package codec_test

import (
	"context"
	"encoding/json"
	"fmt"

	"github.com/annalsdb/annals"
	"github.com/annalsdb/annals/codec"
	"github.com/annalsdb/annals/memstore"
)

type ItemAdded struct {
	SKU string `json:"sku"`
	Qty int    `json:"qty"`
}

func Example() {
	ctx := context.Background()
	store := memstore.New(nil)

	// Version 1 of ItemAdded had no quantity; an event of that shape is already stored.
	if _, err := store.Append(ctx, "cart-1", annals.NoStream, annals.Event{
		Type: "ItemAdded", Data: []byte(`{"sku":"apple"}`),
	}); err != nil {
		fmt.Println(err)
		return
	}

	reg := codec.New(nil)
	err := codec.Register[ItemAdded](reg, "ItemAdded", &codec.TypeOptions{
		Version: 2,
		Upcasters: []codec.Upcaster{{From: 1, Up: func(data []byte) ([]byte, error) {
			var v map[string]any
			if err := json.Unmarshal(data, &v); err != nil {
				return nil, err
			}
			v["qty"] = 1 // v1 added one item
			return json.Marshal(v)
		}}},
	})
	if err != nil {
		fmt.Println(err)
		return
	}

	ev, err := reg.Encode(ItemAdded{SKU: "pear", Qty: 3}, codec.Metadata{CorrelationID: "order-flow-7"})
	if err != nil {
		fmt.Println(err)
		return
	}
	if _, err := store.Append(ctx, "cart-1", annals.Exact(0), ev); err != nil {
		fmt.Println(err)
		return
	}

	for rec, err := range store.ReadStream(ctx, "cart-1", nil) {
		if err != nil {
			fmt.Println(err)
			return
		}
		item, md, err := codec.Decode[ItemAdded](reg, rec)
		if err != nil {
			fmt.Println(err)
			return
		}
		fmt.Printf("%+v stored as v%d correlation %q\n", item, max(md.SchemaVersion, 1), md.CorrelationID)
	}
	// Output:
	// {SKU:apple Qty:1} stored as v1 correlation ""
	// {SKU:pear Qty:3} stored as v2 correlation "order-flow-7"
}
