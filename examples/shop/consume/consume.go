// Package consume runs the consumer of a shop service: it creates the service's consumer group
// when it is missing, joins it, and hands each event the group delivers to the service's
// handler, acking what the handler did and nacking what failed, so that the group gives it to
// a consumer again (this one or another replica). A [Feed] is where the events come from: the
// server's consumer group ([Groups], [Run]) or a broker's topic or stream that a relay of the
// server fills (packages kafkafeed and natsfeed); the handler is the same on each. Delivery is at least once: the handlers are
// idempotent by event id, and [ID] derives the ids of the events a handler appends from the
// id of the event it handles, so that handling an event again appends nothing new.
package consume

import (
	"context"
	"crypto/sha1"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/annalsdb/annals"
	"github.com/annalsdb/annals/groups"
)

// Handler handles one delivered event. It returns nil when the event is handled (it is then
// acked), an error marked with [Permanent] when handling it again cannot succeed (it is
// parked), and any other error when it may succeed later (it is retried after a delay). It must
// be idempotent: the same event may come again, to this replica or another, after a crash, a
// message timeout or a lost ack.
type Handler func(ctx context.Context, m groups.Message) error

// Options configure [Run]. Group and Settings are required; the rest have defaults.
type Options struct {
	// Group is the consumer group's name; Settings are used to create it when it is missing
	// (an existing group keeps its own).
	Group    string
	Settings groups.Settings
	// Consumer names this replica in the group's figures; default the group's name.
	Consumer string
	// Workers is how many events are handled at once; default 8. The consumer's window is
	// twice that.
	Workers int
	// RetryDelay is how long a failed event waits before it is delivered again; default 1 s.
	RetryDelay time.Duration
	// Log receives what goes wrong and what is parked; default slog.Default().
	Log *slog.Logger
	// HandleTimeout bounds one handling; default 30 s. A handling under way when ctx ends may
	// run to its end (bounded by it) and is acked, so that a graceful stop leaves nothing in
	// flight.
	HandleTimeout time.Duration
}

// WithDefaults returns o with the defaults in place of its zero fields.
func (o Options) WithDefaults() Options {
	if o.Consumer == "" {
		o.Consumer = o.Group
	}
	if o.Workers <= 0 {
		o.Workers = 8
	}
	if o.RetryDelay <= 0 {
		o.RetryDelay = time.Second
	}
	if o.HandleTimeout <= 0 {
		o.HandleTimeout = 30 * time.Second
	}
	if o.Log == nil {
		o.Log = slog.Default()
	}
	return o
}

// ErrPermanent marks an error of a handler that handling the event again cannot cure (an event
// that does not decode, say): the event is parked in the group's parked stream.
var ErrPermanent = errors.New("consume: permanent failure")

// Permanent returns err marked with [ErrPermanent].
func Permanent(err error) error { return fmt.Errorf("%w: %w", ErrPermanent, err) }

// Ensure creates group name with settings unless a group of that name exists. Replicas that
// start together may all call it: one creates the group, the others find it.
func Ensure(ctx context.Context, svc groups.Service, name string, settings groups.Settings) error {
	if _, err := svc.Info(ctx, name); err == nil {
		return nil
	}
	_, err := svc.Create(ctx, name, settings)
	if err == nil || errors.Is(err, groups.ErrGroupExists) {
		return nil
	}
	if _, ierr := svc.Info(ctx, name); ierr == nil {
		return nil // another replica created it meanwhile
	}
	return fmt.Errorf("create group %s: %w", name, err)
}

