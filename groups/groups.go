// Package groups runs consumer groups (persistent subscriptions, competing consumers) over an
// event store: a named group follows one stream or the global log ($all, with a filter), any
// number of consumers join it, and the group hands each event to one of them. Delivery is at
// least once: a consumer acks what it handled, or nacks it with an action (retry now or after a
// delay, park, skip); an event not settled within the message timeout is delivered again, and
// one that failed MaxRetries times is parked. Parked events can be replayed.
//
// # What is stored
//
// A group is kept by the store, in system streams, so that it survives restarts and is part of
// any backup of the log:
//
//   - [SettingsStream] ("$groups") records every create, update and delete of a group
//     ([CreatedEventType], [UpdatedEventType], [DeletedEventType]; the data is the JSON of
//     [Definition]);
//   - [CheckpointStream](name) ("$group-checkpoint-<name>") records the group's checkpoint
//     ([CheckpointEventType]): every event before it is settled (acked, skipped or parked);
//   - [ParkedStream](name) ("$group-parked-<name>") holds the parked events, each a copy of the
//     original with the original's place and the reason in its metadata ([ParkedEventType]).
//
// The checkpoint moves only over a contiguous run of settled events, so a restart delivers again
// what was in flight and never skips an event. Each event of these streams names the creation of
// the group it belongs to ([Definition.Created]), so that a group deleted and created again under
// the same name starts afresh.
//
// # Strategies
//
// [RoundRobin] hands each event to the next consumer with room in its window. [PinnedByStream]
// (and [PinnedByKey]) hands every event of one stream (or of one key) to the same consumer, in
// log order, while the group spreads the streams over its consumers; when a consumer leaves, its
// streams move to the others. A retried event may come after later events of its stream.
//
// # In process and over the network
//
// A [*Manager] runs the groups of one store in process (memstore, filestore, pgstore: every
// store that implements [annals.SystemAppender]); `annals serve` runs one for its clients, and
// the client package's groups speak to it. Both implement [Service], so a consumer written
// against it runs either way.
package groups

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/annalsdb/annals"
)

// Names of the system streams and events a group is kept in.
const (
	SettingsStream      = "$groups"
	CreatedEventType    = "$group-created"
	UpdatedEventType    = "$group-updated"
	DeletedEventType    = "$group-deleted"
	CheckpointEventType = "$group-checkpoint"
	ParkedEventType     = "$group-parked"
	// ReplayedEventType records, in the group's checkpoint stream, how far its parked events
	// were given back for delivery by [Service.ReplayParked].
	ReplayedEventType = "$group-parked-replayed"
)

// CheckpointStream returns the system stream that keeps the checkpoint of group name.
func CheckpointStream(name string) string { return "$group-checkpoint-" + name }

// ParkedStream returns the system stream that keeps the parked events of group name.
func ParkedStream(name string) string { return "$group-parked-" + name }

// Limits.
const (
	// MaxNameLength bounds a group's and a consumer's name, in bytes.
	MaxNameLength = 128
	// MaxGroups bounds the groups of one store, MaxConsumers the consumers of one group.
	MaxGroups    = 1024
	MaxConsumers = 256
	// MaxWindow bounds a consumer's window: the events it may hold unsettled at once.
	MaxWindow = 10_000
	// DefaultWindow is the window of a consumer that asks for none.
	DefaultWindow = 256
	// MaxNackDelay bounds the delay of a [Retry] nack.
	MaxNackDelay = time.Hour
)

// Errors. Each matches its sentinel with [errors.Is]; input errors also match
// [annals.ErrInvalidArgument].
var (
	// ErrGroupNotFound: no group of that name.
	ErrGroupNotFound = errors.New("groups: group not found")
	// ErrGroupExists: a group of that name exists already (Create).
	ErrGroupExists = errors.New("groups: group already exists")
	// ErrGroupDeleted ends the consumers of a group that was deleted while they were joined.
	ErrGroupDeleted = errors.New("groups: group deleted")
	// ErrNotInFlight: an ack or nack names an event that is not in flight to that consumer
	// (never delivered to it, settled already, or taken back after the message timeout).
	ErrNotInFlight = errors.New("groups: event not in flight to this consumer")
	// ErrConsumerClosed: the consumer left (Close) or was closed with its manager.
	ErrConsumerClosed = errors.New("groups: consumer closed")
	// ErrTooManyConsumers: the group has [MaxConsumers] consumers; ErrTooManyGroups: the store
	// has [MaxGroups] groups.
	ErrTooManyConsumers = errors.New("groups: too many consumers in the group")
	ErrTooManyGroups    = errors.New("groups: too many groups")
)

