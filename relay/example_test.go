package relay_test

import (
	"context"
	"fmt"
	"log"

	"github.com/annalsdb/annals"
	"github.com/annalsdb/annals/bridge"
	"github.com/annalsdb/annals/memstore"
	"github.com/annalsdb/annals/relay"
)

// printer is a Publisher that prints each message and acknowledges it at once; it stops the
// example after the third.
type printer struct {
	n    int
	stop context.CancelFunc
}

func (p *printer) Publish(ctx context.Context, msg *bridge.Message, done func(error)) error {
	stream, _ := msg.Get(bridge.HeaderStream)
	typ, _ := msg.Get(bridge.HeaderType)
	fmt.Printf("%s key=%s %s of %s: %s\n", msg.Subject, msg.Key, typ, stream, msg.Value)
	done(nil)
	if p.n++; p.n == 3 {
		p.stop()
	}
	return nil
}

func (p *printer) Permanent(error) bool { return false }

func Example() {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	store := memstore.New(nil)
	defer store.Close()
	for i, stream := range []string{"cart-1", "order-7", "cart-1"} {
		data := fmt.Sprintf(`{"n":%d}`, i)
		if _, err := store.Append(ctx, stream, annals.Any, annals.Event{Type: "Happened", Data: []byte(data)}); err != nil {
			log.Fatal(err)
		}
	}
	subject, err := bridge.ParseTemplate("events.{category}")
	if err != nil {
		log.Fatal(err)
	}
	r, err := relay.New(store, &printer{stop: cancel}, &relay.Options{
		Name:    "shop-events",
		Encoder: bridge.Encoder{Subject: subject, Bus: bridge.Kafka},
	})
	if err != nil {
		log.Fatal(err)
	}
	if err := r.Run(ctx); err != nil { // until the printer cancels ctx
		log.Fatal(err)
	}
	fmt.Println("checkpoint:", r.Status().Checkpoint)
	// Output:
	// events.cart key=cart-1 Happened of cart-1: {"n":0}
	// events.order key=order-7 Happened of order-7: {"n":1}
	// events.cart key=cart-1 Happened of cart-1: {"n":2}
	// checkpoint: 3
}
