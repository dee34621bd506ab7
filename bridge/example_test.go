package bridge_test

import (
	"fmt"

	"github.com/annalsdb/annals/bridge"
)

func ExampleDecoder_Decode() {
	stream, err := bridge.ParseTemplate("orders-{key}")
	if err != nil {
		panic(err)
	}
	d := bridge.Decoder{Stream: stream, Type: "OrderReceived"}
	// A message from a producer that knows nothing of annals: no id, no type.
	m := &bridge.Incoming{
		Message: bridge.Message{Subject: "orders", Key: []byte("42"), Value: []byte(`{"total":30}`)},
		Source:  "kafka:orders/0",
		Offset:  17,
	}
	s, ev, err := d.Decode(m)
	if err != nil {
		panic(err)
	}
	// The id is derived from where the message was read, so a redelivery gets the same one.
	fmt.Println(s, ev.Type, string(ev.Data), ev.ID == bridge.DerivedID("kafka:orders/0", "17"))
	// Output:
	// orders-42 OrderReceived {"total":30} true
}

func ExampleDedup() {
	d := bridge.NewDedup(1000)
	msgs := []bridge.Message{
		{Headers: []bridge.Header{{Key: bridge.HeaderID, Value: []byte("0190f2b4-5c1e-7a3b-9d2e-000000000001")}}},
		{Headers: []bridge.Header{{Key: bridge.HeaderID, Value: []byte("0190f2b4-5c1e-7a3b-9d2e-000000000002")}}},
		// A relay that restarted publishes the first one again.
		{Headers: []bridge.Header{{Key: bridge.HeaderID, Value: []byte("0190f2b4-5c1e-7a3b-9d2e-000000000001")}}},
	}
	for _, m := range msgs {
		id, ok := bridge.EventID(&m)
		if ok && d.Seen(id) {
			fmt.Println("duplicate", id)
			continue
		}
		fmt.Println("handle", id)
	}
	// Output:
	// handle 0190f2b4-5c1e-7a3b-9d2e-000000000001
	// handle 0190f2b4-5c1e-7a3b-9d2e-000000000002
	// duplicate 0190f2b4-5c1e-7a3b-9d2e-000000000001
}
