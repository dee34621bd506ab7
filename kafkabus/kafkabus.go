// Package kafkabus connects Annals to Apache Kafka with github.com/twmb/franz-go: a
// [Publisher] for the relay (package relay), a [Source] for the ingest (package ingest), and
// [Dedup], the consumer-side helper that drops the duplicates a relay's restart publishes.
//
// Records are keyed by stream id, so that one stream's events go to one partition and stay
// in order; the producer is idempotent (the broker drops the retries of one producer
// session), and a relay restart's duplicates carry the event id in the annals-id header (ce_id
// in the CloudEvents formats) for consumers to drop.
package kafkabus

import (
	"context"

	"github.com/annalsdb/annals/bridge"
	"github.com/twmb/franz-go/pkg/kgo"
)

// PublisherOptions configure [OpenPublisher].
type PublisherOptions struct {
	// Brokers are the seed brokers, host:port. Required.
	Brokers []string
	// MaxBufferedRecords bounds the records the client holds before Publish blocks; 0 means
	// franz-go's default (10,000).
	MaxBufferedRecords int
	// ClientOptions are more franz-go options (TLS, SASL, …), applied last.
	ClientOptions []kgo.Opt
}

// Publisher is a relay.Publisher on an idempotent franz-go producer (acks from all in-sync
// replicas). It is safe for concurrent use.
type Publisher struct {
}

// OpenPublisher returns a Publisher; it does not wait for the brokers to answer (the first
// publishes do). It returns an error matching annals.ErrInvalidArgument for no brokers or a
// client option franz-go refuses.
func OpenPublisher(opts PublisherOptions) (*Publisher, error) { panic("unimplemented") }

// Publish implements relay.Publisher: msg.Subject is the topic, msg.Key the key.
func (p *Publisher) Publish(ctx context.Context, msg *bridge.Message, done func(error)) error {
	panic("unimplemented")
}

// Permanent implements relay.Publisher: the record too large, the topic invalid, not
// authorized.
func (p *Publisher) Permanent(err error) bool { panic("unimplemented") }

// String names the target, for a relay's status: "kafka <brokers>".
func (p *Publisher) String() string { panic("unimplemented") }

// Close waits for what was published to be answered (until ctx is done) and closes the
// client.
func (p *Publisher) Close(ctx context.Context) error { panic("unimplemented") }

// SourceOptions configure [OpenSource].
type SourceOptions struct {
	// Brokers are the seed brokers. Required.
	Brokers []string
	// Topics to consume. Required.
	Topics []string
	// Group is the consumer group whose offsets are committed after each batch. Required.
	Group string
	// ClientOptions are more franz-go options, applied last.
	ClientOptions []kgo.Opt
}

// Source is an ingest.Source on a franz-go consumer group: sources are
// "kafka:<topic>/<partition>", offsets Kafka's.
type Source struct {
}

// OpenSource returns a Source. It returns an error matching annals.ErrInvalidArgument for
// missing brokers, topics or group.
func OpenSource(opts SourceOptions) (*Source, error) { panic("unimplemented") }

// Start implements ingest.Source.
func (s *Source) Start(ctx context.Context, resume func(ctx context.Context, source string) (uint64, bool, error)) error {
	panic("unimplemented")
}

// Fetch implements ingest.Source.
func (s *Source) Fetch(ctx context.Context, max int) ([]bridge.Incoming, error) {
	panic("unimplemented")
}

// Commit implements ingest.Source: it commits the offsets of msgs to the group.
func (s *Source) Commit(ctx context.Context, msgs []bridge.Incoming) error { panic("unimplemented") }

// Stop implements ingest.Source.
func (s *Source) Stop() error { panic("unimplemented") }

// Close closes the client.
func (s *Source) Close() error { panic("unimplemented") }

// Dedup drops records a consumer already handled, by event id (the annals-id header, or ce_id
// in the CloudEvents formats, or the id in a structured CloudEvent). See bridge.Dedup for its
// bound. It is safe for concurrent use.
type Dedup struct {
}

// NewDedup returns a Dedup that remembers up to size ids (0: bridge.DefaultDedupSize).
func NewDedup(size int) *Dedup { panic("unimplemented") }

// Duplicate reports whether r carries an event id seen before, and remembers it. A record
// with no event id is never a duplicate.
func (d *Dedup) Duplicate(r *kgo.Record) bool { panic("unimplemented") }

// Message returns r as a bridge.Message (for bridge.Recorded).
func Message(r *kgo.Record) bridge.Message { panic("unimplemented") }