// Strategy is how a group chooses the consumer of an event.
type Strategy string

const (
	// RoundRobin gives each event to the next consumer that has room in its window.
	RoundRobin Strategy = "round-robin"
	// PinnedByStream gives all the events of one stream to one consumer, in order.
	PinnedByStream Strategy = "pinned-by-stream"
	// PinnedByKey gives all the events with one key to one consumer, in order: the key is the
	// string value of the top-level field [Settings.PinKey] of the event's JSON metadata (for
	// example "$correlationId"); events without it are pinned by their stream.
	PinnedByKey Strategy = "pinned-by-key"
)

// StartKind says where a new group starts reading.
type StartKind string

const (
	// FromBeginning delivers every event of the stream or log (the default).
	FromBeginning StartKind = "beginning"
	// FromEnd delivers only events appended after the group was created.
	FromEnd StartKind = "end"
	// FromPosition delivers from Start.From: a position of the log for a group on $all, a
	// revision for a group on a stream.
	FromPosition StartKind = "position"
)

// Start is where a new group starts reading. The zero value is [FromBeginning].
type Start struct {
	Kind StartKind `json:"kind"`
	From uint64    `json:"from,omitempty"`
}

// Settings configure a group. The zero value of every field but Stream means its default.
type Settings struct {
	// Stream is the stream the group follows, or [annals.AllStream] for the global log.
	// It cannot be changed by an update.
	Stream string `json:"stream"`
	// Filter narrows a group on $all; it must be nil for a group on a stream.
	Filter *annals.Filter `json:"filter,omitempty"`
	// Start is where the group starts when it is created; an update ignores it.
	Start Start `json:"start"`
	// Strategy: [RoundRobin] by default.
	Strategy Strategy `json:"strategy,omitempty"`
	// PinKey is the metadata field of [PinnedByKey]; default "$correlationId". Only with
	// PinnedByKey.
	PinKey string `json:"pinKey,omitempty"`
	// MessageTimeout: an event delivered and not settled within it is taken back from its
	// consumer and delivered again (counting as a retry). Default 30 s; 100 ms to 1 h.
	MessageTimeout time.Duration `json:"messageTimeout,omitempty"`
	// MaxRetries: an event retried more often (by nack or timeout) is parked. Default 10;
	// at most 1,000. -1 means never retry: the first failure parks it.
	MaxRetries int `json:"maxRetries,omitempty"`
	// CheckpointInterval: the checkpoint is written at most this often while events are
	// settled, and when the group goes idle or is closed. Default 1 s; 10 ms to 1 min.
	CheckpointInterval time.Duration `json:"checkpointInterval,omitempty"`
	// Buffer bounds the events the group has read and not yet settled, for all its consumers
	// together (a bound on its memory). Default 4,096; at most 100,000.
	Buffer int `json:"buffer,omitempty"`
}

// Validate checks s and returns an error matching [annals.ErrInvalidArgument] that names the
// field at fault.
func (s *Settings) Validate() error {
	bad := func(format string, args ...any) error {
		return fmt.Errorf("%w: group settings: %s", annals.ErrInvalidArgument, fmt.Sprintf(format, args...))
	}
	if s.Stream != annals.AllStream {
		if err := annals.ValidateStreamID(s.Stream); err != nil {
			return fmt.Errorf("group settings: stream: %w", err)
		}
		if s.Filter != nil {
			return bad("filter: only a group on %s takes a filter", annals.AllStream)
		}
	}
	if s.Filter != nil {
		if err := s.Filter.Validate(); err != nil {
			return fmt.Errorf("group settings: filter: %w", err)
		}
	}
	switch s.Start.Kind {
	case "", FromBeginning, FromEnd:
		if s.Start.From != 0 {
			return bad("start: from is only for kind %q", FromPosition)
		}
	case FromPosition:
	default:
		return bad("start: kind %q is not one of beginning, end, position", s.Start.Kind)
	}
	switch s.Strategy {
	case "", RoundRobin, PinnedByStream:
		if s.PinKey != "" {
			return bad("pinKey: only for strategy %q", PinnedByKey)
		}
	case PinnedByKey:
	default:
		return bad("strategy %q is not one of round-robin, pinned-by-stream, pinned-by-key", s.Strategy)
	}
	if s.MessageTimeout != 0 && (s.MessageTimeout < 100*time.Millisecond || s.MessageTimeout > time.Hour) {
		return bad("messageTimeout %v is not between 100ms and 1h", s.MessageTimeout)
	}
	if s.MaxRetries < -1 || s.MaxRetries > 1000 {
		return bad("maxRetries %d is not between -1 and 1000", s.MaxRetries)
	}
	if s.CheckpointInterval != 0 && (s.CheckpointInterval < 10*time.Millisecond || s.CheckpointInterval > time.Minute) {
		return bad("checkpointInterval %v is not between 10ms and 1m", s.CheckpointInterval)
	}
	if s.Buffer < 0 || s.Buffer > 100_000 {
		return bad("buffer %d is not between 0 and 100000", s.Buffer)
	}
	return nil
}

