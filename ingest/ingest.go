// Package ingest appends the messages of a bus (a Kafka topic, a JetStream stream) to Annals
// streams, idempotently: the mirror of package relay.
//
// An [Ingest] reads a [Source] (kafkabus.Source, natsbus.Source) batch by batch, turns each
// message into an event (bridge.Decoder: the stream from a template, the event id from the
// message's id or, without one, from where it was read), appends the events, and only when
// they are durable records its progress and commits the batch to the broker. So a crash
// anywhere delivers again only messages from the last two batches, and those are appended
// once.
//
// # Where it resumes, and why nothing is appended twice
//
// For every source (a Kafka partition, a JetStream stream) the ingest keeps a progress record
// in the store, in the stream "annals.ingest-<name>-<source>" (bounded to its last event by
// maxCount 1): Done, the offset of the last message whose event is durable, Next, the offset
// of the last message that may be being appended, and Since, a position below which none of
// the messages after Done was appended. The record is written after a batch is fetched and
// before its events are appended (so every event of that batch has a higher position in the
// log than the record). Batches overlap by one: while the events of a batch are appended, the
// next batch is fetched and its records are written, so a record announces both batches (its
// Next), says done what was durable before either (its Done: the batches before them, whose
// broker commit follows), and bounds the lookups by the position of the record before it (its
// Since), which was durable before the appends under way began. After a restart, messages at
// or before Done are only committed again; messages after Done and up to Next may have been
// appended before the crash, and each is looked up by event id in its target stream, read
// backwards down to Since; messages after Next were never appended. Until every message of
// that window is durable, the records written after it keep its Next and its Since, so that a
// second crash in the middle of the window leaves nothing unlooked-for.
//
// An append is never abandoned to the store: a write a store has accepted may land after its
// caller gave up on it, and then after the lookups of the next attempt. So the appends of a
// batch are not cancelled by Run's context nor by each other's failure; the attempt waits for
// each to answer (within a minute) before it ends.
//
// A message the bus delivers twice under one id at different offsets (a relay that published
// its tail again) is dropped while its first copy is among the last ids the ingest saw
// ([Options].DedupSize, in memory, kept across the restarts of Run's supervisor but not
// across processes): an id seen again at the offset it was first seen at is the same message
// delivered again, and the progress records decide for it.
//
// # Replicas
//
// [Ingest.Run] runs under a supervisor with a lease ("ingest/"+Name), like a relay: one
// replica ingests, the others stand by. When the store keeps the lease (a Fenced method:
// memstore, filestore, pgstore, the client), the progress records and the events are appended
// under its check, so a replica that lost the lease appends nothing more (the lease must then
// be the store's own, which the default Policy picks: the store refuses a lease it did not
// give); over another store,
// a record written under a newer token refuses the older holder's records. The records are
// compare-and-set (the expected revision is the record read), so two writers of one record
// never both go on.
package ingest

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/annalsdb/annals"
	"github.com/annalsdb/annals/bridge"
	"github.com/annalsdb/annals/lease"
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
	// Logger receives warnings (failed runs, unless Policy.OnChange is set: its caller reports
	// them); nil means slog.Default().
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
	// Offsets is the last offset of each source whose event is durable (appended, or found
	// appended before), from the records read when Run started and the batches since.
	Offsets map[string]uint64 `json:"offsets,omitempty"`
}

// Ingest appends the messages of a Source; see the package documentation. Its methods are
// safe for concurrent use.
type Ingest struct {
	store  Store
	fencer fencer // store's Fenced, or nil
	src    Source
	opts   Options
	sup    *supervisor.Supervisor
	// bounded holds the progress streams known to hold maxCount 1 (stream name → struct{}).
	bounded sync.Map
	// recent is the ids of the last messages seen, with where they were read; only the Run
	// under way uses it.
	recent *recent
	// idle is how long Run waits for messages before it records the batch it appended last
	// as done and commits it.
	idle time.Duration

	// mu guards the counters; an attempt takes it while holding its own (attempt.mu before
	// Ingest.mu).
	mu struct {
		sync.Mutex
		appended, duplicates, errors uint64
		lastErr                      error
		lastTime                     time.Time
		offsets                      map[string]uint64
		rate                         rate
	}
}

// fencer is an event store that keeps leases and can run a write under the check of one
// (lease.Memory.Fenced, which memstore and filestore embed, pgstore.Store.Fenced and
// client.Client.Fenced).
type fencer interface {
	Fenced(ctx context.Context, write func() error) error
}

