// Package order is the shop's order process: the process manager that takes an order from
// placed to paid, or to rejected or cancelled, talking to the cart and the inventory only
// through their events and commands.
//
//	OrderPlaced ──▶ Reserve each line ──▶ StockReserved (all lines) ──▶ ConfirmOrder, payment deadline
//	                     │ refused                                           │
//	                     ▼                                                   ├─ OrderPaid ──▶ Ship each line
//	          Release each line, RejectOrder                                 └─ deadline  ──▶ Release each line, CancelOrder
//
// One instance runs per cart; its journal is the stream "orderprocess-<cart id>".
package order

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"time"

	"github.com/annalsdb/annals"
	"github.com/annalsdb/annals/codec"
	"github.com/annalsdb/annals/decider"
	"github.com/annalsdb/annals/examples/shop/cart"
	"github.com/annalsdb/annals/examples/shop/inventory"
	"github.com/annalsdb/annals/process"
)

// Name is the process manager's name, the category of its journals.
const Name = "orderprocess"

// State is what an order's process knows.
type State struct {
	Cart     string          `json:"cart"`
	Lines    []cart.Line     `json:"lines"`
	Reserved map[string]bool `json:"reserved"` // by SKU
	Status   cart.Status     `json:"status"`
}

// Manager returns the order process. paymentWindow is how long a confirmed order may wait for
// its payment before it is cancelled and its stock released.
func Manager(reg *codec.Registry, paymentWindow time.Duration) process.Manager[State] {
	p := &policy{reg: reg, window: paymentWindow}
	return process.Manager[State]{
		Name:     Name,
		Filter:   &annals.Filter{Categories: []string{"cart", "stock"}, EventTypes: eventTypes},
		Instance: p.instance,
		Initial:  func() State { return State{Reserved: map[string]bool{}} },
		React:    p.react,
		Evolve:   p.evolve,
	}
}

var eventTypes = []string{
	cart.TypeOrderPlaced, cart.TypeOrderPaid,
	inventory.TypeReserved,
}

type policy struct {
	reg    *codec.Registry
	window time.Duration
}

// decode returns the event of in, decoded, or nil for an input that is not an event.
func (p *policy) decode(in process.Input) any {
	if in.Event == nil {
		return nil
	}
	v, _, err := p.reg.Decode(*in.Event)
	if err != nil {
		return nil // not one of ours: the filter lets only our types through
	}
	return v
}

func (p *policy) instance(ev annals.RecordedEvent) (string, bool) {
	if id, ok := cart.ID(ev.Stream); ok {
		return id, true
	}
	if _, ok := inventory.SKU(ev.Stream); ok {
		var r inventory.Reserved
		if json.Unmarshal(ev.Data, &r) == nil && r.Order != "" {
			return r.Order, true
		}
	}
	return "", false
}

func (p *policy) react(s State, in process.Input) []process.Action {
	switch e := p.decode(in).(type) {
	case cart.OrderPlaced:
		id, _ := cart.ID(in.Event.Stream)
		var acts []process.Action
		for _, l := range e.Lines {
			acts = append(acts, process.Send{Stream: inventory.Stream(l.SKU), Command: inventory.Reserve{Order: id, Qty: l.Qty}})
		}
		return acts
	case inventory.Reserved:
		if s.Status != cart.Placed || len(s.Reserved)+1 < len(s.Lines) {
			return nil
		}
		sku, _ := inventory.SKU(in.Event.Stream)
		if s.Reserved[sku] {
			return nil
		}
		return []process.Action{
			process.Send{Stream: cart.Stream(s.Cart), Command: cart.ConfirmOrder{}},
			process.SetDeadline{Name: "payment", After: p.window},
		}
	case cart.OrderPaid:
		acts := []process.Action{process.CancelDeadline{Name: "payment"}}
		for _, l := range s.Lines {
			acts = append(acts, process.Send{Stream: inventory.Stream(l.SKU), Command: inventory.Ship{Order: s.Cart}})
		}
		return acts
	}
	switch {
	case in.Refusal != nil && s.Status == cart.Placed:
		// A line could not be reserved: give back the others and reject the order.
		return append(p.release(s, "order rejected"),
			process.Send{Stream: cart.Stream(s.Cart), Command: cart.RejectOrder{Reason: in.Refusal.Error}})
	case in.Deadline != nil && s.Status == cart.Confirmed:
		return append(p.release(s, "payment window expired"),
			process.Send{Stream: cart.Stream(s.Cart), Command: cart.CancelOrder{Reason: "not paid within " + p.window.String()}})
	}
	return nil
}

func (p *policy) release(s State, reason string) []process.Action {
	var acts []process.Action
	for _, l := range s.Lines {
		acts = append(acts, process.Send{Stream: inventory.Stream(l.SKU), Command: inventory.Release{Order: s.Cart, Reason: reason}})
	}
	return acts
}

func (p *policy) evolve(s State, in process.Input) State {
	switch e := p.decode(in).(type) {
	case cart.OrderPlaced:
		s.Cart, _ = cart.ID(in.Event.Stream)
		s.Lines, s.Status = e.Lines, cart.Placed
	case inventory.Reserved:
		sku, _ := inventory.SKU(in.Event.Stream)
		s.Reserved = maps.Clone(s.Reserved)
		s.Reserved[sku] = true
		if s.Status == cart.Placed && len(s.Reserved) == len(s.Lines) {
			s.Status = cart.Confirmed
		}
	case cart.OrderPaid:
		s.Status = cart.Paid
	}
	switch {
	case in.Refusal != nil && s.Status == cart.Placed:
		s.Status = cart.Rejected
	case in.Deadline != nil && s.Status == cart.Confirmed:
		s.Status = cart.Cancelled
	}
	return s
}

// Handlers are the command handlers the order process sends its commands to.
type Handlers struct {
	Cart      *decider.Handler[cart.State, cart.Command, cart.Event]
	Inventory *decider.Handler[inventory.State, inventory.Command, inventory.Event]
}

// Send is the order process's [process.Sender]: it hands each command to its handler, with the
// idempotency key, correlation and causation the process gives it.
func (h Handlers) Send(ctx context.Context, cmd process.Command) error {
	opts := &decider.CommandOptions{IdempotencyKey: cmd.IdempotencyKey, CorrelationID: cmd.CorrelationID, CausationID: cmd.CausationID}
	var err error
	switch c := cmd.Command.(type) {
	case cart.Command:
		_, err = h.Cart.Handle(ctx, cmd.Stream, c, opts)
	case inventory.Command:
		_, err = h.Inventory.Handle(ctx, cmd.Stream, c, opts)
	default:
		return fmt.Errorf("order: no handler for %T", cmd.Command)
	}
	return err
}

// IsRefusal tells the domain's refusals (which the process compensates) from failures (which
// stop it until it runs again).
func IsRefusal(err error) bool {
	for _, refusal := range []error{
		inventory.ErrInsufficientStock, inventory.ErrInvalidQuantity,
		cart.ErrNotOpen, cart.ErrEmpty, cart.ErrWrongStatus, cart.ErrNotInCart, cart.ErrWrongAmount, cart.ErrInvalidAmount,
		decider.ErrInvalidCommand,
	} {
		if errors.Is(err, refusal) {
			return true
		}
	}
	return false
}