// WithDefaults returns s with every zero field set to its default.
func (s Settings) WithDefaults() Settings {
	if s.Start.Kind == "" {
		s.Start.Kind = FromBeginning
	}
	if s.Strategy == "" {
		s.Strategy = RoundRobin
	}
	if s.Strategy == PinnedByKey && s.PinKey == "" {
		s.PinKey = "$correlationId"
	}
	if s.MessageTimeout == 0 {
		s.MessageTimeout = 30 * time.Second
	}
	if s.MaxRetries == 0 {
		s.MaxRetries = 10
	}
	if s.CheckpointInterval == 0 {
		s.CheckpointInterval = time.Second
	}
	if s.Buffer == 0 {
		s.Buffer = 4096
	}
	return s
}

// ValidateName checks a group's or a consumer's name: 1 to [MaxNameLength] bytes of printable
// UTF-8 with no "/" (names appear in stream ids and URLs). The error matches
// [annals.ErrInvalidArgument].
func ValidateName(what, name string) error {
	if name == "" || len(name) > MaxNameLength {
		return fmt.Errorf("%w: %s name must be 1 to %d bytes, got %d", annals.ErrInvalidArgument, what, MaxNameLength, len(name))
	}
	if err := annals.ValidateStreamID("x" + name); err != nil {
		return fmt.Errorf("%w: %s name %q is not printable UTF-8", annals.ErrInvalidArgument, what, name)
	}
	for _, r := range name {
		if r == '/' || r == ' ' {
			return fmt.Errorf("%w: %s name %q has %q, which names may not have", annals.ErrInvalidArgument, what, name, r)
		}
	}
	return nil
}

// Definition is a group as [SettingsStream] records it.
type Definition struct {
	Name     string   `json:"name"`
	Settings Settings `json:"settings"`
	// Created is the position of the event that created the group: it tells this group from
	// an earlier one of the same name.
	Created uint64 `json:"created"`
}

// Action is what a nack asks for.
type Action string

const (
	// Retry delivers the event again (after Nack.Delay), counting a retry; past MaxRetries the
	// event is parked instead.
	Retry Action = "retry"
	// Park moves the event to the group's parked stream at once.
	Park Action = "park"
	// Skip settles the event without handling it: it is not delivered again.
	Skip Action = "skip"
)

// Nack is a negative acknowledgement.
type Nack struct {
	Action Action
	// Delay postpones a Retry (0 to [MaxNackDelay]); only with Retry.
	Delay time.Duration
	// Reason is kept with a parked event and in the logs; at most 1,024 bytes.
	Reason string
}

// Validate checks n; the error matches [annals.ErrInvalidArgument].
func (n Nack) Validate() error {
	switch n.Action {
	case Retry:
		if n.Delay < 0 || n.Delay > MaxNackDelay {
			return fmt.Errorf("%w: nack delay %v is not between 0 and %v", annals.ErrInvalidArgument, n.Delay, MaxNackDelay)
		}
	case Park, Skip:
		if n.Delay != 0 {
			return fmt.Errorf("%w: nack delay is only for action %q", annals.ErrInvalidArgument, Retry)
		}
	default:
		return fmt.Errorf("%w: nack action %q is not one of retry, park, skip", annals.ErrInvalidArgument, n.Action)
	}
	if len(n.Reason) > 1024 {
		return fmt.Errorf("%w: nack reason of %d bytes is longer than 1024", annals.ErrInvalidArgument, len(n.Reason))
	}
	return nil
}

// Message is an event delivered to a consumer.
type Message struct {
	Event annals.RecordedEvent
	// Retries counts the earlier deliveries of this event to the group (0 on the first).
	Retries int
	// Parked tells an event given back by [Service.ReplayParked].
	Parked bool
}

