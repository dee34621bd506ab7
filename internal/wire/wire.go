// Package wire converts between the annals types and the protobuf messages of the network API
// (internal/gen/annals/v1), for the server and the client alike, so that both sides agree on
// every field. It also names the reasons an [annalsv1.ErrorDetail] carries.
package wire

import (
	"fmt"
	"math"
	"time"

	"github.com/annalsdb/annals"
	annalsv1 "github.com/annalsdb/annals/internal/gen/annals/v1"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/emptypb"
	"google.golang.org/protobuf/types/known/timestamppb"
)

// The reasons of an [annalsv1.ErrorDetail]: each names one error of the store (or of the
// server) exactly, whatever the status code.
const (
	ReasonWrongExpectedVersion = "WRONG_EXPECTED_VERSION"
	ReasonStreamNotFound       = "STREAM_NOT_FOUND"
	ReasonStreamDeleted        = "STREAM_DELETED"
	ReasonInvalidArgument      = "INVALID_ARGUMENT"
	ReasonTooLarge             = "TOO_LARGE"
	ReasonClosed               = "CLOSED"
	ReasonCorrupt              = "CORRUPT"
	ReasonShuttingDown         = "SHUTTING_DOWN"
	ReasonUnauthenticated      = "UNAUTHENTICATED"
	ReasonPermissionDenied     = "PERMISSION_DENIED"
	ReasonInternal             = "INTERNAL"
	// ReasonLeaseHeld: another holder holds the lease (lease.ErrHeld); the ErrorDetail
	// carries the current lease.
	ReasonLeaseHeld = "LEASE_HELD"
	// ReasonLeaseLost: the lease is no longer the holder's (lease.ErrLost).
	ReasonLeaseLost = "LEASE_LOST"
)

// ExpectedToProto returns the message form of e; an invalid e becomes a revision above
// math.MaxInt64, which the server refuses as invalid, as the store would.
func ExpectedToProto(e annals.ExpectedRevision) *annalsv1.ExpectedRevision {
	switch e {
	case annals.Any:
		return &annalsv1.ExpectedRevision{Kind: &annalsv1.ExpectedRevision_Any{Any: &emptypb.Empty{}}}
	case annals.NoStream:
		return &annalsv1.ExpectedRevision{Kind: &annalsv1.ExpectedRevision_NoStream{NoStream: &emptypb.Empty{}}}
	case annals.StreamExists:
		return &annalsv1.ExpectedRevision{Kind: &annalsv1.ExpectedRevision_StreamExists{StreamExists: &emptypb.Empty{}}}
	}
	if r, ok := e.Revision(); ok {
		return &annalsv1.ExpectedRevision{Kind: &annalsv1.ExpectedRevision_Revision{Revision: r}}
	}
	// Invalid (below StreamExists): keep it invalid on the other side.
	return &annalsv1.ExpectedRevision{Kind: &annalsv1.ExpectedRevision_Revision{Revision: uint64(int64(e))}}
}

// ExpectedFromProto returns the expectation m names: [annals.Any] when m or its kind is unset.
// A revision above math.MaxInt64 gives an invalid expectation, which the store refuses with
// [annals.ErrInvalidArgument].
func ExpectedFromProto(m *annalsv1.ExpectedRevision) annals.ExpectedRevision {
	switch k := m.GetKind().(type) {
	case *annalsv1.ExpectedRevision_NoStream:
		return annals.NoStream
	case *annalsv1.ExpectedRevision_StreamExists:
		return annals.StreamExists
	case *annalsv1.ExpectedRevision_Revision:
		if k.Revision > math.MaxInt64 {
			return annals.ExpectedRevision(math.MinInt64)
		}
		return annals.Exact(k.Revision)
	}
	return annals.Any
}

// EventToProto returns the message form of an event to append; a zero ID is sent empty.
func EventToProto(e *annals.Event) *annalsv1.Event {
	m := &annalsv1.Event{Type: e.Type, ContentType: e.ContentType, Data: e.Data, Metadata: e.Metadata}
	if !e.ID.IsZero() {
		m.Id = e.ID.String()
	}
	return m
}

// EventFromProto returns the event m describes. It returns an error matching
// [annals.ErrInvalidArgument] for an id that is neither empty nor a UUID.
func EventFromProto(m *annalsv1.Event) (annals.Event, error) {
	e := annals.Event{Type: m.GetType(), ContentType: m.GetContentType(), Data: m.GetData(), Metadata: m.GetMetadata()}
	if id := m.GetId(); id != "" {
		u, err := annals.ParseUUID(id)
		if err != nil {
			return annals.Event{}, err
		}
		e.ID = u
	}
	return e, nil
}

