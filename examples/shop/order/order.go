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
// its payment before it is cancelled and its stock released. reg decodes the events it
// follows (the cart's and the inventory's).
func Manager(reg *codec.Registry, paymentWindow time.Duration) process.Manager[State, any] {
	p := &policy{window: paymentWindow}
	return process.Manager[State, any]{
		Name:     Name,
		Filter:   &annals.Filter{Categories: []string{"cart", "stock"}, EventTypes: eventTypes},
		Decode:   process.Decoder[any](reg),
		Instance: p.instance,
		Initial:  func() State { return State{Reserved: map[string]bool{}} },
		React:    p.react,
		Evolve:   p.evolve,
	}
}

// Sender returns the order process's [process.Sender]: cart commands to carts, stock
// commands to inventory, each with the idempotency key, correlation and causation the process
// gives it. The handlers' refusals (a domain rule, a failed validation) come back to the
// process to compensate; their other errors stop it until it runs again.
func Sender(carts *decider.Handler[cart.State, cart.Command, cart.Event],
	stock *decider.Handler[inventory.State, inventory.Command, inventory.Event]) (process.Sender, error) {
	return process.HandlerSender(process.To("cart", carts), process.To("stock", stock))
}

var eventTypes = []string{
	cart.TypeOrderPlaced, cart.TypeOrderPaid,
	inventory.TypeReserved,
}

type policy struct {
	window time.Duration
}

func (p *policy) instance(e any, rec annals.RecordedEvent) (string, bool) {
	switch e := e.(type) {
	case cart.OrderPlaced, cart.OrderPaid:
		return cart.ID(rec.Stream)
	case inventory.Reserved:
		return e.Order, e.Order != ""
	}
	return "", false
}

func (p *policy) react(id string, s State, in process.Input[any]) []process.Action {
	switch e := in.Event.(type) {
	case cart.OrderPlaced:
		var acts []process.Action
		for _, l := range e.Lines {
			acts = append(acts, process.Send{Stream: inventory.Stream(l.SKU), Command: inventory.Reserve{Order: id, Qty: l.Qty}})
		}
		return acts
	case inventory.Reserved:
		if s.Status != cart.Placed || len(s.Reserved)+1 < len(s.Lines) {
			return nil
		}
		sku, _ := inventory.SKU(in.Recorded.Stream)
		if s.Reserved[sku] {
			return nil
		}
		return []process.Action{
			process.Send{Stream: cart.Stream(id), Command: cart.ConfirmOrder{}},
			process.SetDeadline{Name: "payment", After: p.window},
		}
	case cart.OrderPaid:
		acts := []process.Action{process.CancelDeadline{Name: "payment"}}
		for _, l := range s.Lines {
			acts = append(acts, process.Send{Stream: inventory.Stream(l.SKU), Command: inventory.Ship{Order: id}})
		}
		return acts
	}
	switch {
	case in.Refusal != nil && s.Status == cart.Placed:
		// A line could not be reserved: give back the others and reject the order.
		return append(p.release(id, s, "order rejected"),
			process.Send{Stream: cart.Stream(id), Command: cart.RejectOrder{Reason: in.Refusal.Error}})
	case in.Deadline != nil && s.Status == cart.Confirmed:
		return append(p.release(id, s, "payment window expired"),
			process.Send{Stream: cart.Stream(id), Command: cart.CancelOrder{Reason: "not paid within " + p.window.String()}})
	}
	return nil
}

func (p *policy) release(id string, s State, reason string) []process.Action {
	var acts []process.Action
	for _, l := range s.Lines {
		acts = append(acts, process.Send{Stream: inventory.Stream(l.SKU), Command: inventory.Release{Order: id, Reason: reason}})
	}
	return acts
}

func (p *policy) evolve(s State, in process.Input[any]) State {
	switch e := in.Event.(type) {
	case cart.OrderPlaced:
		s.Cart, _ = cart.ID(in.Recorded.Stream)
		s.Lines, s.Status = e.Lines, cart.Placed
	case inventory.Reserved:
		sku, _ := inventory.SKU(in.Recorded.Stream)
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