// JoinOptions configure a consumer. The zero value means the defaults.
type JoinOptions struct {
	// Name names the consumer in figures and logs; default a generated one. Several consumers
	// may share a name (replicas of one service).
	Name string
	// Window is the most events the consumer holds unsettled at once; default
	// [DefaultWindow], at most [MaxWindow].
	Window int
}

// Consumer is one member of a group. Its methods are safe for concurrent use.
type Consumer interface {
	// Receive returns the next message, waiting until one is there. It returns ctx's error,
	// [ErrConsumerClosed] after Close, [ErrGroupDeleted] when the group is deleted, and an
	// error matching [annals.ErrClosed] when the manager (or the server) stops.
	Receive(ctx context.Context) (Message, error)
	// Ack settles the events of ids, which must be in flight to this consumer
	// ([ErrNotInFlight] otherwise; the others are still settled).
	Ack(ctx context.Context, ids ...annals.UUID) error
	// Nack asks for n.Action on the events of ids, under the rules of Ack.
	Nack(ctx context.Context, n Nack, ids ...annals.UUID) error
	// Close leaves the group; the events in flight to the consumer are delivered again to
	// the others (counting a retry). It is safe to call more than once.
	Close() error
}

// ConsumerInfo describes a consumer of a group.
type ConsumerInfo struct {
	ID       string    `json:"id"`
	Name     string    `json:"name"`
	Joined   time.Time `json:"joined"`
	Window   int       `json:"window"`
	InFlight int       `json:"inFlight"`
	// Delivered, Acked and Nacked count since the consumer joined.
	Delivered uint64 `json:"delivered"`
	Acked     uint64 `json:"acked"`
	Nacked    uint64 `json:"nacked"`
}

// Info is the state of a group.
type Info struct {
	Definition
	// Checkpoint is the checkpoint last written: the position (on $all) or revision (on a
	// stream) of the first event not known to be settled.
	Checkpoint uint64 `json:"checkpoint"`
	// Lag is the number of positions (on $all) or revisions (on a stream) between the
	// checkpoint and the end of what the group follows.
	Lag uint64 `json:"lag"`
	// InFlight counts events delivered and not settled; Buffered events read and not yet
	// delivered; Parked events parked and not replayed.
	InFlight int    `json:"inFlight"`
	Buffered int    `json:"buffered"`
	Parked   uint64 `json:"parked"`
	// Delivered, Acked, Retries, ParkedTotal and Skipped count since the group was loaded by
	// this process.
	Delivered   uint64         `json:"delivered"`
	Acked       uint64         `json:"acked"`
	Retries     uint64         `json:"retries"`
	ParkedTotal uint64         `json:"parkedTotal"`
	Skipped     uint64         `json:"skipped"`
	Consumers   []ConsumerInfo `json:"consumers"`
	// Active tells whether the group reads and delivers in this manager: always without
	// leases; with them (several managers on one store), only in the manager that holds the
	// group's lease. On a standby, InFlight and Buffered are 0, and Checkpoint, Lag and Parked
	// are read from the store. Holder names the holder of the group's lease when known (""
	// without leases).
	Active bool   `json:"active"`
	Holder string `json:"holder,omitempty"`
}

// Service manages and joins groups: [*Manager] in process, the client package's groups over
// the network. Every method is safe for concurrent use.
type Service interface {
	// Create creates a group with settings ([ErrGroupExists] when the name is taken,
	// [ErrTooManyGroups], input errors matching [annals.ErrInvalidArgument]). When it returns
	// the group is durable.
	Create(ctx context.Context, name string, settings Settings) (Definition, error)
	// Update changes a group's settings but its stream and start; consumers stay joined and
	// the group goes on from where it is. [ErrGroupNotFound] when there is no such group.
	Update(ctx context.Context, name string, settings Settings) (Definition, error)
	// Delete deletes a group: its consumers get [ErrGroupDeleted]; its events in flight are
	// dropped. [ErrGroupNotFound] when there is no such group.
	Delete(ctx context.Context, name string) error
	// List returns every group, by name.
	List(ctx context.Context) ([]Info, error)
	// Info returns one group ([ErrGroupNotFound]).
	Info(ctx context.Context, name string) (Info, error)
	// ReplayParked gives back up to limit (0: all) parked events of the group for delivery,
	// oldest first, and returns how many. They are delivered again with [Message.Parked] set
	// and their retries counted afresh.
	ReplayParked(ctx context.Context, name string, limit int) (int, error)
	// Join joins a consumer to the group ([ErrGroupNotFound], [ErrTooManyConsumers]).
	Join(ctx context.Context, name string, opts *JoinOptions) (Consumer, error)
}
