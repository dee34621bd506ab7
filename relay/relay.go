// Package relay publishes the events of an Annals store to a message bus (Kafka, NATS
// JetStream) without the dual-write problem: the store is the outbox. A [Relay] follows $all
// from a checkpoint it keeps in the store, hands each event that passes its filter to a
// [Publisher] (kafkabus and natsbus provide them), and moves the checkpoint only over events
// the broker acknowledged.
//
// # Delivery
//
// In log order per stream, at least once on the wire, exactly once in effect: after a crash
// or a broker error the relay starts again from its stored checkpoint and publishes the
// unacknowledged tail again, under the same event ids, which JetStream's duplicate window
// drops (Nats-Msg-Id) and Kafka consumers drop by id (kafkabus.Dedup). It never skips an
// event: an event the broker refuses for good (too large, say) stops the relay with an error
// naming it (a [*PublishError] matching [ErrRefused]).
//
// # Back-pressure and memory
//
// At most [Options].MaxInFlight events and MaxInFlightBytes bytes are published and not yet
// acknowledged; past either bound the relay waits for acks, so that a slow or absent broker
// slows the relay instead of growing its memory. Events wait in the store, not in memory:
// besides the window, a relay holds at most a few hundred messages (a megabyte) read and
// encoded ahead of their publishing.
//
// # Replicas
//
// [Relay.Run] runs under a supervisor (package supervisor): with a lease keeper (the store's,
// by default, when it keeps leases) one replica publishes while the others stand by, and the
// checkpoint's updates are fenced by the lease; transient errors (a broker down) are retried
// with capped exponential backoff.
//
// # What it skips
//
// System streams ("$…") and the toolkit's own streams ("annals.…": projections' and ingests'
// checkpoints, the relay's own) are not published unless the filter names them by a stream
// prefix starting with "$" or "annals." (the relay's own checkpoint stream never is). Skipped
// events move the checkpoint, but cause a checkpoint write by themselves only once thousands
// of them have passed since the last one (so the relay's own checkpoint writes, an event or
// two each, do not feed it).
package relay

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/annalsdb/annals"
	"github.com/annalsdb/annals/bridge"
	"github.com/annalsdb/annals/projection"
	"github.com/annalsdb/annals/supervisor"
)

// Publisher sends messages to a broker. kafkabus.Publisher and natsbus.Publisher implement it.
// A Publisher that is a fmt.Stringer names its target in [Status].Target.
type Publisher interface {
	// Publish hands msg to the broker and returns without waiting for its answer (it may block
	// while the publisher's own buffer is full, until ctx is done, and then returns ctx's
	// error without calling done). Otherwise done is called exactly once, on any goroutine,
	// with nil when the broker has acknowledged msg durably, or with the error. Messages
	// published one after another with the same Key (Kafka) or Subject (NATS) reach the
	// broker in that order. done must not block. A relay takes an error that Publish returns
	// as the failure of msg (and ignores a done call for it that may still come); an answer of
	// context.Canceled after ctx was cancelled is not counted as a broker's error.
	Publish(ctx context.Context, msg *bridge.Message, done func(error)) error
	// Permanent reports whether an error that done received will not be cured by publishing
	// again (the broker refuses the message itself: too large, not authorized). The relay
	// stops on such an error instead of retrying.
	Permanent(err error) bool
}

// Defaults of [Options].
const (
	DefaultMaxInFlight        = 10_000
	DefaultMaxInFlightBytes   = 64 << 20
	DefaultCheckpointInterval = 200 * time.Millisecond
)

// Store is what a relay uses of an event store: it reads and follows $all, and keeps its
// checkpoint in streams of the store (projection.Checkpoints). Every annals.Store is one,
// the network client included.
type Store interface {
	annals.ReadSubscriber
	projection.CheckpointStore
}

// Options configure a [Relay].
type Options struct {
	// Name names the relay: its lease is "relay/"+Name and its checkpoint is the one
	// projection.Checkpoints keeps for "relay-"+Name (stream
	// "annals.projection-relay-<name>@0"). Required; the rules of a projection's name apply.
	Name string
	// Filter selects the events to publish; nil publishes every user event.
	Filter *annals.Filter
	// Encoder turns events into messages; its Subject is required.
	Encoder bridge.Encoder
	// MaxInFlight and MaxInFlightBytes bound what is published and not yet acknowledged;
	// 0 means [DefaultMaxInFlight] and [DefaultMaxInFlightBytes]. A single message larger than
	// MaxInFlightBytes is still published, alone.
	MaxInFlight      int
	MaxInFlightBytes int
	// CheckpointInterval is the least time between two checkpoint writes; 0 means
	// [DefaultCheckpointInterval]. A restart publishes again at most what was acknowledged
	// in the last interval, and what was in flight.
	CheckpointInterval time.Duration
	// Policy is how Run is supervised (lease, backoff); see supervisor.Policy. Its Keeper
	// defaults to the store's when the store keeps leases.
	Policy supervisor.Policy
	// Logger receives the relay's warnings (retries, unless Policy.OnChange is set: its caller
	// reports them; errors); nil means slog.Default().
	Logger *slog.Logger
}

