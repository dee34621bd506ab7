package groups_test

import (
	"context"
	"errors"
	"fmt"

	"github.com/annalsdb/annals"
	"github.com/annalsdb/annals/groups"
	"github.com/annalsdb/annals/memstore"
)

// A group on the stream "orders": a consumer joins it, receives the events and acks them.
func Example() {
	ctx := context.Background()
	store := memstore.New(nil)
	defer store.Close()
	m, err := groups.Open(ctx, store, nil)
	if err != nil {
		panic(err)
	}
	defer m.Close()

	if _, err := m.Create(ctx, "billing", groups.Settings{Stream: "orders"}); err != nil {
		panic(err)
	}
	_, err = store.Append(ctx, "orders", annals.NoStream,
		annals.Event{Type: "OrderPlaced", Data: []byte(`{"order":1}`)},
		annals.Event{Type: "OrderPlaced", Data: []byte(`{"order":2}`)})
	if err != nil {
		panic(err)
	}

	c, err := m.Join(ctx, "billing", &groups.JoinOptions{Name: "billing-1"})
	if err != nil {
		panic(err)
	}
	defer c.Close()
	for range 2 {
		msg, err := c.Receive(ctx)
		if err != nil {
			panic(err)
		}
		fmt.Println(msg.Event.Type, string(msg.Event.Data), "retries", msg.Retries)
		if err := c.Ack(ctx, msg.Event.ID); err != nil {
			panic(err)
		}
	}
	// Output:
	// OrderPlaced {"order":1} retries 0
	// OrderPlaced {"order":2} retries 0
}

// Run handles the events of a consumer: it acks what the handler handled, retries what
// failed, and parks what failed for good.
func ExampleRun() {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	store := memstore.New(nil)
	defer store.Close()
	m, err := groups.Open(ctx, store, nil)
	if err != nil {
		panic(err)
	}
	defer m.Close()
	if _, err := m.Create(ctx, "mailer", groups.Settings{Stream: "signups"}); err != nil {
		panic(err)
	}
	_, err = store.Append(ctx, "signups", annals.NoStream,
		annals.Event{Type: "SignedUp", Data: []byte(`{"email":"ada@example.com"}`)},
		annals.Event{Type: "SignedUp", Data: []byte(`{"email":""}`)})
	if err != nil {
		panic(err)
	}
	c, err := m.Join(ctx, "mailer", nil)
	if err != nil {
		panic(err)
	}
	defer c.Close()

	handled := 0
	err = groups.Run(ctx, c, func(ctx context.Context, msg groups.Message) error {
		handled++
		if handled == 2 {
			defer cancel() // stop after the second event
		}
		if string(msg.Event.Data) == `{"email":""}` {
			return fmt.Errorf("no email address: %w", groups.ErrPermanent)
		}
		fmt.Println("mail sent for", string(msg.Event.Data))
		return nil
	}, nil)
	fmt.Println("Run returned", err, errors.Is(err, context.Canceled))
	// Output:
	// mail sent for {"email":"ada@example.com"}
	// Run returned <nil> false
}