// New returns an Ingest. It returns an error matching annals.ErrInvalidArgument for an
// invalid name or a zero Decoder.Stream, and one matching lease.ErrInvalid for an invalid
// Policy (see supervisor.New).
func New(store Store, src Source, opts *Options) (*Ingest, error) {
	if opts == nil {
		return nil, fmt.Errorf("%w: ingest: no options (Name and Decoder.Stream are required)", annals.ErrInvalidArgument)
	}
	o := *opts
	if o.Name == "" {
		return nil, fmt.Errorf("%w: ingest: empty name", annals.ErrInvalidArgument)
	}
	if err := annals.ValidateStreamID(ProgressStreamPrefix + o.Name + "-x"); err != nil {
		return nil, fmt.Errorf("ingest name %q: %w", o.Name, err)
	}
	if err := lease.ValidateName("ingest/" + o.Name); err != nil {
		return nil, fmt.Errorf("%w: ingest name %q: %w", annals.ErrInvalidArgument, o.Name, err)
	}
	if o.Decoder.Stream.IsZero() {
		return nil, fmt.Errorf("%w: ingest %q: no Decoder.Stream template", annals.ErrInvalidArgument, o.Name)
	}
	if store == nil || src == nil {
		return nil, fmt.Errorf("%w: ingest %q: nil store or source", annals.ErrInvalidArgument, o.Name)
	}
	switch {
	case o.Batch < 0:
		return nil, fmt.Errorf("%w: ingest %q: negative Batch %d", annals.ErrInvalidArgument, o.Name, o.Batch)
	case o.Batch == 0:
		o.Batch = DefaultBatch
	}
	switch {
	case o.DedupSize < 0:
		return nil, fmt.Errorf("%w: ingest %q: negative DedupSize %d", annals.ErrInvalidArgument, o.Name, o.DedupSize)
	case o.DedupSize == 0:
		o.DedupSize = DefaultDedupSize
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	in := &Ingest{store: store, src: src, opts: o, recent: newRecent(o.DedupSize), idle: time.Second}
	in.fencer, _ = store.(fencer)
	in.mu.offsets = map[string]uint64{}
	policy := o.Policy.Resolve(store)
	permanent := policy.Permanent
	if permanent == nil {
		permanent = supervisor.IsPermanent
	}
	// A message that cannot be an event, or whose stream refuses it, stops the ingest
	// whatever the policy says: trying again would only refuse it again.
	policy.Permanent = func(err error) bool {
		return errors.Is(err, annals.ErrInvalidArgument) || errors.Is(err, annals.ErrStreamDeleted) || permanent(err)
	}
	sup, err := supervisor.New(supervisor.Options{Name: "ingest/" + o.Name, Policy: policy})
	if err != nil {
		return nil, fmt.Errorf("ingest %q: %w", o.Name, err)
	}
	in.sup = sup
	return in, nil
}

// Name returns the ingest's name.
func (in *Ingest) Name() string { return in.opts.Name }

// Run ingests until ctx is done (nil) or a permanent error stops it: a message that cannot be
// an event (bridge.Decoder's error, naming the message), a refused append (an invalid or
// tombstoned stream). Transient errors are retried with backoff. When ctx is done it records
// the last batch appended as done and commits it before it returns. It returns an error
// matching supervisor.ErrBusy when another Run of in is under way.
func (in *Ingest) Run(ctx context.Context) error {
	err := in.sup.Run(ctx, in.work)
	if ctx.Err() != nil && (err == nil || errors.Is(err, ctx.Err())) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("ingest %q: %w", in.opts.Name, err)
	}
	return nil
}

// work is one run under the supervisor: it starts the source, ingests until ctx is done or
// an error, and stops the source.
func (in *Ingest) work(ctx context.Context) (err error) {
	a := newAttempt(in)
	defer func() {
		if err != nil && ctx.Err() == nil {
			in.failed(err)
		}
	}()
	if err := in.src.Start(ctx, a.resume); err != nil {
		return fmt.Errorf("start source: %w", err)
	}
	defer func() {
		if serr := in.src.Stop(); serr != nil && err == nil && ctx.Err() == nil {
			err = fmt.Errorf("stop source: %w", serr)
		}
	}()
	return a.loop(ctx)
}

// failed counts a failed run and logs it when it is to be retried.
func (in *Ingest) failed(err error) {
	in.mu.Lock()
	in.mu.errors++
	in.mu.lastErr, in.mu.lastTime = err, time.Now()
	in.mu.Unlock()
	if in.opts.Policy.OnChange == nil { // else the caller reports the retry: not logged twice
		in.opts.Logger.Warn("ingest failed", "ingest", in.opts.Name, "err", err)
	}
}
