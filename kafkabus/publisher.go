package kafkabus

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/annalsdb/annals"
	"github.com/annalsdb/annals/bridge"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
)

// DefaultMaxBufferedRecords is the records a [Publisher] holds unanswered when
// PublisherOptions.MaxBufferedRecords is 0.
const DefaultMaxBufferedRecords = 10_000

// DefaultLinger is how long the producer waits for more records to fill a batch to a
// partition; a relay publishes in bursts, so a short linger keeps the latency low while the
// batches stay full under load.
const DefaultLinger = 2 * time.Millisecond

// PublisherOptions configure [OpenPublisher].
type PublisherOptions struct {
	// Brokers are the seed brokers, host:port. Required.
	Brokers []string
	// MaxBufferedRecords bounds the records the publisher holds unanswered: past it Publish
	// blocks until the broker answers some; 0 means [DefaultMaxBufferedRecords].
	MaxBufferedRecords int
	// ClientOptions are more franz-go options (TLS, SASL, …), applied last. A producer
	// publishing to brokers whose message.max.bytes is below franz-go's default batch size
	// (1,000,012 bytes) should pass kgo.ProducerBatchMaxBytes with the broker's value, or
	// batches of small records may be refused as too large.
	ClientOptions []kgo.Opt
}

// Publisher is a relay.Publisher on an idempotent franz-go producer (acks from all in-sync
// replicas). It is safe for concurrent use.
//
// Records go to the topic msg.Subject with key msg.Key, which franz-go's default partitioner
// hashes (murmur2, as Kafka's Java client does) to choose the partition, so that the records
// of one key go to one partition in the order they were published. Topics the brokers do not
// have are created by them when they allow it (the client asks for it:
// kgo.AllowAutoTopicCreation); otherwise records to a missing topic fail with
// kerr.UnknownTopicOrPartition, which is not [Publisher.Permanent] (an operator may create the
// topic).
//
// A record is retried until the broker answers it (no delivery timeout, unbounded retries):
// while the brokers are down, records wait in the client and Publish blocks once
// MaxBufferedRecords are waiting, which is the relay's back-pressure.
type Publisher struct {
	client  *kgo.Client
	brokers []string
	// slots holds a token per record handed to the client and not yet answered.
	slots chan struct{}
}

// OpenPublisher returns a Publisher; it does not wait for the brokers to answer (the first
// publishes do). It returns an error matching annals.ErrInvalidArgument for no brokers, a
// negative MaxBufferedRecords or a client option franz-go refuses.
func OpenPublisher(opts PublisherOptions) (*Publisher, error) {
	if len(opts.Brokers) == 0 {
		return nil, invalid("open publisher: no brokers")
	}
	for _, b := range opts.Brokers {
		if b == "" {
			return nil, invalid("open publisher: empty broker address in %q", opts.Brokers)
		}
	}
	max := opts.MaxBufferedRecords
	switch {
	case max < 0:
		return nil, invalid("open publisher: MaxBufferedRecords %d is negative", max)
	case max == 0:
		max = DefaultMaxBufferedRecords
	}
	kopts := []kgo.Opt{
		kgo.SeedBrokers(opts.Brokers...),
		kgo.RequiredAcks(kgo.AllISRAcks()),
		// The client may hold more than Publish lets in: a record's token is given back in
		// its promise, slightly before the client forgets the record, and Produce must never
		// block on the client's own bound.
		kgo.MaxBufferedRecords(2 * max),
		kgo.AllowAutoTopicCreation(),
		kgo.ProducerLinger(DefaultLinger),
	}
	kopts = append(kopts, opts.ClientOptions...)
	c, err := kgo.NewClient(kopts...)
	if err != nil {
		return nil, fmt.Errorf("%w: kafkabus: open publisher: %w", annals.ErrInvalidArgument, err)
	}
	return &Publisher{
		client:  c,
		brokers: append([]string(nil), opts.Brokers...),
		slots:   make(chan struct{}, max),
	}, nil
}

// Publish implements relay.Publisher: msg.Subject is the topic, msg.Key the key. It blocks
// while MaxBufferedRecords records wait for the broker, until one is answered or ctx is done
// (then it returns ctx's error and done is not called). Otherwise done is called once, from
// franz-go's promise goroutine, with nil when every in-sync replica has the record, or with
// the error (wrapping franz-go's: a kerr.Error from the broker, kgo.ErrClientClosed after
// Close). A message with no subject fails through done with an error matching
// annals.ErrInvalidArgument. Cancelling ctx after Publish returned does not cancel the record.
func (p *Publisher) Publish(ctx context.Context, msg *bridge.Message, done func(error)) error {
	select {
	case p.slots <- struct{}{}:
	default:
		select {
		case p.slots <- struct{}{}:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	if msg.Subject == "" {
		<-p.slots
		done(invalid("publish event %s: no topic", msg.ID))
		return nil
	}
	rec := &kgo.Record{
		Topic: msg.Subject,
		Key:   msg.Key,
		Value: msg.Value,
		// The record is never cancelled: once handed over it is answered by the broker, or
		// failed by Close.
		Context: context.Background(),
	}
	if len(msg.Headers) > 0 {
		rec.Headers = make([]kgo.RecordHeader, len(msg.Headers))
		for i, h := range msg.Headers {
			rec.Headers[i] = kgo.RecordHeader{Key: h.Key, Value: h.Value}
		}
	}
	topic, id := msg.Subject, msg.ID
	p.client.Produce(context.Background(), rec, func(_ *kgo.Record, err error) {
		<-p.slots
		if err != nil {
			err = fmt.Errorf("kafkabus: publish event %s to topic %s: %w", id, topic, err)
		}
		done(err)
	})
	return nil
}

// permanentErrors are the broker's refusals of a record itself, which publishing again does
// not cure.
var permanentErrors = []error{
	kerr.MessageTooLarge,
	kerr.RecordListTooLarge,
	kerr.InvalidTopicException,
	kerr.InvalidRecord,
	kerr.CorruptMessage,
	kerr.InvalidRequiredAcks,
	kerr.PolicyViolation,
	kerr.UnsupportedForMessageFormat,
	kerr.TopicAuthorizationFailed,
	kerr.ClusterAuthorizationFailed,
	kerr.TransactionalIDAuthorizationFailed,
	kerr.SaslAuthenticationFailed,
	annals.ErrInvalidArgument,
}

// Permanent implements relay.Publisher: the record too large, the topic invalid, not
// authorized, a message with no topic. A record larger than the producer's batch bound
// (kgo.ProducerBatchMaxBytes) is refused alone, before it is sent; a batch the broker refuses
// as too large fails every record in it, so the error may name a record that fits: keep the
// batch bound at or below the brokers' message.max.bytes (see PublisherOptions.ClientOptions). Everything else (the broker down, a timeout,
// franz-go's retry or delivery limits when ClientOptions set them, an unknown topic) is
// transient.
func (p *Publisher) Permanent(err error) bool {
	for _, target := range permanentErrors {
		if errors.Is(err, target) {
			return true
		}
	}
	return false
}

// String names the target, for a relay's status: "kafka <brokers>".
func (p *Publisher) String() string { return "kafka " + strings.Join(p.brokers, ",") }

// Close waits for what was published to be answered (until ctx is done) and closes the
// client; records still unanswered then are failed through their done with
// kgo.ErrClientClosed. It returns ctx's error when ctx ended the wait.
func (p *Publisher) Close(ctx context.Context) error {
	err := p.client.Flush(ctx)
	p.client.Close()
	if err != nil {
		return fmt.Errorf("kafkabus: close publisher: %w", err)
	}
	return nil
}
