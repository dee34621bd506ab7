package services

import (
	"context"
	"fmt"

	"github.com/annalsdb/annals"
	"github.com/annalsdb/annals/codec"
	"github.com/annalsdb/annals/examples/shop/consume"
	"github.com/annalsdb/annals/examples/shop/fulfillment"
	"github.com/annalsdb/annals/examples/shop/inventory"
	"github.com/annalsdb/annals/groups"
)

// Fulfillment prepares and ships every order the inventory allocated: OrderPrepared, then
// OrderShipped, in the order's shipment stream.
//
// Idempotency: the ids of the two events are derived from OrderAllocated's; the first is
// appended expecting no stream and the second expecting revision 0, the places where a
// repeat of each is recognised, so handling OrderAllocated again writes nothing new and
// completes a shipment that a crash cut after its first event.
type Fulfillment struct {
	store annals.Store
	reg   *codec.Registry
}

// NewFulfillment returns the fulfillment service over store.
func NewFulfillment(store annals.Store) (*Fulfillment, error) {
	reg, err := Registry()
	return &Fulfillment{store: store, reg: reg}, err
}

// Group is "fulfillment".
func (s *Fulfillment) Group() string { return "fulfillment" }

// Settings: OrderAllocated of allocations.
func (s *Fulfillment) Settings() groups.Settings {
	return settings([]string{"allocation"}, []string{inventory.TypeOrderAllocated})
}

// Handle prepares and ships an allocated order.
func (s *Fulfillment) Handle(ctx context.Context, m groups.Message) error {
	ev := m.Event
	if ev.Type != inventory.TypeOrderAllocated {
		return nil
	}
	a, err := decode[inventory.OrderAllocated](s.reg, ev)
	if err != nil {
		return err
	}
	if a.Order == "" {
		return consume.Permanent(fmt.Errorf("%s@%d: OrderAllocated names no order", ev.Stream, ev.Revision))
	}
	stream := fulfillment.Stream(a.Order)
	prepared := consume.ID(ev.ID, "fulfillment", "prepared")
	if err := appendOnce(ctx, s.store, s.reg, ev, stream, annals.NoStream, []annals.UUID{prepared},
		fulfillment.OrderPrepared{Order: a.Order, Lines: a.Lines}); err != nil {
		return err
	}
	shipped := consume.ID(ev.ID, "fulfillment", "shipped")
	return appendOnce(ctx, s.store, s.reg, ev, stream, annals.Exact(0), []annals.UUID{shipped},
		fulfillment.OrderShipped{Order: a.Order, Tracking: "TRK-" + shipped.String()[:8]})
}