// Status describes a relay at one moment. It encodes as JSON for GET /v1/relays.
type Status struct {
	Name       string            `json:"name"`
	Supervisor supervisor.Status `json:"-"`
	// State is Supervisor.State as text ("running", "standing-by", "retrying", …).
	State string `json:"state"`
	// Holder is the replica that publishes (this one while running, the other one while
	// standing by).
	Holder string `json:"holder,omitempty"`
	// Checkpoint is the position of the last event acknowledged and checkpointed; Acked the
	// last acknowledged (ahead of Checkpoint by at most a checkpoint interval); Head the last
	// position of the store the relay knows of (the relay reads the store's while Run runs,
	// when Status asks, at most once a second).
	Checkpoint uint64 `json:"checkpoint"`
	Acked      uint64 `json:"acked"`
	Head       uint64 `json:"head"`
	// Lag is the number of positions between Acked and Head when an event that passes the
	// filter lies after Acked, else 0; LagSeconds how old the oldest event published and not
	// yet acknowledged is (0 when none waits).
	Lag        uint64  `json:"lag"`
	LagSeconds float64 `json:"lagSeconds"`
	// Published counts the events acknowledged by the broker since this process started
	// (again-published ones included), Errors the publish errors, InFlight what waits for
	// the broker now.
	Published uint64 `json:"published"`
	Errors    uint64 `json:"errors"`
	InFlight  int    `json:"inFlight"`
	// Rate is the events acknowledged per second over the last few seconds.
	Rate float64 `json:"rate"`
	// LastError is the text of the last error, with its time.
	LastError     string    `json:"lastError,omitempty"`
	LastErrorTime time.Time `json:"lastErrorTime,omitzero"`
	// Target names the broker and subject template ("kafka topic events.{category}").
	Target string `json:"target,omitempty"`
}

// Relay publishes the events of a store; see the package documentation. Its methods are safe
// for concurrent use.
type Relay struct {
	store Store
	pub   Publisher
	opts  Options
	cps   *projection.Checkpoints[struct{}]
	// cpName is the checkpoint's name in cps, cpStream the stream that holds it, cpMeta the
	// stream of cpStream's metadata.
	cpName, cpStream, cpMeta string
	sup                      *supervisor.Supervisor
	log                      *slog.Logger
	stats                    stats
	// headWanted asks the running spell to read the store's head (Status sends it).
	headWanted chan struct{}
	mu         struct {
		sync.Mutex
		running bool
		// win is the window of the running spell, or of the last one.
		win *window
		// stored is the checkpoint as last read or written.
		stored uint64
		sup    supervisor.Status
	}
}

// checkpointPrefix and LeasePrefix start the names of a relay's checkpoint and lease.
const (
	checkpointPrefix = "relay-"
	// LeasePrefix starts the name of every relay's lease: "relay/"+Name.
	LeasePrefix = "relay/"
)

// New returns a Relay. It returns an error matching annals.ErrInvalidArgument for an invalid
// name, filter or encoder (a zero Encoder.Subject, say), a nil store or publisher, negative
// bounds, or an invalid Policy.
func New(store Store, pub Publisher, opts *Options) (*Relay, error) {
	if opts == nil {
		return nil, fmt.Errorf("%w: relay: no options (Name and Encoder are required)", annals.ErrInvalidArgument)
	}
	o := *opts
	if err := projection.ValidateName(o.Name); err != nil {
		return nil, fmt.Errorf("%w: relay name: %w", annals.ErrInvalidArgument, err)
	}
	r := &Relay{store: store, pub: pub, cpName: checkpointPrefix + o.Name, headWanted: make(chan struct{}, 1)}
	r.cpStream = projection.CheckpointStreamPrefix + r.cpName + "@0"
	r.cpMeta = annals.MetaStream(r.cpStream)
	if err := annals.ValidateStreamID(r.cpStream); err != nil {
		return nil, fmt.Errorf("%w: relay %q: its checkpoint stream: %w", annals.ErrInvalidArgument, o.Name, err)
	}
	if store == nil || pub == nil {
		return nil, fmt.Errorf("%w: relay %q: nil store or publisher", annals.ErrInvalidArgument, o.Name)
	}
	if err := o.check(); err != nil {
		return nil, fmt.Errorf("relay %q: %w", o.Name, err)
	}
	r.opts = o
	r.log = o.Logger
	if r.log == nil {
		r.log = slog.Default()
	}
	r.log = r.log.With("relay", o.Name)
	r.cps = projection.NewCheckpoints[struct{}](store, nil)
	sup, err := supervisor.New(supervisor.Options{Name: LeasePrefix + o.Name, Policy: r.policy()})
	if err != nil {
		return nil, fmt.Errorf("%w: relay %q: %w", annals.ErrInvalidArgument, o.Name, err)
	}
	r.sup = sup
	r.mu.sup = sup.Status()
	return r, nil
}

