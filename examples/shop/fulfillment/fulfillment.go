// Package fulfillment is the shop's warehouse: it prepares and ships the orders whose stock the
// inventory allocated. Each order's shipment is the stream "shipment-<order>" (category
// "shipment"): [OrderPrepared], then [OrderShipped].
package fulfillment

import (
	"errors"
	"strings"

	"github.com/annalsdb/annals/codec"
	"github.com/annalsdb/annals/examples/shop/cart"
)

// Stream returns the stream of an order's shipment.
func Stream(order string) string { return "shipment-" + order }

// Order returns the order whose shipment stream is stream, and false for another stream.
func Order(stream string) (string, bool) { return strings.CutPrefix(stream, "shipment-") }

// Events, with the type names they are stored under.
type (
	// OrderPrepared ("OrderPrepared"): the order's lines are picked and packed.
	OrderPrepared struct {
		Order string      `json:"order"`
		Lines []cart.Line `json:"lines"`
	}
	// OrderShipped ("OrderShipped"): the parcel left, with its tracking number.
	OrderShipped struct {
		Order    string `json:"order"`
		Tracking string `json:"tracking"`
	}
)

// Stored type names.
const (
	TypeOrderPrepared = "OrderPrepared"
	TypeOrderShipped  = "OrderShipped"
)

// Register adds the shipment's events to r.
func Register(r *codec.Registry) error {
	return errors.Join(
		codec.Register[OrderPrepared](r, TypeOrderPrepared, nil),
		codec.Register[OrderShipped](r, TypeOrderShipped, nil),
	)
}
