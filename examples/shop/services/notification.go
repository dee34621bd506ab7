package services

import (
	"context"
	"errors"
	"fmt"
	"log/slog"

	"github.com/annalsdb/annals"
	"github.com/annalsdb/annals/codec"
	"github.com/annalsdb/annals/examples/shop/cart"
	"github.com/annalsdb/annals/examples/shop/consume"
	"github.com/annalsdb/annals/examples/shop/fulfillment"
	"github.com/annalsdb/annals/examples/shop/inventory"
	"github.com/annalsdb/annals/examples/shop/notification"
	"github.com/annalsdb/annals/groups"
)

// Notification tells customers about their orders: placed, out of stock, shipped. Telling is
// a log line here (a mail or a push message in a real shop); what is recorded is a
// NotificationSent event in the stream of that notification.
//
// Idempotency: the event's id is derived from the id of the event told about, and it is
// appended expecting no stream, so a redelivery writes nothing (its log line may show twice:
// telling is at least once, recording exactly once).
type Notification struct {
	store annals.Store
	reg   *codec.Registry
	log   *slog.Logger
}

// NewNotification returns the notification service over store; log receives the messages
// (nil: slog.Default()).
func NewNotification(store annals.Store, log *slog.Logger) (*Notification, error) {
	if log == nil {
		log = slog.Default()
	}
	reg, err := Registry()
	return &Notification{store: store, reg: reg, log: log}, err
}

// Group is "notification".
func (s *Notification) Group() string { return "notification" }

// Settings: OrderPlaced, OrderOutOfStock and OrderShipped.
func (s *Notification) Settings() groups.Settings {
	return settings([]string{"cart", "allocation", "shipment"},
		[]string{cart.TypeOrderPlaced, inventory.TypeOrderOutOfStock, fulfillment.TypeOrderShipped})
}

// Handle tells the customer of the order about the event.
func (s *Notification) Handle(ctx context.Context, m groups.Message) error {
	ev := m.Event
	var (
		order string
		ok    bool
		text  string
	)
	switch ev.Type {
	case cart.TypeOrderPlaced:
		order, ok = cart.ID(ev.Stream)
		p, err := decode[cart.OrderPlaced](s.reg, ev)
		if err != nil {
			return err
		}
		items := 0
		for _, l := range p.Lines {
			items += l.Qty
		}
		text = fmt.Sprintf("Thank you for your order of %d items, $%d.%02d.", items, p.Total/100, p.Total%100)
	case inventory.TypeOrderOutOfStock:
		order, ok = inventory.AllocationOrder(ev.Stream)
		text = "Sorry, part of your order is out of stock: it is cancelled."
	case fulfillment.TypeOrderShipped:
		order, ok = fulfillment.Order(ev.Stream)
		sh, err := decode[fulfillment.OrderShipped](s.reg, ev)
		if err != nil {
			return err
		}
		text = "Your order is on its way: tracking " + sh.Tracking + "."
	default:
		return nil
	}
	if !ok {
		return consume.Permanent(fmt.Errorf("%s in %s: no order", ev.Type, ev.Stream))
	}
	s.log.Info("to customer", "order", order, "text", text)
	id := consume.ID(ev.ID, "notification", "sent")
	err := appendOnce(ctx, s.store, s.reg, ev, notification.Stream(order, ev.Type), annals.NoStream, []annals.UUID{id},
		notification.NotificationSent{Order: order, About: ev.Type, Text: text})
	if errors.Is(err, annals.ErrWrongExpectedVersion) {
		return consume.Permanent(err) // another event claims this notification's stream: a bug to look at
	}
	return err
}
