// Package ingest appends the messages of a bus (a Kafka topic, a JetStream stream) to Annals
// streams, idempotently: the mirror of package relay.
//
// An [Ingest] reads a [Source] (kafkabus.Source, natsbus.Source) batch by batch, turns each
// message into an event (bridge.Decoder: the stream from a template, the event id from the
// message's id or, without one, from where it was read), appends the events, and only when
// they are durable records its progress and commits the batch to the broker. So a crash
// anywhere delivers again only messages from the last batch, and those are appended once.
//
// # Where it resumes, and why nothing is appended twice
//
// For every source (a Kafka partition, a JetStream stream) the ingest keeps a progress record
// in the store, in the stream "annals.ingest-<name>-<source>" (bounded to its last event by
// maxCount 1): Done, the offset of the last message whose event is durable, and Next, the
// offset of the last message of the batch being appended. The record is written after a batch
// is fetched and before its events are appended (so every event of that batch has a higher
// position in the log than the record), and it says at the same time that the batch before
// it is done; the broker commit of that earlier batch follows. After a restart, messages at or
// before Done are only committed again; messages after Done and up to Next may have been
// appended before the crash, and each is looked up by event id in its target stream, read
// backwards down to the record's position; messages after Next were never appended.
//
// A message the bus delivers twice under one id at different offsets (a relay that published
// its tail again) is dropped while its first copy is among the last ids the ingest saw
// ([Options].DedupSize, in memory).
//
// # Replicas
//
// [Ingest.Run] runs under a supervisor with a lease ("ingest/"+Name), like a relay: one
// replica ingests, the others stand by; the progress records are fenced by the lease.
package ingest

import (
	"context"
	"log/slog"
	"time"

	"github.com/annalsdb/annals"
	"github.com/annalsdb/annals/bridge"
	"github.com/annalsdb/annals/supervisor"
)

// Source is an ordered feed of messages from a bus. kafkabus.Source and natsbus.Source
// implement it. A Source is used by one Run at a time.
type Source interface {
	// Start (re)starts the feed. resume returns, for a source name (bridge.Incoming.Source),
	// the offset of the last message whose event is durable (the record's Done) and whether
	// there is one; a Source
	// whose broker keeps no consumer offsets (JetStream, read with an ordered consumer)
	// starts each source after it, one that does (a Kafka consumer group) may start from its
	// own committed offset, which is never past it.
	Start(ctx context.Context, resume func(ctx context.Context, source string) (uint64, bool, error)) error
	// Fetch returns the next messages, at most max, in offset order within each source,
	// waiting until there is at least one or ctx is done.
	Fetch(ctx context.Context, max int) ([]bridge.Incoming, error)
	// Commit tells the broker that msgs (a batch Fetch returned earlier) are done: a Kafka
	// consumer group commits their offsets. It is called only after their events are durable
	// and a progress record saying so is written.
	Commit(ctx context.Context, msgs []bridge.Incoming) error
	// Stop ends the feed started by Start.
	Stop() error
}

// Defaults of [Options].
const (
	DefaultBatch     = 500
	DefaultDedupSize = bridge.DefaultDedupSize
)

// ProgressStreamPrefix starts the names of the progress streams (see the package doc).
const ProgressStreamPrefix = "annals.ingest-"

// Store is what an ingest uses of an event store: every annals.Store is one.
type Store interface {
	annals.ReadAppender
	annals.MetadataReader
	annals.MetadataWriter
}

// Options configure an [Ingest].
type Options struct {
	// Name names the ingest (its lease "ingest/"+Name, its progress streams). Required: the
	// rules of a stream id apply to ProgressStreamPrefix+Name.
	Name string
	// Decoder turns messages into events; its Stream template is required.
	Decoder bridge.Decoder
	// Batch is the most messages appended between two commits; 0 means [DefaultBatch].
	Batch int
	// DedupSize is how many recent event ids the ingest remembers to drop duplicates sent
	// under one id at different offsets; 0 means [DefaultDedupSize].
	DedupSize int
	// Policy is how Run is supervised; see supervisor.Policy.
	Policy supervisor.Policy
	// Logger receives warnings; nil means slog.Default().
	Logger *slog.Logger
}

// Status describes an ingest at one moment (JSON for the server's status listings).
type Status struct {
	Name       string            `json:"name"`
	Supervisor supervisor.Status `json:"-"`
	State      string            `json:"state"`
	Holder     string            `json:"holder,omitempty"`
	// Appended counts the events appended since this process started, Duplicates the messages
	// recognised as already appended, Errors the failed batches.
	Appended   uint64    `json:"appended"`
	Duplicates uint64    `json:"duplicates"`
	Errors     uint64    `json:"errors"`
	Rate       float64   `json:"rate"`
	LastError  string    `json:"lastError,omitempty"`
	LastTime   time.Time `json:"lastErrorTime,omitzero"`
	// Offsets is the last appended offset of each source.
	Offsets map[string]uint64 `json:"offsets,omitempty"`
}

// Ingest appends the messages of a Source; see the package documentation. Its methods are
// safe for concurrent use.
type Ingest struct {
}

// New returns an Ingest. It returns an error matching annals.ErrInvalidArgument for an
// invalid name or a zero Decoder.Stream.
func New(store Store, src Source, opts *Options) (*Ingest, error) {
	panic("unimplemented")
}

// Name returns the ingest's name.
func (in *Ingest) Name() string { panic("unimplemented") }

// Run ingests until ctx is done (nil) or a permanent error stops it: a message that cannot be
// an event (bridge.Decoder's error, naming the message), a refused append (an invalid or
// tombstoned stream). Transient errors are retried with backoff.
func (in *Ingest) Run(ctx context.Context) error { panic("unimplemented") }

// Status returns the ingest's status now.
func (in *Ingest) Status() Status { panic("unimplemented") }
