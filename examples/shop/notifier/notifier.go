// Package notifier tells customers what became of their orders. It reacts to the order events
// of the carts by writing a message into its outbox, a table of the embedded store's side
// tables ([Notifier]) or of the PostgreSQL database ([Postgres]) written in the same
// transaction as its checkpoint: each event makes exactly one message, however often the
// notifier is stopped and restarted. A mailer would send the outbox's messages and delete
// them; the example prints them.
package notifier

import (
	"context"
	"fmt"
	"iter"

	"github.com/annalsdb/annals"
	"github.com/annalsdb/annals/codec"
	"github.com/annalsdb/annals/examples/shop/cart"
	"github.com/annalsdb/annals/projection"
	"github.com/annalsdb/annals/tables"
)

// Name is the notifier's projection name.
const Name = "notifier"

// Message is a message to a customer.
type Message struct {
	Cart string `json:"cart"`
	Text string `json:"text"`
	// Position is that of the event the message is about.
	Position uint64 `json:"position"`
}

// Notifier keeps the outbox.
type Notifier struct {
	reg    *codec.Registry
	outbox *tables.Table[Message]
}

// New returns the notifier whose outbox is kept in db.
func New(db *tables.DB, reg *codec.Registry) (*Notifier, error) {
	t, err := tables.NewTable[Message](db, Name, "outbox")
	if err != nil {
		return nil, err
	}
	return &Notifier{reg: reg, outbox: t}, nil
}

// Projection returns the projection that fills the outbox.
func (n *Notifier) Projection() projection.Projection[*tables.Tx] {
	return projection.Projection[*tables.Tx]{Name: Name, Filter: filter, Handle: n.handle}
}

// filter selects the events that make messages.
var filter = &annals.Filter{Categories: []string{"cart"}, EventTypes: []string{
	cart.TypeOrderPlaced, cart.TypeOrderConfirmed, cart.TypeOrderRejected, cart.TypeOrderCancelled, cart.TypeOrderPaid}}

func (n *Notifier) handle(_ context.Context, tx *tables.Tx, ev annals.RecordedEvent) error {
	m, ok, err := message(n.reg, ev)
	if err != nil || !ok {
		return err
	}
	// Keys in position order, so that the outbox lists messages in the order of the events.
	return n.outbox.Put(tx, fmt.Sprintf("%020d", ev.Position), m)
}

// message returns the message ev makes, and false for none.
func message(reg *codec.Registry, ev annals.RecordedEvent) (Message, bool, error) {
	id, _ := cart.ID(ev.Stream)
	e, _, err := codec.Decode[cart.Event](reg, ev)
	if err != nil {
		return Message{}, false, fmt.Errorf("notifier: %w", err)
	}
	text := Text(e)
	if text == "" {
		return Message{}, false, nil
	}
	return Message{Cart: id, Text: text, Position: ev.Position}, true, nil
}

// Text returns the message an event makes, or "" for none.
func Text(e cart.Event) string {
	switch e := e.(type) {
	case cart.OrderPlaced:
		return fmt.Sprintf("Thank you for your order of %s. We are reserving your items.", money(e.Total))
	case cart.OrderConfirmed:
		return "Your order is confirmed: please pay to have it shipped."
	case cart.OrderRejected:
		return "Sorry, we could not take your order: " + e.Reason
	case cart.OrderPaid:
		return fmt.Sprintf("We received your payment of %s; your order ships today.", money(e.Amount))
	case cart.OrderCancelled:
		return "Your order was cancelled: " + e.Reason
	}
	return ""
}

func money(cents int64) string { return fmt.Sprintf("$%d.%02d", cents/100, cents%100) }

// Outbox yields the messages waiting to be sent, oldest first.
func (n *Notifier) Outbox(ctx context.Context) iter.Seq2[Message, error] {
	return func(yield func(Message, error) bool) {
		for row, err := range n.outbox.List(ctx, nil) {
			if !yield(row.Value, err) || err != nil {
				return
			}
		}
	}
}
