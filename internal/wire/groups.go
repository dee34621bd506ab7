package wire

import (
	"fmt"
	"math"
	"time"

	"github.com/annalsdb/annals"
	"github.com/annalsdb/annals/groups"
	annalsv1 "github.com/annalsdb/annals/internal/gen/annals/v1"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/emptypb"
	"google.golang.org/protobuf/types/known/timestamppb"
)

// The reasons of the GroupService's errors (package groups).
const (
	ReasonGroupNotFound = "GROUP_NOT_FOUND"
	ReasonGroupExists   = "GROUP_EXISTS"
	ReasonGroupDeleted  = "GROUP_DELETED"
	ReasonNotInFlight   = "NOT_IN_FLIGHT"
	// ReasonTooMany: groups.ErrTooManyGroups or groups.ErrTooManyConsumers (the message tells
	// which).
	ReasonTooMany = "TOO_MANY"
	// ReasonConsumerClosed: groups.ErrConsumerClosed.
	ReasonConsumerClosed = "CONSUMER_CLOSED"
)

// GroupSettingsToProto returns the message form of s.
func GroupSettingsToProto(s groups.Settings) *annalsv1.GroupSettings {
	m := &annalsv1.GroupSettings{
		Stream: s.Stream, Filter: FilterToProto(s.Filter), Strategy: string(s.Strategy), PinKey: s.PinKey,
		MaxRetries: clampInt32(s.MaxRetries), Buffer: clampInt32(s.Buffer),
	}
	switch s.Start.Kind {
	case groups.FromEnd:
		m.Start = &annalsv1.GroupStart{Kind: &annalsv1.GroupStart_End{End: &emptypb.Empty{}}}
	case groups.FromPosition:
		m.Start = &annalsv1.GroupStart{Kind: &annalsv1.GroupStart_Position{Position: s.Start.From}}
	case groups.FromBeginning:
		m.Start = &annalsv1.GroupStart{Kind: &annalsv1.GroupStart_Beginning{Beginning: &emptypb.Empty{}}}
	}
	if s.MessageTimeout != 0 {
		m.MessageTimeout = durationpb.New(s.MessageTimeout)
	}
	if s.CheckpointInterval != 0 {
		m.CheckpointInterval = durationpb.New(s.CheckpointInterval)
	}
	return m
}

func clampInt32(n int) int32 {
	return int32(min(max(n, math.MinInt32), math.MaxInt32))
}

// GroupSettingsFromProto returns the settings m describes (the zero settings for nil),
// unchecked but for what the message form alone makes wrong: an invalid duration, or a
// start whose kind is unknown. The error matches [annals.ErrInvalidArgument]; check the
// rest with [groups.Settings.Validate].
func GroupSettingsFromProto(m *annalsv1.GroupSettings) (groups.Settings, error) {
	if m == nil {
		return groups.Settings{}, nil
	}
	s := groups.Settings{
		Stream: m.Stream, Filter: FilterFromProto(m.Filter), Strategy: groups.Strategy(m.Strategy), PinKey: m.PinKey,
		MaxRetries: int(m.MaxRetries), Buffer: int(m.Buffer),
	}
	switch k := m.GetStart().GetKind().(type) {
	case nil:
	case *annalsv1.GroupStart_Beginning:
		s.Start.Kind = groups.FromBeginning
	case *annalsv1.GroupStart_End:
		s.Start.Kind = groups.FromEnd
	case *annalsv1.GroupStart_Position:
		s.Start = groups.Start{Kind: groups.FromPosition, From: k.Position}
	default:
		return groups.Settings{}, fmt.Errorf("%w: group settings: start: unknown kind %T", annals.ErrInvalidArgument, k)
	}
	var err error
	if s.MessageTimeout, err = DurationFromProto("group settings: messageTimeout", m.MessageTimeout); err != nil {
		return groups.Settings{}, err
	}
	if s.CheckpointInterval, err = DurationFromProto("group settings: checkpointInterval", m.CheckpointInterval); err != nil {
		return groups.Settings{}, err
	}
	return s, nil
}

// DurationFromProto returns d as a time.Duration (0 for nil). It returns an error matching
// [annals.ErrInvalidArgument], naming what, for an invalid or negative duration.
func DurationFromProto(what string, d *durationpb.Duration) (time.Duration, error) {
	if d == nil {
		return 0, nil
	}
	if err := d.CheckValid(); err != nil {
		return 0, fmt.Errorf("%w: %s: %w", annals.ErrInvalidArgument, what, err)
	}
	v := d.AsDuration()
	if v < 0 {
		return 0, fmt.Errorf("%w: %s: negative duration %v", annals.ErrInvalidArgument, what, v)
	}
	return v, nil
}

// GroupDefinitionToProto returns the message form of d.
func GroupDefinitionToProto(d groups.Definition) *annalsv1.GroupDefinition {
	return &annalsv1.GroupDefinition{Name: d.Name, Settings: GroupSettingsToProto(d.Settings), Created: d.Created}
}

// GroupDefinitionFromProto returns the definition m describes.
func GroupDefinitionFromProto(m *annalsv1.GroupDefinition) (groups.Definition, error) {
	s, err := GroupSettingsFromProto(m.GetSettings())
	if err != nil {
		return groups.Definition{}, err
	}
	return groups.Definition{Name: m.GetName(), Settings: s, Created: m.GetCreated()}, nil
}