// Run creates the group when it is missing, joins it, and handles its events with handle on
// opts.Workers goroutines until ctx ends; then it lets the handlings under way finish, acks
// them, leaves the group and returns nil. When the connection to the group fails it joins
// again after a second. It returns an error when the group cannot be created or joined for a
// reason retrying does not cure (bad settings, the group deleted).
func Run(ctx context.Context, svc groups.Service, opts Options, handle Handler) error {
	o := opts.WithDefaults()
	for {
		err := Ensure(ctx, svc, o.Group, o.Settings)
		if err == nil {
			err = runOnce(ctx, svc, o, handle)
		}
		switch {
		case ctx.Err() != nil:
			return nil
		case errors.Is(err, annals.ErrInvalidArgument), errors.Is(err, groups.ErrGroupDeleted):
			return err
		}
		o.Log.Warn("consumer group: joining again in a second", "group", o.Group, "err", err)
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(time.Second):
		}
	}
}

// runOnce joins the group and runs the workers until ctx ends (nil) or the consumer fails.
func runOnce(ctx context.Context, svc groups.Service, o Options, handle Handler) error {
	c, err := svc.Join(ctx, o.Group, &groups.JoinOptions{Name: o.Consumer, Window: 2 * o.Workers})
	if err != nil {
		return fmt.Errorf("join group %s: %w", o.Group, err)
	}
	o.Log.Info("joined consumer group", "group", o.Group, "consumer", o.Consumer)
	wctx, stop := context.WithCancel(ctx)
	defer stop()
	var (
		wg    sync.WaitGroup
		once  sync.Once
		first error
	)
	for range o.Workers {
		wg.Go(func() {
			if err := work(wctx, c, o, handle); err != nil {
				once.Do(func() { first = err })
				stop()
			}
		})
	}
	wg.Wait()
	return errors.Join(first, c.Close())
}

// work receives and handles messages until ctx ends (nil) or the consumer fails.
func work(ctx context.Context, c groups.Consumer, o Options, handle Handler) error {
	for {
		m, err := c.Receive(ctx)
		if ctx.Err() != nil {
			return nil
		}
		if err != nil {
			return err
		}
		// The handling and its ack outlive ctx (bounded by HandleTimeout): a graceful stop
		// finishes what it started instead of leaving it to a redelivery.
		hctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), o.HandleTimeout)
		err = handle(hctx, m)
		switch {
		case err == nil:
			err = c.Ack(hctx, m.Event.ID)
		case errors.Is(err, ErrPermanent):
			o.Log.Error("parking an event", "group", o.Group, "stream", m.Event.Stream, "type", m.Event.Type, "id", m.Event.ID, "err", err)
			err = c.Nack(hctx, groups.Nack{Action: groups.Park, Reason: reason(err)}, m.Event.ID)
		default:
			o.Log.Warn("handling failed: retrying later", "group", o.Group, "stream", m.Event.Stream, "type", m.Event.Type, "id", m.Event.ID, "retries", m.Retries, "err", err)
			err = c.Nack(hctx, groups.Nack{Action: groups.Retry, Delay: o.RetryDelay, Reason: reason(err)}, m.Event.ID)
		}
		cancel()
		if errors.Is(err, groups.ErrNotInFlight) {
			// The message timeout took it back and gave it to another consumer: handled twice,
			// which the handler's idempotency makes harmless.
			o.Log.Warn("settled an event no longer in flight to this consumer", "group", o.Group, "id", m.Event.ID)
			err = nil
		}
		if err != nil {
			return err
		}
	}
}

// reason is err's text, cut to what a nack carries.
func reason(err error) string {
	s := err.Error()
	if len(s) > 1024 {
		s = s[:1024]
	}
	return s
}

// ID returns the id of an event a service appends in reaction to the event consumed, derived
// from consumed, the service's name and what the event is (a UUID in the form of version 5,
// over SHA-1): handling the same event again gives the same ids, so that the append is
// recognised as a repeat and writes nothing (see annals.ExpectedRevision for where a repeat
// is recognised).
func ID(consumed annals.UUID, service, what string) annals.UUID {
	h := sha1.New()
	for _, p := range []string{consumed.String(), service, what} {
		fmt.Fprintf(h, "%d:%s;", len(p), p)
	}
	var u annals.UUID
	copy(u[:], h.Sum(nil))
	u[6] = u[6]&0x0f | 0x50
	u[8] = u[8]&0x3f | 0x80
	return u
}
