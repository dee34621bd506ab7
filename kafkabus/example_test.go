package kafkabus_test

import (
	"fmt"

	"github.com/annalsdb/annals/kafkabus"
	"github.com/twmb/franz-go/pkg/kgo"
)

// A consumer of a relay's topic drops the records a relay's restart published again.
func ExampleDedup() {
	d := kafkabus.NewDedup(0)
	id := []kgo.RecordHeader{{Key: "annals-id", Value: []byte("0190f5b4-8c1e-7b3a-9c2d-5e6f7a8b9c0d")}}
	records := []*kgo.Record{
		{Topic: "events", Key: []byte("cart-1"), Headers: id, Value: []byte(`{"sku":"a"}`)},
		{Topic: "events", Key: []byte("cart-1"), Headers: id, Value: []byte(`{"sku":"a"}`)}, // again
	}
	for _, r := range records {
		if d.Duplicate(r) {
			fmt.Println("drop", string(r.Key), kafkabus.Message(r).ID)
			continue
		}
		fmt.Println("handle", string(r.Key), kafkabus.Message(r).ID)
	}
	// Output:
	// handle cart-1 0190f5b4-8c1e-7b3a-9c2d-5e6f7a8b9c0d
	// drop cart-1 0190f5b4-8c1e-7b3a-9c2d-5e6f7a8b9c0d
}
