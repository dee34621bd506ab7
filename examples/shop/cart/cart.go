// Package cart is the write side of the shop's shopping cart: its commands, its events and the
// decider that turns one into the other. It is pure: no I/O, no clock, no store. The command
// handler of package decider runs it against any annals.Store.
//
// A cart lives in the stream "cart-<id>" (category "cart"). Items are added and removed while
// the cart is open; PlaceOrder closes it. In the one-process scenario the order process
// (package order) then reserves the stock and answers with ConfirmOrder or RejectOrder, and a
// confirmed order that is not paid in time is cancelled; in the shop as services the
// inventory, fulfillment and notification services react to OrderPlaced instead (see
// docs/shop.md), and the cart stays placed.
package cart

import (
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"

	"github.com/annalsdb/annals/codec"
	"github.com/annalsdb/annals/decider"
)

// Stream returns the stream of the cart with the given id.
func Stream(id string) string { return "cart-" + id }

// Commands.
type (
	// AddItem puts Qty units of SKU into the cart at UnitPrice (cents).
	AddItem struct {
		SKU       string
		Qty       int
		UnitPrice int64
	}
	// RemoveItem takes Qty units of SKU out of the cart.
	RemoveItem struct {
		SKU string
		Qty int
	}
	// PlaceOrder closes the cart and orders what it holds.
	PlaceOrder struct{}
	// ConfirmOrder records that the stock of every line is reserved (sent by the order
	// process).
	ConfirmOrder struct{}
	// RejectOrder records that the order cannot be served (sent by the order process).
	RejectOrder struct{ Reason string }
	// Pay records the payment of a confirmed order.
	Pay struct{ Amount int64 }
	// CancelOrder cancels a confirmed order that was not paid in time (sent by the order
	// process when the reservation expires).
	CancelOrder struct{ Reason string }
)

// Command is one of the cart's commands.
type Command interface{ isCommand() }

func (AddItem) isCommand()      {}
func (RemoveItem) isCommand()   {}
func (PlaceOrder) isCommand()   {}
func (ConfirmOrder) isCommand() {}
func (RejectOrder) isCommand()  {}
func (Pay) isCommand()          {}
func (CancelOrder) isCommand()  {}

// Line is a line of a cart or an order.
type Line struct {
	SKU       string `json:"sku"`
	Qty       int    `json:"qty"`
	UnitPrice int64  `json:"unitPrice"`
}

// Events, with the type names they are stored under.
type (
	// ItemAdded ("ItemAddedToCart").
	ItemAdded struct {
		SKU       string `json:"sku"`
		Qty       int    `json:"qty"`
		UnitPrice int64  `json:"unitPrice"`
	}
	// ItemRemoved ("ItemRemovedFromCart").
	ItemRemoved struct {
		SKU string `json:"sku"`
		Qty int    `json:"qty"`
	}
	// OrderPlaced ("OrderPlaced"): the lines ordered, in SKU order, and their total in cents.
	OrderPlaced struct {
		Lines []Line `json:"lines"`
		Total int64  `json:"total"`
	}
	// OrderConfirmed ("OrderConfirmed").
	OrderConfirmed struct{}
	// OrderRejected ("OrderRejected").
	OrderRejected struct {
		Reason string `json:"reason"`
	}
	// OrderPaid ("OrderPaid").
	OrderPaid struct {
		Amount int64 `json:"amount"`
	}
	// OrderCancelled ("OrderCancelled").
	OrderCancelled struct {
		Reason string `json:"reason"`
	}
)

// Event is one of the cart's events.
type Event interface{ isEvent() }

func (ItemAdded) isEvent()      {}
func (ItemRemoved) isEvent()    {}
func (OrderPlaced) isEvent()    {}
func (OrderConfirmed) isEvent() {}
func (OrderRejected) isEvent()  {}
func (OrderPaid) isEvent()      {}
func (OrderCancelled) isEvent() {}

