// Package kafkafeed is a [consume.Feed] on Kafka: a relay of the server publishes the shop's
// events to topics (keyed by stream id, so that one stream's events stay in order in one
// partition), and the replicas of a service share one Kafka consumer group on them.
//
// Each poll's records are handled partition by partition, in offset order within a
// partition; a handling that fails for now is retried in place after the retry delay (the
// partition waits), one that fails for good is logged and dropped. Offsets are committed
// after the records are handled, so that a replica that dies leaves its uncommitted records
// to the replica that takes its partitions: delivery is at least once. Records a relay
// published again after a restart (the same event id) are dropped by [kafkabus.Dedup]; the
// handler's idempotency covers the rest (a record handled by a replica that died before it
// committed, or whose partition moved to another replica while it handled it).
//
// The group may rebalance while a poll is handled: blocking rebalances until the poll is
// committed would deadlock, since a commit waits for a rebalance under way to end.
package kafkafeed

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/annalsdb/annals/bridge"
	"github.com/annalsdb/annals/examples/shop/consume"
	"github.com/annalsdb/annals/groups"
	"github.com/annalsdb/annals/kafkabus"
	"github.com/twmb/franz-go/pkg/kgo"
)

// DefaultSessionTimeout is the group session of a [Feed] whose SessionTimeout is zero: how
// long the group waits for a replica that stopped answering before it gives its partitions to
// the others (6 s is the least a Kafka broker accepts by default).
const DefaultSessionTimeout = 6 * time.Second

// Feed consumes Topics in the Kafka consumer group named by the service's group
// (consume.Options.Group), from the start of the topics for a new group. It is a value:
// Run may be called by several goroutines, each a member of the group.
type Feed struct {
	// Brokers are the seed brokers, host:port. Required.
	Brokers []string
	// Topics to consume. Required.
	Topics []string
	// SessionTimeout; 0 means [DefaultSessionTimeout].
	SessionTimeout time.Duration
	// RebalanceTimeout is how long a rebalance waits for the members to join again; 0 means
	// the session timeout. A member that died is waited for this long (after its session
	// ended) before the others are given its partitions, and commits wait for a rebalance
	// under way; a member rejoins in the background, whatever it is handling, so a short
	// timeout costs nothing.
	RebalanceTimeout time.Duration
	// ClientOptions are more franz-go options, applied last.
	ClientOptions []kgo.Opt
}

// maxPoll bounds the records of one poll, per worker.
const maxPoll = 32

// Run implements consume.Feed. It returns an error for missing brokers, topics or group, or
// options franz-go refuses; a broker that cannot be reached is waited for (and logged).
func (f *Feed) Run(ctx context.Context, opts consume.Options, handle consume.Handler) error {
	o := opts.WithDefaults()
	if len(f.Brokers) == 0 || len(f.Topics) == 0 || o.Group == "" {
		return fmt.Errorf("kafka feed: want brokers (%q), topics (%q) and a group (%q)", f.Brokers, f.Topics, o.Group)
	}
	session := f.SessionTimeout
	if session <= 0 {
		session = DefaultSessionTimeout
	}
	rebalance := f.RebalanceTimeout
	if rebalance <= 0 {
		rebalance = session
	}
	kopts := []kgo.Opt{
		kgo.SeedBrokers(f.Brokers...), kgo.ClientID(o.Consumer),
		kgo.ConsumerGroup(o.Group), kgo.ConsumeTopics(f.Topics...),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
		kgo.DisableAutoCommit(),
		kgo.SessionTimeout(session), kgo.RebalanceTimeout(rebalance),
		kgo.HeartbeatInterval(max(session/6, 100*time.Millisecond)),
	}
	cl, err := kgo.NewClient(append(kopts, f.ClientOptions...)...)
	if err != nil {
		return fmt.Errorf("kafka feed: %w", err)
	}
	defer cl.Close() // leaves the group, so that the others take the partitions at once
	for {
		err := cl.Ping(ctx)
		if err == nil {
			break
		}
		if ctx.Err() != nil {
			return nil
		}
		o.Log.Warn("kafka: no broker answers: trying again in a second", "brokers", f.Brokers, "err", err)
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(time.Second):
		}
	}
	o.Log.Info("joined consumer group", "bus", "kafka", "group", o.Group, "consumer", o.Consumer, "topics", f.Topics)
	c := &consumer{o: o, handle: handle, dedup: kafkabus.NewDedup(0)}
	defer func() {
		o.Log.Info("left consumer group", "bus", "kafka", "group", o.Group, "consumer", o.Consumer, "duplicates dropped", c.duplicates.Load())
	}()
	for {
		fetches := cl.PollRecords(ctx, maxPoll*o.Workers)
		if ctx.Err() != nil || fetches.IsClientClosed() {
			return nil // the records polled are not handled: left to the next member
		}
		fetches.EachError(func(topic string, p int32, err error) {
			if !errors.Is(err, context.Canceled) {
				o.Log.Warn("kafka: fetch failed", "topic", topic, "partition", p, "err", err)
			}
		})
		done := c.handlePoll(ctx, fetches)
		if len(done) > 0 {
			cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
			if err := cl.CommitRecords(cctx, done...); err != nil {
				// Not committed: the records come again (here or to another member), and are
				// dropped as duplicates or handled again, harmlessly.
				o.Log.Warn("kafka: commit failed", "group", o.Group, "err", err)
			}
			cancel()
		}
	}
}

