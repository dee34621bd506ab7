// Package services holds the handlers of the shop's consuming services: inventory,
// fulfillment and notification. Each reacts to the events its consumer group delivers and
// writes only through the event store, and each is idempotent by event id: handling an event
// again (a redelivery after a crash, a message timeout or a lost ack) changes nothing. The
// programs in examples/shop run them with package consume; the tests here call them directly.
//
//	cart-<id>        OrderPlaced ─────────┬──▶ inventory: reserve each line ──▶ allocation-<id>: OrderAllocated | OrderOutOfStock
//	                                      └──▶ notification
//	allocation-<id>  OrderAllocated ──────────▶ fulfillment ──▶ shipment-<id>: OrderPrepared, OrderShipped
//	                 OrderOutOfStock ─────────▶ notification
//	shipment-<id>    OrderShipped ──────┬─────▶ inventory: the reserved stock leaves
//	                                    └─────▶ notification
package services

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/annalsdb/annals"
	"github.com/annalsdb/annals/codec"
	"github.com/annalsdb/annals/examples/shop/cart"
	"github.com/annalsdb/annals/examples/shop/consume"
	"github.com/annalsdb/annals/examples/shop/fulfillment"
	"github.com/annalsdb/annals/examples/shop/inventory"
	"github.com/annalsdb/annals/examples/shop/notification"
	"github.com/annalsdb/annals/groups"
)

// Registry returns a codec registry of every event of the shop.
func Registry() (*codec.Registry, error) {
	reg := codec.New(nil)
	err := errors.Join(cart.Register(reg), inventory.Register(reg), inventory.RegisterAllocation(reg),
		fulfillment.Register(reg), notification.Register(reg))
	return reg, err
}

// Service is a consuming service: the group it consumes and its handler.
type Service interface {
	// Group is the name of the service's consumer group; Settings create it.
	Group() string
	Settings() groups.Settings
	// Handle handles one delivered event (see consume.Handler).
	Handle(ctx context.Context, m groups.Message) error
}

// settings are those of every service's group: on $all, the event types and categories
// given, from the beginning, round robin over the replicas, a message timeout of 5 s.
func settings(categories, types []string) groups.Settings {
	return groups.Settings{
		Stream:         annals.AllStream,
		Filter:         &annals.Filter{Categories: categories, EventTypes: types},
		Start:          groups.Start{Kind: groups.FromBeginning},
		Strategy:       groups.RoundRobin,
		MessageTimeout: 5 * time.Second,
		MaxRetries:     20,
	}
}

// decode decodes m's event as E; an event that does not decode is a permanent failure.
func decode[E any](reg *codec.Registry, ev annals.RecordedEvent) (E, error) {
	e, _, err := codec.Decode[E](reg, ev)
	if err != nil {
		return e, consume.Permanent(fmt.Errorf("%s@%d: %w", ev.Stream, ev.Revision, err))
	}
	return e, nil
}

// appendOnce appends the events, encoded with reg and caused by cause, at the place expected:
// their ids must be derived from cause (consume.ID), so that an append repeated when cause is
// handled again is recognised and writes nothing.
func appendOnce(ctx context.Context, store annals.Store, reg *codec.Registry, cause annals.RecordedEvent,
	stream string, expected annals.ExpectedRevision, ids []annals.UUID, events ...any) error {
	md := codec.CausedBy(cause)
	batch := make([]annals.Event, len(events))
	for i, e := range events {
		ev, err := reg.Encode(e, md)
		if err != nil {
			return consume.Permanent(err)
		}
		ev.ID = ids[i]
		batch[i] = ev
	}
	if _, err := store.Append(ctx, stream, expected, batch...); err != nil {
		return fmt.Errorf("append to %s: %w", stream, err)
	}
	return nil
}