// Stored type names.
const (
	TypeItemAdded      = "ItemAddedToCart"
	TypeItemRemoved    = "ItemRemovedFromCart"
	TypeOrderPlaced    = "OrderPlaced"
	TypeOrderConfirmed = "OrderConfirmed"
	TypeOrderRejected  = "OrderRejected"
	TypeOrderPaid      = "OrderPaid"
	TypeOrderCancelled = "OrderCancelled"
)

// Register adds the cart's events to r. Version 2 of ItemAddedToCart added the unit price;
// version 1 events (without it) load with a price of 0.
func Register(r *codec.Registry) error {
	return errors.Join(
		codec.Register[ItemAdded](r, TypeItemAdded, &codec.TypeOptions{Version: 2, Upcasters: []codec.Upcaster{
			{From: 1, Up: upcastItemAddedV1}}}),
		codec.Register[ItemRemoved](r, TypeItemRemoved, nil),
		codec.Register[OrderPlaced](r, TypeOrderPlaced, nil),
		codec.Register[OrderConfirmed](r, TypeOrderConfirmed, nil),
		codec.Register[OrderRejected](r, TypeOrderRejected, nil),
		codec.Register[OrderPaid](r, TypeOrderPaid, nil),
		codec.Register[OrderCancelled](r, TypeOrderCancelled, nil),
	)
}

// upcastItemAddedV1 turns {"sku","quantity"} (version 1) into {"sku","qty","unitPrice":0}.
func upcastItemAddedV1(data []byte) ([]byte, error) {
	var v1 struct {
		SKU      string `json:"sku"`
		Quantity int    `json:"quantity"`
	}
	if err := json.Unmarshal(data, &v1); err != nil {
		return nil, err
	}
	return json.Marshal(ItemAdded{SKU: v1.SKU, Qty: v1.Quantity})
}

// Status is where a cart is in its life.
type Status string

// The statuses, in the order a cart normally goes through them.
const (
	Open      Status = "open"
	Placed    Status = "placed"
	Confirmed Status = "confirmed"
	Paid      Status = "paid"
	Rejected  Status = "rejected"
	Cancelled Status = "cancelled"
)

// State is the cart as its events leave it.
type State struct {
	Status Status          `json:"status"`
	Items  map[string]Line `json:"items"`
	Total  int64           `json:"total"` // of the order, once placed
}

// Lines returns the cart's lines in SKU order.
func (s State) Lines() []Line {
	return slices.SortedFunc(maps.Values(s.Items), func(a, b Line) int { return strings.Compare(a.SKU, b.SKU) })
}

// Domain errors: the rules a command can break. Decide returns them wrapped with detail;
// check them with errors.Is. Nothing is written when a command breaks a rule.
var (
	ErrNotOpen       = errors.New("cart: the order is already placed")
	ErrEmpty         = errors.New("cart: the cart is empty")
	ErrNotInCart     = errors.New("cart: not that many in the cart")
	ErrWrongStatus   = errors.New("cart: not possible in the order's status")
	ErrWrongAmount   = errors.New("cart: the payment does not match the total")
	ErrInvalidAmount = errors.New("cart: quantities and prices must be positive")
)

// Validate checks a command on its own, before the cart's state is loaded.
func Validate(c Command) error {
	switch c := c.(type) {
	case AddItem:
		if c.SKU == "" || c.Qty <= 0 || c.UnitPrice < 0 {
			return fmt.Errorf("%w: add %d of %q at %d", ErrInvalidAmount, c.Qty, c.SKU, c.UnitPrice)
		}
	case RemoveItem:
		if c.SKU == "" || c.Qty <= 0 {
			return fmt.Errorf("%w: remove %d of %q", ErrInvalidAmount, c.Qty, c.SKU)
		}
	case Pay:
		if c.Amount <= 0 {
			return fmt.Errorf("%w: pay %d", ErrInvalidAmount, c.Amount)
		}
	}
	return nil
}