// check validates o's filter, encoder and bounds, and sets the defaults of the bounds.
func (o *Options) check() error {
	if err := o.Filter.Validate(); err != nil {
		return err
	}
	if o.Encoder.Subject.IsZero() {
		return fmt.Errorf("%w: the encoder has no subject template", annals.ErrInvalidArgument)
	}
	if err := o.Encoder.Validate(); err != nil {
		return fmt.Errorf("encoder: %w", err)
	}
	for _, v := range []struct {
		what string
		n    int64
	}{{"MaxInFlight", int64(o.MaxInFlight)}, {"MaxInFlightBytes", int64(o.MaxInFlightBytes)}, {"CheckpointInterval", int64(o.CheckpointInterval)}} {
		if v.n < 0 {
			return fmt.Errorf("%w: negative %s %d", annals.ErrInvalidArgument, v.what, v.n)
		}
	}
	if o.MaxInFlight == 0 {
		o.MaxInFlight = DefaultMaxInFlight
	}
	if o.MaxInFlightBytes == 0 {
		o.MaxInFlightBytes = DefaultMaxInFlightBytes
	}
	if o.CheckpointInterval == 0 {
		o.CheckpointInterval = DefaultCheckpointInterval
	}
	return nil
}

// policy returns the supervision policy of r: the user's, with the store's lease keeper when
// it keeps leases, publish errors permanent exactly when the publisher says so, and r's
// status kept up to date.
func (r *Relay) policy() supervisor.Policy {
	policy := r.opts.Policy.Resolve(r.store)
	permanent := policy.Permanent
	if permanent == nil {
		permanent = supervisor.IsPermanent
	}
	policy.Permanent = func(err error) bool {
		if pe, ok := errors.AsType[*PublishError](err); ok {
			return pe.Permanent
		}
		return permanent(err)
	}
	onChange := policy.OnChange
	policy.OnChange = func(st supervisor.Status) {
		r.supervised(st)
		if onChange != nil {
			onChange(st) // the caller reports the changes: the relay does not log them again
			return
		}
		if st.State == supervisor.Retrying {
			r.log.Warn("relay: retrying", "relay", r.opts.Name, "attempt", st.Attempts, "at", st.RetryAt, "err", st.Err)
		}
	}
	return policy
}

// supervised records a change of the supervisor's state.
func (r *Relay) supervised(st supervisor.Status) {
	r.mu.Lock()
	r.mu.sup = st
	r.mu.Unlock()
}

// Name returns the relay's name.
func (r *Relay) Name() string { return r.opts.Name }

// Run publishes until ctx is done (it then returns nil, after waiting up to a second for the
// answers to what is in flight and writing the checkpoint of what was acknowledged) or a
// permanent error stops it (returned; a refused event gives a
// [*PublishError] matching [ErrRefused]). Transient errors (the broker down, the store's
// subscription cut) are retried with backoff and reported in Status. It returns an error
// matching projection.ErrBusy when called while another Run of the same Relay runs.
func (r *Relay) Run(ctx context.Context) error {
	r.mu.Lock()
	if r.mu.running {
		r.mu.Unlock()
		return fmt.Errorf("%w: relay %q: Run", projection.ErrBusy, r.opts.Name)
	}
	r.mu.running = true
	r.mu.Unlock()
	defer func() {
		r.mu.Lock()
		r.mu.running = false
		r.mu.Unlock()
	}()
	err := r.sup.Run(ctx, r.work)
	if ctx.Err() != nil {
		return nil
	}
	return err
}

// Status returns the relay's status now.
func (r *Relay) Status() Status {
	now := time.Now()
	st := Status{Name: r.opts.Name}
	r.mu.Lock()
	st.Supervisor = r.mu.sup
	st.Checkpoint = r.mu.stored
	win := r.mu.win
	r.mu.Unlock()
	st.State = st.Supervisor.State.String()
	switch st.Supervisor.State {
	case supervisor.Running:
		st.Holder = st.Supervisor.Holder
	case supervisor.StandingBy:
		st.Holder = st.Supervisor.Other.Holder
	}
	st.Acked = st.Checkpoint
	if win != nil {
		ws := win.snapshot()
		st.Acked, st.InFlight = ws.acked, ws.inFlight
		if !ws.oldest.IsZero() {
			st.LagSeconds = max(now.Sub(ws.oldest).Seconds(), 0)
		}
	}
	r.stats.fill(&st, now)
	if s, ok := r.pub.(fmt.Stringer); ok {
		st.Target = s.String()
	}
	signal(r.headWanted)
	return st
}
