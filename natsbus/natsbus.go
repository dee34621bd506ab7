// Package natsbus connects Annals to NATS JetStream with github.com/nats-io/nats.go: a
// [Publisher] for the relay (package relay) and a [Source] for the ingest (package ingest).
//
// Each event is published with Nats-Msg-Id set to its event id, so that JetStream drops the
// duplicates a relay's restart publishes within the stream's duplicate window (its
// Duplicates setting, 2 minutes by default): a relay must come back within it, and it
// checkpoints often (relay.Options.CheckpointInterval) so that little is published again.
package natsbus

import (
	"context"
	"time"

	"github.com/annalsdb/annals/bridge"
	"github.com/nats-io/nats.go"
)

// DefaultSubject is the subject template of a relay to NATS.
const DefaultSubject = "events.{category}.{stream}"

// StreamOptions say which JetStream stream to use, and how to create it when it is missing.
type StreamOptions struct {
	// Name of the JetStream stream. Required.
	Name string
	// Subjects it binds when it is created (e.g. "events.>"); empty means the stream must
	// exist.
	Subjects []string
	// Duplicates is the duplicate window when it is created; 0 means JetStream's default
	// (2 minutes).
	Duplicates time.Duration
}

// PublisherOptions configure [OpenPublisher].
type PublisherOptions struct {
	// URL of the NATS server(s), comma-separated. Required unless Conn is set.
	URL string
	// Conn is a connection to use instead of dialing URL (the Publisher does not close it).
	Conn *nats.Conn
	// Stream is the JetStream stream the subjects go to.
	Stream StreamOptions
	// MaxPending bounds the publishes awaiting an ack before Publish blocks; 0 means 4,000.
	MaxPending int
}

// Publisher is a relay.Publisher on JetStream's asynchronous publish. It is safe for
// concurrent use.
type Publisher struct {
}

// OpenPublisher connects (unless opts.Conn is set) and makes sure the stream exists (creating
// it when Stream.Subjects is set). Errors say whether the server could not be reached or the
// stream is missing.
func OpenPublisher(ctx context.Context, opts PublisherOptions) (*Publisher, error) {
	panic("unimplemented")
}

// Publish implements relay.Publisher: msg.Subject is the subject, msg.ID the Nats-Msg-Id.
func (p *Publisher) Publish(ctx context.Context, msg *bridge.Message, done func(error)) error {
	panic("unimplemented")
}

// Permanent implements relay.Publisher: the message larger than the server's max payload, no
// stream bound to the subject.
func (p *Publisher) Permanent(err error) bool { panic("unimplemented") }

// String names the target: "nats <url> stream <name>".
func (p *Publisher) String() string { panic("unimplemented") }

// Close waits for pending acks (until ctx is done) and closes the connection it opened.
func (p *Publisher) Close(ctx context.Context) error { panic("unimplemented") }

// SourceOptions configure [OpenSource].
type SourceOptions struct {
	URL  string
	Conn *nats.Conn
	// Stream is the JetStream stream to ingest. Required (it must exist).
	Stream string
	// FilterSubjects narrows it; empty means all its subjects.
	FilterSubjects []string
}

// Source is an ingest.Source on an ordered JetStream consumer that starts after the
// sequence the ingest recorded: its source is "nats:<stream>", offsets the stream's
// sequences. JetStream keeps no consumer state for it; the ingest's progress record is its
// offset, and Commit does nothing.
type Source struct {
}

// OpenSource connects (unless opts.Conn is set) and checks that the stream exists.
func OpenSource(ctx context.Context, opts SourceOptions) (*Source, error) { panic("unimplemented") }

// Start implements ingest.Source.
func (s *Source) Start(ctx context.Context, resume func(ctx context.Context, source string) (uint64, bool, error)) error {
	panic("unimplemented")
}

// Fetch implements ingest.Source.
func (s *Source) Fetch(ctx context.Context, max int) ([]bridge.Incoming, error) {
	panic("unimplemented")
}

// Commit implements ingest.Source; JetStream needs nothing (see Source).
func (s *Source) Commit(ctx context.Context, msgs []bridge.Incoming) error { return nil }

// Stop implements ingest.Source.
func (s *Source) Stop() error { panic("unimplemented") }

// Close closes the connection it opened.
func (s *Source) Close() error { panic("unimplemented") }
