package consume

import (
	"context"
	"errors"

	"github.com/annalsdb/annals/groups"
)

// Feed delivers a service's events to its handler. Every feed delivers at least once, so the
// handler must be idempotent by event id; none promises an order across streams.
type Feed interface {
	// Run hands handle the events that opts.Settings.Filter selects, under the consumer
	// group opts.Group (shared by the service's replicas), until ctx ends; it then lets the
	// handlings under way finish (bounded by opts.HandleTimeout), settles them and returns
	// nil. It returns an error when it cannot go on for a reason retrying does not cure.
	Run(ctx context.Context, opts Options, handle Handler) error
}

// Groups is the Feed of the server's consumer groups: [Run] on Service.
type Groups struct {
	Service groups.Service
}

// Run implements [Feed] with [Run].
func (g Groups) Run(ctx context.Context, opts Options, handle Handler) error {
	return Run(ctx, g.Service, opts, handle)
}

// Handle runs handle on m as a feed of a broker does: bounded by o.HandleTimeout and outliving
// ctx, so that a graceful stop finishes what it started. It logs a failure with the event,
// as an error when it is permanent (the feed then drops the event: a broker keeps no parked
// stream) and as a warning otherwise (the feed delivers it again later). o must have its
// defaults ([Options.WithDefaults]).
func Handle(ctx context.Context, o Options, handle Handler, m groups.Message) error {
	hctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), o.HandleTimeout)
	defer cancel()
	err := handle(hctx, m)
	ev := m.Event
	switch {
	case err == nil:
	case errors.Is(err, ErrPermanent):
		o.Log.Error("dropping an event", "group", o.Group, "stream", ev.Stream, "type", ev.Type, "id", ev.ID, "err", err)
	default:
		o.Log.Warn("handling failed: retrying later", "group", o.Group, "stream", ev.Stream, "type", ev.Type, "id", ev.ID, "retries", m.Retries, "err", err)
	}
	return err
}
