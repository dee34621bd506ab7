// Package inventory is the shop's stock keeping: one stream per product ("stock-<sku>",
// category "stock") that records what came in, what is reserved for which order, and what was
// shipped. Like package cart it is a pure decider; the order process sends it commands.
package inventory

import (
	"errors"
	"fmt"
	"maps"
	"strings"

	"github.com/annalsdb/annals/codec"
	"github.com/annalsdb/annals/decider"
)

// Stream returns the stream of the product with the given SKU.
func Stream(sku string) string { return "stock-" + sku }

// SKU returns the product whose stream is stream, and false for another stream.
func SKU(stream string) (string, bool) { return strings.CutPrefix(stream, "stock-") }

// Commands.
type (
	// Restock adds Qty units to the stock on hand.
	Restock struct{ Qty int }
	// Reserve sets Qty units aside for Order. Reserving again for the same order changes
	// nothing while the reservation stands; once it is closed (released or shipped) the
	// order cannot reserve this product again ([ErrOrderClosed]).
	Reserve struct {
		Order string
		Qty   int
	}
	// Release gives back what was reserved for Order (an order rejected or cancelled) and
	// closes the order's reservation. Releasing what is not reserved changes nothing (and
	// closes nothing: only a release or a shipment of a reservation does).
	Release struct {
		Order  string
		Reason string
	}
	// Ship takes what was reserved for Order out of the stock (an order paid) and closes the
	// order's reservation. Shipping what is not reserved (or was closed) changes nothing.
	Ship struct{ Order string }
)

// Command is one of the inventory's commands.
type Command interface{ isCommand() }

func (Restock) isCommand() {}
func (Reserve) isCommand() {}
func (Release) isCommand() {}
func (Ship) isCommand()    {}

// Events, with the type names they are stored under.
type (
	// Restocked ("StockRestocked").
	Restocked struct {
		Qty int `json:"qty"`
	}
	// Reserved ("StockReserved").
	Reserved struct {
		Order string `json:"order"`
		Qty   int    `json:"qty"`
	}
	// Released ("StockReleased").
	Released struct {
		Order  string `json:"order"`
		Qty    int    `json:"qty"`
		Reason string `json:"reason"`
	}
	// Shipped ("StockShipped").
	Shipped struct {
		Order string `json:"order"`
		Qty   int    `json:"qty"`
	}
)

// Event is one of the inventory's events.
type Event interface{ isEvent() }

func (Restocked) isEvent() {}
func (Reserved) isEvent()  {}
func (Released) isEvent()  {}
func (Shipped) isEvent()   {}

// Stored type names.
const (
	TypeRestocked = "StockRestocked"
	TypeReserved  = "StockReserved"
	TypeReleased  = "StockReleased"
	TypeShipped   = "StockShipped"
)

// Register adds the inventory's events to r.
func Register(r *codec.Registry) error {
	return errors.Join(
		codec.Register[Restocked](r, TypeRestocked, nil),
		codec.Register[Reserved](r, TypeReserved, nil),
		codec.Register[Released](r, TypeReleased, nil),
		codec.Register[Shipped](r, TypeShipped, nil),
	)
}

// State is a product's stock.
//
// Closed holds the orders whose reservation of the product was released or shipped, so that a
// repeated handling of an order (a redelivery after the first handling released or shipped)
// cannot reserve again: an order's work on a product happens once per stream. The set grows
// with the orders that touched the product, as the stream itself does; the example's streams
// are short-lived and small, and the decider's cache keeps the state, so it is not bounded
// here. A shop that lives long would close its books: a stream per period, or the set cut
// to the orders still within their redelivery window.
type State struct {
	OnHand   int             `json:"onHand"`
	Reserved map[string]int  `json:"reserved"`         // by order
	Closed   map[string]bool `json:"closed,omitempty"` // orders released or shipped
}

// Available is what can still be reserved.
func (s State) Available() int {
	n := s.OnHand
	for _, q := range s.Reserved {
		n -= q
	}
	return n
}

// Domain errors; check them with errors.Is.
var (
	// ErrInsufficientStock: fewer units are available than a reservation asks for.
	ErrInsufficientStock = errors.New("inventory: insufficient stock")
	// ErrInvalidQuantity: a quantity is not positive, or an order id is empty.
	ErrInvalidQuantity = errors.New("inventory: invalid quantity or order")
	// ErrOrderClosed: the order's reservation of the product was released or shipped, so
	// the order cannot reserve it again.
	ErrOrderClosed = errors.New("inventory: order's reservation closed")
)

// Validate checks a command on its own.
func Validate(c Command) error {
	switch c := c.(type) {
	case Restock:
		if c.Qty <= 0 {
			return fmt.Errorf("%w: restock %d", ErrInvalidQuantity, c.Qty)
		}
	case Reserve:
		if c.Qty <= 0 || c.Order == "" {
			return fmt.Errorf("%w: reserve %d for %q", ErrInvalidQuantity, c.Qty, c.Order)
		}
	case Release:
		if c.Order == "" {
			return fmt.Errorf("%w: release for no order", ErrInvalidQuantity)
		}
	case Ship:
		if c.Order == "" {
			return fmt.Errorf("%w: ship for no order", ErrInvalidQuantity)
		}
	}
	return nil
}

// Decider is the inventory's decider.
var Decider = decider.Decider[State, Command, Event]{
	Initial: func() State { return State{Reserved: map[string]int{}} },
	Decide:  decide,
	Evolve:  evolve,
}

func decide(s State, c Command) ([]Event, error) {
	switch c := c.(type) {
	case Restock:
		return []Event{Restocked{Qty: c.Qty}}, nil
	case Reserve:
		if _, ok := s.Reserved[c.Order]; ok {
			return nil, nil
		}
		if s.Closed[c.Order] {
			return nil, fmt.Errorf("%w: order %q was released or shipped", ErrOrderClosed, c.Order)
		}
		if avail := s.Available(); avail < c.Qty {
			return nil, fmt.Errorf("%w: %d asked for order %q, %d available", ErrInsufficientStock, c.Qty, c.Order, avail)
		}
		return []Event{Reserved{Order: c.Order, Qty: c.Qty}}, nil
	case Release:
		q, ok := s.Reserved[c.Order]
		if !ok {
			return nil, nil
		}
		return []Event{Released{Order: c.Order, Qty: q, Reason: c.Reason}}, nil
	case Ship:
		q, ok := s.Reserved[c.Order]
		if !ok {
			return nil, nil
		}
		return []Event{Shipped{Order: c.Order, Qty: q}}, nil
	}
	return nil, fmt.Errorf("inventory: unknown command %T", c)
}

// evolve returns the state after e; it copies a map before changing it, since the state
// given may be kept (the decider's cache, a decision that conflicted).
func evolve(s State, e Event) State {
	switch e := e.(type) {
	case Restocked:
		s.OnHand += e.Qty
	case Reserved:
		s.Reserved = maps.Clone(s.Reserved)
		if s.Reserved == nil {
			s.Reserved = map[string]int{}
		}
		s.Reserved[e.Order] = e.Qty
	case Released:
		s = s.close(e.Order)
	case Shipped:
		s = s.close(e.Order)
		s.OnHand -= e.Qty
	}
	return s
}

// close returns s with the order's reservation removed and the order closed.
func (s State) close(order string) State {
	s.Reserved = maps.Clone(s.Reserved)
	delete(s.Reserved, order)
	s.Closed = maps.Clone(s.Closed)
	if s.Closed == nil {
		s.Closed = map[string]bool{}
	}
	s.Closed[order] = true
	return s
}