// RecordedToProto returns the message form of a recorded event. The message shares e's Data
// and Metadata.
func RecordedToProto(e *annals.RecordedEvent) *annalsv1.RecordedEvent {
	return &annalsv1.RecordedEvent{
		Id: e.ID.String(), Stream: e.Stream, Type: e.Type, ContentType: e.ContentType,
		Data: e.Data, Metadata: e.Metadata, Revision: e.Revision, Position: e.Position,
		Time: timestamppb.New(e.Time),
	}
}

// RecordedFromProto returns the recorded event m describes, sharing m's Data and Metadata.
// It returns an error for an id that is not a UUID (a server that sends one is broken).
func RecordedFromProto(m *annalsv1.RecordedEvent) (annals.RecordedEvent, error) {
	id, err := annals.ParseUUID(m.GetId())
	if err != nil {
		return annals.RecordedEvent{}, fmt.Errorf("recorded event at position %d: %w", m.GetPosition(), err)
	}
	e := annals.RecordedEvent{
		ID: id, Stream: m.GetStream(), Type: m.GetType(), ContentType: m.GetContentType(),
		Data: m.GetData(), Metadata: m.GetMetadata(), Revision: m.GetRevision(), Position: m.GetPosition(),
	}
	if ts := m.GetTime(); ts != nil {
		e.Time = time.Unix(ts.GetSeconds(), int64(ts.GetNanos())).UTC()
	}
	return e, nil
}

// FilterToProto returns the message form of f (nil for nil).
func FilterToProto(f *annals.Filter) *annalsv1.Filter {
	if f == nil {
		return nil
	}
	return &annalsv1.Filter{StreamPrefixes: f.StreamPrefixes, Categories: f.Categories, EventTypes: f.EventTypes}
}

// FilterFromProto returns the filter m describes: nil when m is nil or empty.
func FilterFromProto(m *annalsv1.Filter) *annals.Filter {
	if m == nil || len(m.StreamPrefixes)+len(m.Categories)+len(m.EventTypes) == 0 {
		return nil
	}
	return &annals.Filter{StreamPrefixes: m.StreamPrefixes, Categories: m.Categories, EventTypes: m.EventTypes}
}

// TimeToProto returns t as a timestamp, nil for the zero time.
func TimeToProto(t time.Time) *timestamppb.Timestamp {
	if t.IsZero() {
		return nil
	}
	return timestamppb.New(t)
}

// TimeFromProto returns the time ts names, the zero time for nil. It returns an error
// matching [annals.ErrInvalidArgument] for a timestamp out of range.
func TimeFromProto(ts *timestamppb.Timestamp) (time.Time, error) {
	if ts == nil {
		return time.Time{}, nil
	}
	if err := ts.CheckValid(); err != nil {
		return time.Time{}, fmt.Errorf("%w: %w", annals.ErrInvalidArgument, err)
	}
	return ts.AsTime(), nil
}

// LimitFromProto returns a read or list limit as an int: any limit the stores take (any
// non-negative int). It returns an error matching [annals.ErrInvalidArgument] for one over
// math.MaxInt, which is what a negative int becomes on the wire.
func LimitFromProto(n uint64) (int, error) {
	if n > math.MaxInt {
		return 0, fmt.Errorf("%w: limit %d is over %d", annals.ErrInvalidArgument, n, math.MaxInt)
	}
	return int(n), nil
}

// MetadataToProto returns the message form of m.
func MetadataToProto(m *annals.StreamMetadata) *annalsv1.StreamMetadata {
	p := &annalsv1.StreamMetadata{MaxCount: m.MaxCount, TruncateBefore: m.TruncateBefore, CustomJson: string(m.Custom)}
	if m.MaxAge != 0 {
		p.MaxAge = durationpb.New(m.MaxAge)
	}
	if a := m.ACL; a != nil {
		p.Acl = &annalsv1.Acl{Read: a.Read, Write: a.Write, Delete: a.Delete, MetaRead: a.MetaRead, MetaWrite: a.MetaWrite}
	}
	return p
}

// MetadataFromProto returns the metadata p describes. It returns an error matching
// [annals.ErrInvalidArgument] for a max age out of range; the store validates the rest.
func MetadataFromProto(p *annalsv1.StreamMetadata) (annals.StreamMetadata, error) {
	m := annals.StreamMetadata{MaxCount: p.GetMaxCount(), TruncateBefore: p.GetTruncateBefore()}
	if c := p.GetCustomJson(); c != "" {
		m.Custom = []byte(c)
	}
	if d := p.GetMaxAge(); d != nil {
		if err := d.CheckValid(); err != nil {
			return annals.StreamMetadata{}, fmt.Errorf("%w: stream metadata: maxAge: %w", annals.ErrInvalidArgument, err)
		}
		m.MaxAge = d.AsDuration()
	}
	if a := p.GetAcl(); a != nil {
		m.ACL = &annals.ACL{Read: a.Read, Write: a.Write, Delete: a.Delete, MetaRead: a.MetaRead, MetaWrite: a.MetaWrite}
	}
	return m, nil
}