// consumer handles the polls of one Run.
type consumer struct {
	o      consume.Options
	handle consume.Handler
	dedup  *kafkabus.Dedup
	// duplicates counts the records dropped as duplicates.
	duplicates atomic.Int64
}

// handlePoll handles the records of fetches, up to o.Workers partitions at once, and returns
// the last record handled of each partition (nil entries left out).
func (c *consumer) handlePoll(ctx context.Context, fetches kgo.Fetches) []*kgo.Record {
	var parts [][]*kgo.Record
	fetches.EachPartition(func(p kgo.FetchTopicPartition) {
		if len(p.Records) > 0 {
			parts = append(parts, p.Records)
		}
	})
	last := make([]*kgo.Record, len(parts))
	turns := make(chan struct{}, c.o.Workers)
	var wg sync.WaitGroup
	for i, rs := range parts {
		turns <- struct{}{}
		wg.Go(func() {
			defer func() { <-turns }()
			last[i] = c.handlePartition(ctx, rs)
		})
	}
	wg.Wait()
	var out []*kgo.Record
	for _, r := range last {
		if r != nil {
			out = append(out, r)
		}
	}
	return out
}

// handlePartition handles rs, records of one partition, in order, and returns the last one
// done (handled, dropped or skipped), nil for none. It stops early only when ctx ends while a
// handling waits to be retried.
func (c *consumer) handlePartition(ctx context.Context, rs []*kgo.Record) *kgo.Record {
	var last *kgo.Record
	for _, r := range rs {
		if !c.handleRecord(ctx, r) {
			break
		}
		last = r
	}
	return last
}

// handleRecord handles r, retrying while it fails for now, and reports whether r is done.
func (c *consumer) handleRecord(ctx context.Context, r *kgo.Record) bool {
	o := c.o
	msg := kafkabus.Message(r)
	ev, err := bridge.Recorded(&msg)
	if err != nil {
		o.Log.Error("dropping a record that holds no event", "topic", r.Topic, "partition", r.Partition, "offset", r.Offset, "err", err)
		return true
	}
	if !o.Settings.Filter.Match(ev.Stream, ev.Type) {
		return true
	}
	if c.dedup.Duplicate(r) {
		c.duplicates.Add(1)
		return true
	}
	for retries := 0; ; retries++ {
		err := consume.Handle(ctx, o, c.handle, groups.Message{Event: ev, Retries: retries})
		if err == nil || errors.Is(err, consume.ErrPermanent) {
			return true
		}
		select {
		case <-ctx.Done():
			return false
		case <-time.After(o.RetryDelay):
		}
	}
}
