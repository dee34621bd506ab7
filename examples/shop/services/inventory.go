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
// order that has one, a shipment of what is not reserved), and an order whose reservation of a
// product was released or shipped cannot reserve it again (the decider refuses it), so each
// product's stream records an order's reservation once, whichever handlings of OrderPlaced run,
// one after another or at once on two replicas. The allocation's outcome is written once (an
// id derived from OrderPlaced's, expecting no stream) and is the decision: the stock is
// released after the outcome OrderOutOfStock is recorded, by every handling that finds it
// recorded, so a handling that dies between the two is completed by the redelivery, and one
// that loses the race to record its outcome follows the outcome recorded. An order allocated
// keeps its reservations (a late redelivery never releases nor reserves again what was
// shipped since).
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

// allocate reserves every line of the order and records the outcome in the order's allocation
// stream, unless an outcome is recorded already; when the outcome recorded is OrderOutOfStock
// it releases every line.
func (s *Inventory) allocate(ctx context.Context, ev annals.RecordedEvent, order string, placed cart.OrderPlaced) error {
	outcome, _, err := s.recorded(ctx, order)
	if err != nil {
		return err
	}
	if outcome == "" {
		if outcome, err = s.reserve(ctx, ev, order, placed); err != nil {
			return err
		}
	}
	if outcome != inventory.TypeOrderOutOfStock {
		return nil
	}
	opts := decider.CausedBy(ev)
	for _, l := range placed.Lines {
		if err := s.command(ctx, l.SKU, inventory.Release{Order: order, Reason: "out of stock"}, opts); err != nil {
			return fmt.Errorf("release %s for %s: %w", l.SKU, order, err)
		}
	}
	return nil
}

// reserve reserves the lines of the order until one is refused, appends the outcome to the
// order's allocation stream, and returns the type of the outcome recorded: its own, or that of
// another handling of the order that recorded first. Errors are the store's (retried).
func (s *Inventory) reserve(ctx context.Context, ev annals.RecordedEvent, order string, placed cart.OrderPlaced) (string, error) {
	opts := decider.CausedBy(ev)
	var outcome any = inventory.OrderAllocated{Order: order, Lines: placed.Lines}
	for _, l := range placed.Lines {
		err := s.command(ctx, l.SKU, inventory.Reserve{Order: order, Qty: l.Qty}, opts)
		if errors.Is(err, decider.ErrRefused) {
			outcome = inventory.OrderOutOfStock{Order: order, Reason: err.Error()}
			break
		}
		if err != nil {
			return "", fmt.Errorf("reserve %d %s for %s: %w", l.Qty, l.SKU, order, err)
		}
	}
	id := consume.ID(ev.ID, "inventory", "allocation")
	err := appendOnce(ctx, s.store, s.reg, ev, inventory.AllocationStream(order), annals.NoStream, []annals.UUID{id}, outcome)
	if err != nil && !errors.Is(err, annals.ErrWrongExpectedVersion) {
		return "", err
	}
	// The outcome recorded first stands, and it may be another handling's: the store
	// recognises a repeat by the events' ids alone, and every handling of the order appends
	// under the same id, so the append may succeed as a repeat even when the outcome recorded
	// differs from this one. Read back what was recorded.
	recorded, _, err := s.recorded(ctx, order)
	if err == nil && recorded == "" {
		err = fmt.Errorf("allocation of %s: appended, yet no outcome is readable", order)
	}
	return recorded, err
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
	typ, a, err := s.recorded(ctx, order)
	return a, typ != "", err
}

// recorded returns the type of the outcome recorded for the order ("" for none yet) and, when
// it is OrderAllocated, the allocation.
func (s *Inventory) recorded(ctx context.Context, order string) (string, inventory.OrderAllocated, error) {
	for rec, err := range s.store.ReadStream(ctx, inventory.AllocationStream(order), &annals.ReadOptions{Limit: 1}) {
		if errors.Is(err, annals.ErrStreamNotFound) {
			return "", inventory.OrderAllocated{}, nil
		}
		if err != nil {
			return "", inventory.OrderAllocated{}, err
		}
		switch rec.Type {
		case inventory.TypeOrderAllocated:
			a, err := decode[inventory.OrderAllocated](s.reg, rec)
			return rec.Type, a, err
		case inventory.TypeOrderOutOfStock:
			return rec.Type, inventory.OrderAllocated{}, nil
		}
		return "", inventory.OrderAllocated{}, consume.Permanent(fmt.Errorf("allocation of %s: unknown outcome %s", order, rec.Type))
	}
	return "", inventory.OrderAllocated{}, nil
}
