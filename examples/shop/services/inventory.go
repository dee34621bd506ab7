package services

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"

	"github.com/annalsdb/annals"
	"github.com/annalsdb/annals/codec"
	"github.com/annalsdb/annals/decider"
	"github.com/annalsdb/annals/examples/shop/cart"
	"github.com/annalsdb/annals/examples/shop/consume"
	"github.com/annalsdb/annals/examples/shop/fulfillment"
	"github.com/annalsdb/annals/examples/shop/inventory"
	"github.com/annalsdb/annals/groups"
)

// Inventory keeps the stock (the streams "stock-<sku>", through the inventory's decider):
// on OrderPlaced it reserves every line of the order and records the outcome in the order's
// allocation stream; on OrderShipped the reserved stock leaves the warehouse.
//
// Idempotency: the decider's commands change nothing when repeated (a reservation for an
// order that has one, a shipment of what is not reserved), and the allocation is written once
// (an id derived from OrderPlaced's, expecting no stream). An OrderPlaced whose allocation
// exists is done and changes nothing, so a late redelivery never reserves again what was
// shipped since.
//
// Concurrency: a few products take every order, so the handler lets one command at a time
// through per product stream in this replica (a turn per stripe of streams): concurrent
// commands on one stream would all but one conflict, and read and decide again.
type Inventory struct {
	store annals.Store
	reg   *codec.Registry
	stock *decider.Handler[inventory.State, inventory.Command, inventory.Event]
	turns [64]chan struct{} // by hash of the stream; a token in the channel is the turn taken
}

// NewInventory returns the inventory service over store.
func NewInventory(store annals.Store) (*Inventory, error) {
	reg, err := Registry()
	if err != nil {
		return nil, err
	}
	stock, err := decider.NewHandler(store, reg, inventory.Decider, &decider.Options[inventory.Command]{
		Validate: inventory.Validate, CacheSize: 1000, MaxRetries: 100})
	if err != nil {
		return nil, err
	}
	s := &Inventory{store: store, reg: reg, stock: stock}
	for i := range s.turns {
		s.turns[i] = make(chan struct{}, 1)
	}
	return s, nil
}

// command handles cmd on the stock of sku, waiting for the turn of its stream.
func (s *Inventory) command(ctx context.Context, sku string, cmd inventory.Command, opts *decider.CommandOptions) error {
	stream := inventory.Stream(sku)
	h := fnv.New32a()
	h.Write([]byte(stream))
	turn := s.turns[h.Sum32()%uint32(len(s.turns))]
	select {
	case turn <- struct{}{}:
	case <-ctx.Done():
		return ctx.Err()
	}
	defer func() { <-turn }()
	_, err := s.stock.Handle(ctx, stream, cmd, opts)
	return err
}

// Stock is the handler of the stock's commands (to restock, to read a product's state).
func (s *Inventory) Stock() *decider.Handler[inventory.State, inventory.Command, inventory.Event] {
	return s.stock
}

// Group is "inventory".
func (s *Inventory) Group() string { return "inventory" }

// Settings: OrderPlaced of carts and OrderShipped of shipments.
func (s *Inventory) Settings() groups.Settings {
	return settings([]string{"cart", "shipment"}, []string{cart.TypeOrderPlaced, fulfillment.TypeOrderShipped})
}

// Handle reserves the stock of a placed order, or ships that of a shipped one.
func (s *Inventory) Handle(ctx context.Context, m groups.Message) error {
	ev := m.Event
	switch ev.Type {
	case cart.TypeOrderPlaced:
		order, ok := cart.ID(ev.Stream)
		if !ok {
			return consume.Permanent(fmt.Errorf("OrderPlaced in %s, not a cart", ev.Stream))
		}
		placed, err := decode[cart.OrderPlaced](s.reg, ev)
		if err != nil {
			return err
		}
		return s.allocate(ctx, ev, order, placed)
	case fulfillment.TypeOrderShipped:
		order, ok := fulfillment.Order(ev.Stream)
		if !ok {
			return consume.Permanent(fmt.Errorf("OrderShipped in %s, not a shipment", ev.Stream))
		}
		return s.ship(ctx, ev, order)
	}
	return nil
}

// allocate reserves every line of the order; when one cannot be, it releases the others. It
// records the outcome in the order's allocation stream.
func (s *Inventory) allocate(ctx context.Context, ev annals.RecordedEvent, order string, placed cart.OrderPlaced) error {
	if _, ok, err := s.allocation(ctx, order); err != nil || ok {
		return err // done already, or the store failed
	}
	opts := decider.CausedBy(ev)
	var refused error
	for _, l := range placed.Lines {
		err := s.command(ctx, l.SKU, inventory.Reserve{Order: order, Qty: l.Qty}, opts)
		if errors.Is(err, decider.ErrRefused) {
			refused = err
			break
		}
		if err != nil {
			return fmt.Errorf("reserve %d %s for %s: %w", l.Qty, l.SKU, order, err)
		}
	}
	var outcome any = inventory.OrderAllocated{Order: order, Lines: placed.Lines}
	if refused != nil {
		for _, l := range placed.Lines {
			if err := s.command(ctx, l.SKU, inventory.Release{Order: order, Reason: "out of stock"}, opts); err != nil {
				return fmt.Errorf("release %s for %s: %w", l.SKU, order, err)
			}
		}
		outcome = inventory.OrderOutOfStock{Order: order, Reason: refused.Error()}
	}
	id := consume.ID(ev.ID, "inventory", "allocation")
	err := appendOnce(ctx, s.store, s.reg, ev, inventory.AllocationStream(order), annals.NoStream, []annals.UUID{id}, outcome)
	if errors.Is(err, annals.ErrWrongExpectedVersion) {
		return nil // another handling of the same order recorded its outcome first
	}
	return err
}

// ship takes the stock reserved for the order out of the warehouse.
func (s *Inventory) ship(ctx context.Context, ev annals.RecordedEvent, order string) error {
	alloc, ok, err := s.allocation(ctx, order)
	if err != nil {
		return err
	}
	if !ok {
		return fmt.Errorf("order %s shipped before its allocation is readable", order) // retried
	}
	opts := decider.CausedBy(ev)
	for _, l := range alloc.Lines {
		if err := s.command(ctx, l.SKU, inventory.Ship{Order: order}, opts); err != nil {
			return fmt.Errorf("ship %s for %s: %w", l.SKU, order, err)
		}
	}
	return nil
}

// allocation returns the allocation of the order, and whether it is recorded (either
// outcome: an order out of stock has no lines).
func (s *Inventory) allocation(ctx context.Context, order string) (inventory.OrderAllocated, bool, error) {
	for rec, err := range s.store.ReadStream(ctx, inventory.AllocationStream(order), &annals.ReadOptions{Limit: 1}) {
		if errors.Is(err, annals.ErrStreamNotFound) {
			return inventory.OrderAllocated{}, false, nil
		}
		if err != nil {
			return inventory.OrderAllocated{}, false, err
		}
		if rec.Type != inventory.TypeOrderAllocated {
			return inventory.OrderAllocated{}, true, nil
		}
		a, err := decode[inventory.OrderAllocated](s.reg, rec)
		return a, true, err
	}
	return inventory.OrderAllocated{}, false, nil
}