// Decider is the cart's decider. The cart's id is not part of its commands or events: it is
// the stream's (see [Stream] and [ID]).
var Decider = decider.Decider[State, Command, Event]{
	Initial: func() State { return State{Status: Open, Items: map[string]Line{}} },
	Decide:  decide,
	Evolve:  evolve,
}

// ID returns the id of the cart whose stream is stream, and false for another stream.
func ID(stream string) (string, bool) { return strings.CutPrefix(stream, "cart-") }

func decide(s State, c Command) ([]Event, error) {
	switch c := c.(type) {
	case AddItem:
		if s.Status != Open {
			return nil, ErrNotOpen
		}
		return []Event{ItemAdded{SKU: c.SKU, Qty: c.Qty, UnitPrice: c.UnitPrice}}, nil
	case RemoveItem:
		if s.Status != Open {
			return nil, ErrNotOpen
		}
		if s.Items[c.SKU].Qty < c.Qty {
			return nil, fmt.Errorf("%w: %d of %q asked, %d there", ErrNotInCart, c.Qty, c.SKU, s.Items[c.SKU].Qty)
		}
		return []Event{ItemRemoved{SKU: c.SKU, Qty: c.Qty}}, nil
	case PlaceOrder:
		if s.Status != Open {
			return nil, ErrNotOpen
		}
		if len(s.Items) == 0 {
			return nil, ErrEmpty
		}
		lines := s.Lines()
		var total int64
		for _, l := range lines {
			total += int64(l.Qty) * l.UnitPrice
		}
		return []Event{OrderPlaced{Lines: lines, Total: total}}, nil
	case ConfirmOrder:
		if s.Status == Confirmed {
			return nil, nil // already done: a repeated confirmation changes nothing
		}
		if s.Status != Placed {
			return nil, fmt.Errorf("%w: confirm a %s order", ErrWrongStatus, s.Status)
		}
		return []Event{OrderConfirmed{}}, nil
	case RejectOrder:
		if s.Status == Rejected {
			return nil, nil
		}
		if s.Status != Placed {
			return nil, fmt.Errorf("%w: reject a %s order", ErrWrongStatus, s.Status)
		}
		return []Event{OrderRejected{Reason: c.Reason}}, nil
	case Pay:
		if s.Status != Confirmed {
			return nil, fmt.Errorf("%w: pay a %s order", ErrWrongStatus, s.Status)
		}
		if c.Amount != s.Total {
			return nil, fmt.Errorf("%w: paid %d, total %d", ErrWrongAmount, c.Amount, s.Total)
		}
		return []Event{OrderPaid{Amount: c.Amount}}, nil
	case CancelOrder:
		if s.Status == Cancelled {
			return nil, nil
		}
		if s.Status != Confirmed {
			return nil, fmt.Errorf("%w: cancel a %s order", ErrWrongStatus, s.Status)
		}
		return []Event{OrderCancelled{Reason: c.Reason}}, nil
	}
	return nil, fmt.Errorf("cart: unknown command %T", c)
}

func evolve(s State, e Event) State {
	// Copy the map: states are values, and an earlier state (a snapshot, a cached state, a
	// step of the history) must not change when a later event is folded in.
	s.Items = maps.Clone(s.Items)
	switch e := e.(type) {
	case ItemAdded:
		l := s.Items[e.SKU]
		l.SKU, l.Qty, l.UnitPrice = e.SKU, l.Qty+e.Qty, e.UnitPrice
		s.Items[e.SKU] = l
	case ItemRemoved:
		l := s.Items[e.SKU]
		if l.Qty -= e.Qty; l.Qty <= 0 {
			delete(s.Items, e.SKU)
		} else {
			s.Items[e.SKU] = l
		}
	case OrderPlaced:
		s.Status, s.Total = Placed, e.Total
	case OrderConfirmed:
		s.Status = Confirmed
	case OrderRejected:
		s.Status = Rejected
	case OrderPaid:
		s.Status = Paid
	case OrderCancelled:
		s.Status = Cancelled
	}
	return s
}
