// Package natsfeed is a [consume.Feed] on NATS JetStream: a relay of the server publishes the
// shop's events to a JetStream stream (with Nats-Msg-Id set to the event id, so that the
// stream drops what a relay's restart publishes again), and the replicas of a service share
// one durable pull consumer on it.
//
// Each replica pulls messages and acks each after its handling; a handling that fails for now
// is given back with a delay (a nak), one that fails for good is logged and terminated. A
// message not acked within the ack wait (its replica died) goes to a replica again: delivery
// is at least once, and the handler's idempotency makes a second handling harmless. The
// replicas handle messages concurrently, so there is no order across messages, even of one
// stream.
package natsfeed

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/annalsdb/annals"
	"github.com/annalsdb/annals/bridge"
	"github.com/annalsdb/annals/examples/shop/consume"
	"github.com/annalsdb/annals/groups"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// DefaultAckWait is the ack wait of a [Feed] whose AckWait is zero: how long a message waits
// for its ack before it is delivered again (to any replica).
const DefaultAckWait = 5 * time.Second

// Feed consumes a JetStream stream through the durable consumer named by the service's group
// (consume.Options.Group), which it creates or updates (every replica asks for the same
// configuration) to deliver the stream from its start. It is a value: Run may be called by
// several goroutines, each a replica.
type Feed struct {
	// URL of the NATS server(s), comma-separated. Required.
	URL string
	// Stream is the JetStream stream. Required; Run waits for it to exist.
	Stream string
	// Subjects narrow the stream's subjects to those the service needs; empty means all.
	Subjects []string
	// AckWait; 0 means [DefaultAckWait].
	AckWait time.Duration
}

// Run implements consume.Feed. It returns an error for a missing URL, stream or group; a
// server that cannot be reached or a stream that does not exist yet is waited for (and
// logged).
func (f *Feed) Run(ctx context.Context, opts consume.Options, handle consume.Handler) error {
	o := opts.WithDefaults()
	if f.URL == "" || f.Stream == "" || o.Group == "" {
		return fmt.Errorf("nats feed: want a URL (%q), a stream (%q) and a group (%q)", f.URL, f.Stream, o.Group)
	}
	nc, err := nats.Connect(f.URL, nats.Name(o.Consumer), nats.MaxReconnects(-1), nats.RetryOnFailedConnect(true))
	if err != nil {
		return fmt.Errorf("nats feed: connect %s: %w", f.URL, err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		return fmt.Errorf("nats feed: %w", err)
	}
	for {
		err := f.runOnce(ctx, js, o, handle)
		if ctx.Err() != nil {
			// The acks of the last handlings are on their way: send them before closing.
			if err := nc.Flush(); err != nil {
				o.Log.Warn("nats: flushing the last acks failed", "err", err)
			}
			return nil
		}
		if errors.Is(err, jetstream.ErrInvalidOption) || errors.Is(err, jetstream.ErrConsumerNameAlreadyInUse) {
			return err
		}
		o.Log.Warn("nats: consuming again in a second", "stream", f.Stream, "group", o.Group, "err", err)
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(time.Second):
		}
	}
}

// runOnce makes sure the durable consumer exists and handles its messages on o.Workers
// goroutines until ctx ends (nil) or the consumer fails.
func (f *Feed) runOnce(ctx context.Context, js jetstream.JetStream, o consume.Options, handle consume.Handler) error {
	ackWait := f.AckWait
	if ackWait <= 0 {
		ackWait = DefaultAckWait
	}
	cons, err := js.CreateOrUpdateConsumer(ctx, f.Stream, jetstream.ConsumerConfig{
		Durable:        o.Group,
		FilterSubjects: f.Subjects,
		DeliverPolicy:  jetstream.DeliverAllPolicy,
		AckPolicy:      jetstream.AckExplicitPolicy,
		AckWait:        ackWait,
		MaxDeliver:     -1,
	})
	if err != nil {
		return fmt.Errorf("consumer %s on stream %s: %w", o.Group, f.Stream, err)
	}
	it, err := cons.Messages(jetstream.PullMaxMessages(2 * o.Workers))
	if err != nil {
		return fmt.Errorf("consumer %s: %w", o.Group, err)
	}
	defer it.Stop() // what was pulled and not handled goes to a replica after the ack wait
	o.Log.Info("joined consumer group", "bus", "nats", "group", o.Group, "consumer", o.Consumer, "stream", f.Stream, "subjects", f.Subjects)
	var (
		wg    sync.WaitGroup
		once  sync.Once
		first error
	)
	wctx, stop := context.WithCancel(ctx)
	defer stop()
	for range o.Workers {
		wg.Go(func() {
			if err := work(wctx, it, o, handle); err != nil {
				once.Do(func() { first = err })
				stop()
			}
		})
	}
	wg.Wait()
	return first
}

// work handles messages of it until ctx ends (nil) or the consumer fails.
func work(ctx context.Context, it jetstream.MessagesContext, o consume.Options, handle consume.Handler) error {
	for {
		m, err := it.Next(jetstream.NextContext(ctx))
		switch {
		case ctx.Err() != nil:
			return nil
		case errors.Is(err, jetstream.ErrMsgIteratorClosed), errors.Is(err, jetstream.ErrConsumerDeleted),
			errors.Is(err, jetstream.ErrConsumerNotFound):
			return err
		case err != nil:
			o.Log.Warn("nats: pulling messages", "group", o.Group, "err", err) // heartbeats missed, a reconnect: the iterator goes on
			continue
		}
		settle(ctx, m, o, handle)
	}
}

// settle handles m and acks it, naks it for a retry, or terminates it.
func settle(ctx context.Context, m jetstream.Msg, o consume.Options, handle consume.Handler) {
	ev, err := recorded(m)
	if err != nil {
		o.Log.Error("dropping a message that holds no event", "subject", m.Subject(), "err", err)
		logSettle(o, m.Term())
		return
	}
	if !o.Settings.Filter.Match(ev.Stream, ev.Type) {
		logSettle(o, m.Ack())
		return
	}
	retries := 0
	if md, err := m.Metadata(); err == nil && md.NumDelivered > 0 {
		retries = int(md.NumDelivered - 1)
	}
	err = consume.Handle(ctx, o, handle, groups.Message{Event: ev, Retries: retries})
	switch {
	case err == nil:
		err = m.Ack()
	case errors.Is(err, consume.ErrPermanent):
		err = m.Term()
	default:
		err = m.NakWithDelay(o.RetryDelay)
	}
	logSettle(o, err)
}

// logSettle logs an ack, nak or term that could not be sent: the message comes again after
// the ack wait.
func logSettle(o consume.Options, err error) {
	if err != nil {
		o.Log.Warn("nats: settling a message failed: it comes again", "group", o.Group, "err", err)
	}
}

// recorded returns the event of a message a relay published.
func recorded(m jetstream.Msg) (annals.RecordedEvent, error) {
	msg := bridge.Message{Subject: m.Subject(), Value: m.Data()}
	for k, vs := range m.Headers() {
		for _, v := range vs {
			msg.Headers = append(msg.Headers, bridge.Header{Key: k, Value: []byte(v)})
		}
	}
	return bridge.Recorded(&msg)
}