// GroupInfoToProto returns the message form of info.
func GroupInfoToProto(info groups.Info) *annalsv1.GroupInfo {
	m := &annalsv1.GroupInfo{
		Definition: GroupDefinitionToProto(info.Definition), Checkpoint: info.Checkpoint, Lag: info.Lag,
		InFlight: clampUint32(info.InFlight), Buffered: clampUint32(info.Buffered), Parked: info.Parked,
		Delivered: info.Delivered, Acked: info.Acked, Retries: info.Retries, ParkedTotal: info.ParkedTotal,
		Skipped: info.Skipped, Consumers: make([]*annalsv1.GroupConsumer, len(info.Consumers)),
	}
	for i, c := range info.Consumers {
		m.Consumers[i] = &annalsv1.GroupConsumer{
			Id: c.ID, Name: c.Name, Joined: TimeToProto(c.Joined), Window: clampUint32(c.Window),
			InFlight: clampUint32(c.InFlight), Delivered: c.Delivered, Acked: c.Acked, Nacked: c.Nacked,
		}
	}
	return m
}

func clampUint32(n int) uint32 {
	return uint32(min(max(n, 0), math.MaxUint32))
}

// GroupInfoFromProto returns the group state m describes.
func GroupInfoFromProto(m *annalsv1.GroupInfo) (groups.Info, error) {
	d, err := GroupDefinitionFromProto(m.GetDefinition())
	if err != nil {
		return groups.Info{}, err
	}
	info := groups.Info{
		Definition: d, Checkpoint: m.Checkpoint, Lag: m.Lag, InFlight: int(m.InFlight), Buffered: int(m.Buffered),
		Parked: m.Parked, Delivered: m.Delivered, Acked: m.Acked, Retries: m.Retries, ParkedTotal: m.ParkedTotal,
		Skipped: m.Skipped, Consumers: make([]groups.ConsumerInfo, len(m.Consumers)),
	}
	for i, c := range m.Consumers {
		info.Consumers[i] = groups.ConsumerInfo{
			ID: c.Id, Name: c.Name, Window: int(c.Window), InFlight: int(c.InFlight),
			Delivered: c.Delivered, Acked: c.Acked, Nacked: c.Nacked,
		}
		if c.Joined != nil {
			info.Consumers[i].Joined = timeOf(c.Joined)
		}
	}
	return info, nil
}

func timeOf(ts *timestamppb.Timestamp) time.Time {
	return time.Unix(ts.GetSeconds(), int64(ts.GetNanos())).UTC()
}

// GroupMessageToProto returns the message form of m.
func GroupMessageToProto(m *groups.Message) *annalsv1.GroupMessage {
	return &annalsv1.GroupMessage{Event: RecordedToProto(&m.Event), Retries: clampUint32(m.Retries), Parked: m.Parked}
}

// GroupMessageFromProto returns the message p describes; an event without a UUID is an error
// (a server that sends one is broken).
func GroupMessageFromProto(p *annalsv1.GroupMessage) (groups.Message, error) {
	if p.GetEvent() == nil {
		return groups.Message{}, fmt.Errorf("a group message without its event")
	}
	e, err := RecordedFromProto(p.Event)
	if err != nil {
		return groups.Message{}, err
	}
	return groups.Message{Event: e, Retries: int(p.Retries), Parked: p.Parked}, nil
}

// NackToProto returns the ConsumeNack of n for ids.
func NackToProto(n groups.Nack, ids []annals.UUID, seq uint64) *annalsv1.ConsumeNack {
	m := &annalsv1.ConsumeNack{Ids: UUIDsToProto(ids), Action: string(n.Action), Reason: n.Reason, Seq: seq}
	if n.Delay != 0 {
		m.Delay = durationpb.New(n.Delay)
	}
	return m
}

// NackFromProto returns the nack m asks for, checked ([groups.Nack.Validate]); the error
// matches [annals.ErrInvalidArgument].
func NackFromProto(m *annalsv1.ConsumeNack) (groups.Nack, error) {
	delay, err := DurationFromProto("nack delay", m.Delay)
	if err != nil {
		return groups.Nack{}, err
	}
	n := groups.Nack{Action: groups.Action(m.Action), Delay: delay, Reason: m.Reason}
	if err := n.Validate(); err != nil {
		return groups.Nack{}, err
	}
	return n, nil
}

// UUIDsToProto returns the string forms of ids.
func UUIDsToProto(ids []annals.UUID) []string {
	out := make([]string, len(ids))
	for i, id := range ids {
		out[i] = id.String()
	}
	return out
}

// MaxSettleIDs bounds the ids of one ConsumeAck or ConsumeNack: a consumer holds at most
// [groups.MaxWindow] events unsettled.
const MaxSettleIDs = groups.MaxWindow

// UUIDsFromProto parses the ids of an ack or nack: 1 to [MaxSettleIDs] UUIDs. The error
// matches [annals.ErrInvalidArgument] and names the id at fault.
func UUIDsFromProto(what string, ids []string) ([]annals.UUID, error) {
	if len(ids) == 0 || len(ids) > MaxSettleIDs {
		return nil, fmt.Errorf("%w: %s: want 1 to %d ids, got %d", annals.ErrInvalidArgument, what, MaxSettleIDs, len(ids))
	}
	out := make([]annals.UUID, len(ids))
	for i, s := range ids {
		u, err := annals.ParseUUID(s)
		if err != nil {
			return nil, fmt.Errorf("%w: %s: id %d %q is not a UUID", annals.ErrInvalidArgument, what, i, s)
		}
		out[i] = u
	}
	return out, nil
}
