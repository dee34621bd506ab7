package inventory

import (
	"errors"
	"strings"

	"github.com/annalsdb/annals/codec"
	"github.com/annalsdb/annals/examples/shop/cart"
)

// AllocationStream returns the stream that records the outcome of the inventory's work on an
// order (category "allocation"): one event, [OrderAllocated] or [OrderOutOfStock].
func AllocationStream(order string) string { return "allocation-" + order }

// AllocationOrder returns the order whose allocation stream is stream, and false for another
// stream.
func AllocationOrder(stream string) (string, bool) { return strings.CutPrefix(stream, "allocation-") }

// Outcomes of an order's allocation, with the type names they are stored under.
type (
	// OrderAllocated ("OrderAllocated"): the stock of every line is reserved for the order.
	OrderAllocated struct {
		Order string      `json:"order"`
		Lines []cart.Line `json:"lines"`
	}
	// OrderOutOfStock ("OrderOutOfStock"): a line could not be reserved; nothing is reserved
	// for the order.
	OrderOutOfStock struct {
		Order  string `json:"order"`
		Reason string `json:"reason"`
	}
)

// Stored type names of the outcomes.
const (
	TypeOrderAllocated  = "OrderAllocated"
	TypeOrderOutOfStock = "OrderOutOfStock"
)

// RegisterAllocation adds the outcomes of an allocation to r.
func RegisterAllocation(r *codec.Registry) error {
	return errors.Join(
		codec.Register[OrderAllocated](r, TypeOrderAllocated, nil),
		codec.Register[OrderOutOfStock](r, TypeOrderOutOfStock, nil),
	)
}
