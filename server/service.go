package server

import (
	"context"
	"fmt"
	"iter"

	"connectrpc.com/connect"
	"github.com/annalsdb/annals"
	annalsv1 "github.com/annalsdb/annals/internal/gen/annals/v1"
	"github.com/annalsdb/annals/internal/gen/annals/v1/annalsv1connect"
	"github.com/annalsdb/annals/internal/rules"
	"github.com/annalsdb/annals/internal/wire"
	"github.com/annalsdb/annals/lease"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/known/timestamppb"
)

// service implements the Connect handler of EventStoreService over the server's store.
type service struct {
	s *Server
}

var _ annalsv1connect.EventStoreServiceHandler = (*service)(nil)

func (v *service) Append(ctx context.Context, req *connect.Request[annalsv1.AppendRequest]) (*connect.Response[annalsv1.AppendResponse], error) {
	proc := req.Spec().Procedure
	res, err := v.s.append(ctx, proc, req.Msg)
	if err != nil {
		return nil, v.s.toConnect(ctx, proc, err)
	}
	return connect.NewResponse(res), nil
}

// append makes one append of the API, for Append and for each append of BatchAppend: the
// input is checked, then authorized ([OpWrite] on the stream), then the store appends, fenced
// by the append's lease if it has one, and the append is counted. The error is for the table.
func (s *Server) append(ctx context.Context, proc string, m *annalsv1.AppendRequest) (*annalsv1.AppendResponse, error) {
	expected := wire.ExpectedFromProto(m.Expected)
	events := make([]annals.Event, len(m.Events))
	for i, pe := range m.Events {
		e, err := wire.EventFromProto(pe)
		if err != nil {
			return nil, fmt.Errorf("event %d of the append to %q: %w", i, m.Stream, err)
		}
		events[i] = e
	}
	fence, err := appendLease(m.Lease)
	if err != nil {
		return nil, err
	}
	res, err := s.appendEvents(ctx, proc, m.Stream, expected, events, fence)
	if err != nil {
		return nil, err
	}
	return &annalsv1.AppendResponse{Revision: res.Revision, Position: res.Position}, nil
}

// appendEvents is the one append of every endpoint (Append, BatchAppend, the JSON append): it
// checks the input when an authorizer is set (without one, the store's own check, which it
// makes in any case, is enough), authorizes, appends under the fence of the lease l (nil for
// none), and counts the append in the stats.
func (s *Server) appendEvents(ctx context.Context, proc, stream string, expected annals.ExpectedRevision, events []annals.Event, l *lease.Lease) (annals.AppendResult, error) {
	if s.opts.Authorize != nil {
		if _, err := rules.ValidateAppend(s.limits, stream, expected, events); err != nil {
			return annals.AppendResult{}, err
		}
	}
	if err := s.authorize(ctx, Access{Op: OpWrite, Procedure: proc, Stream: stream}); err != nil {
		return annals.AppendResult{}, err
	}
	var res annals.AppendResult
	err := s.fence(ctx, l, func(ctx context.Context) (err error) {
		res, err = s.store.Append(ctx, stream, expected, events...)
		return err
	})
	if err != nil {
		return annals.AppendResult{}, err
	}
	s.stats.add(cAppends, 1)
	s.stats.add(cEventsAppended, len(events))
	return res, nil
}

// readOptions converts the fields shared by ReadStreamRequest and ReadAllRequest.
func readOptions(from uint64, fromEnd, backwards bool, limit, until uint64, asOf *timestamppb.Timestamp, f *annalsv1.Filter) (*annals.ReadOptions, error) {
	n, err := wire.LimitFromProto(limit)
	if err != nil {
		return nil, err
	}
	t, err := wire.TimeFromProto(asOf)
	if err != nil {
		return nil, err
	}
	o := &annals.ReadOptions{Backwards: backwards, From: from, Limit: n, Until: until, AsOf: t, Filter: wire.FilterFromProto(f)}
	if fromEnd {
		o.From = annals.End
	}
	if _, err := rules.ReadOptions(o); err != nil {
		return nil, err
	}
	return o, nil
}

// sendEvents sends the events of a read in batches through send, which builds the response
// message of the method around a batch's encoding (see [protoBatch]).
func (v *service) sendEvents(ctx context.Context, proc string, seq iter.Seq2[annals.RecordedEvent, error], send func(events protoreflect.RawFields) error) error {
	var enc protoBatch
	v.s.stats.add(cReads, 1)
	err := sendRead(seq, func(batch []annals.RecordedEvent) error {
		v.s.stats.add(cEventsRead, len(batch))
		return send(enc.encode(batch))
	})
	if err != nil {
		return v.s.toConnect(ctx, proc, err)
	}
	return nil
}

// protoBatch encodes batches of events straight into their wire form, the repeated
// RecordedEvent field 1 of ReadStreamResponse, ReadAllResponse and EventBatch, reusing one
// buffer: no message per event. The encoding rides in the response message as its unknown
// fields, which proto.Marshal writes as they are, so the bytes on the wire are those of the
// message with its events; the server's JSON codec decodes them into the message's fields
// first (see [strictJSON]). An interceptor therefore sees the events of such a message only as
// its unknown fields.
type protoBatch struct {
	buf []byte
}

// encode returns the encoding of batch, valid until the next call: Send has marshaled its
// message when it returns (an interceptor must not keep it).
func (p *protoBatch) encode(batch []annals.RecordedEvent) protoreflect.RawFields {
	p.buf = wire.AppendEvents(p.buf[:0], 1, batch)
	return p.buf
}

// of returns the EventBatch message of batch, for a SubscribeResponse; it is valid until the
// next call, as [protoBatch.encode].
func (p *protoBatch) of(batch []annals.RecordedEvent) *annalsv1.EventBatch {
	m := &annalsv1.EventBatch{}
	m.ProtoReflect().SetUnknown(p.encode(batch))
	return m
}

func (v *service) ReadStream(ctx context.Context, req *connect.Request[annalsv1.ReadStreamRequest], stream *connect.ServerStream[annalsv1.ReadStreamResponse]) error {
	m, proc := req.Msg, req.Spec().Procedure
	opts, err := readOptions(m.From, m.FromEnd, m.Backwards, m.Limit, m.Until, m.AsOf, m.Filter)
	if err == nil {
		_, err = rules.StreamReadOptions(m.Stream, opts)
	}
	if err != nil {
		return v.s.toConnect(ctx, proc, err)
	}
	if err := v.s.authorize(ctx, Access{Op: OpRead, Procedure: proc, Stream: m.Stream}); err != nil {
		return v.s.toConnect(ctx, proc, err)
	}
	return v.sendEvents(ctx, proc, v.s.store.ReadStream(ctx, m.Stream, opts), func(events protoreflect.RawFields) error {
		res := &annalsv1.ReadStreamResponse{}
		res.ProtoReflect().SetUnknown(events)
		return stream.Send(res)
	})
}

func (v *service) ReadAll(ctx context.Context, req *connect.Request[annalsv1.ReadAllRequest], stream *connect.ServerStream[annalsv1.ReadAllResponse]) error {
	m, proc := req.Msg, req.Spec().Procedure
	opts, err := readOptions(m.From, m.FromEnd, m.Backwards, m.Limit, m.Until, m.AsOf, m.Filter)
	if err != nil {
		return v.s.toConnect(ctx, proc, err)
	}
	if err := v.s.authorize(ctx, Access{Op: OpRead, Procedure: proc, Filter: opts.Filter}); err != nil {
		return v.s.toConnect(ctx, proc, err)
	}
	return v.sendEvents(ctx, proc, v.s.store.ReadAll(ctx, opts), func(events protoreflect.RawFields) error {
		res := &annalsv1.ReadAllResponse{}
		res.ProtoReflect().SetUnknown(events)
		return stream.Send(res)
	})
}

func (v *service) Subscribe(ctx context.Context, req *connect.Request[annalsv1.SubscribeRequest], stream *connect.ServerStream[annalsv1.SubscribeResponse]) error {
	m, proc := req.Msg, req.Spec().Procedure
	t := target{stream: m.Stream, from: m.From, end: m.FromEnd, filter: wire.FilterFromProto(m.Filter), protocol: req.Peer().Protocol, peer: req.Peer().Addr}
	if t.stream == annals.AllStream {
		t.all, t.stream = true, ""
	}
	if err := t.validate(); err != nil {
		return v.s.toConnect(ctx, proc, err)
	}
	if err := v.s.authorize(ctx, Access{Op: OpRead, Procedure: proc, Stream: t.stream, Filter: t.filter}); err != nil {
		return v.s.toConnect(ctx, proc, err)
	}
	sctx, done, err := v.s.beginSubscription(ctx)
	if err != nil {
		return v.s.toConnect(ctx, proc, err)
	}
	defer done()
	ctx = sctx
	from, err := v.s.prepare(ctx, t)
	if err != nil {
		return v.s.toConnect(ctx, proc, err)
	}
	started := &annalsv1.SubscribeResponse{Content: &annalsv1.SubscribeResponse_Started{Started: &annalsv1.SubscriptionStarted{From: from}}}
	if err := stream.Send(started); err != nil {
		return err
	}
	var msgs protoBatch
	err = v.s.follow(ctx, t, from, func(batch []annals.RecordedEvent) error {
		return stream.Send(&annalsv1.SubscribeResponse{Content: &annalsv1.SubscribeResponse_Events{Events: msgs.of(batch)}})
	}, nil)
	return v.s.toConnect(ctx, proc, err)
}

func (v *service) Delete(ctx context.Context, req *connect.Request[annalsv1.DeleteRequest]) (*connect.Response[annalsv1.DeleteResponse], error) {
	m, proc := req.Msg, req.Spec().Procedure
	expected := wire.ExpectedFromProto(m.Expected)
	if err := rules.ValidateDelete(m.Stream, expected); err != nil {
		return nil, v.s.toConnect(ctx, proc, err)
	}
	if err := v.s.authorize(ctx, Access{Op: OpDelete, Procedure: proc, Stream: m.Stream}); err != nil {
		return nil, v.s.toConnect(ctx, proc, err)
	}
	res, err := v.s.store.Delete(ctx, m.Stream, expected)
	if err != nil {
		return nil, v.s.toConnect(ctx, proc, err)
	}
	return connect.NewResponse(&annalsv1.DeleteResponse{Position: res.Position}), nil
}

func (v *service) Tombstone(ctx context.Context, req *connect.Request[annalsv1.TombstoneRequest]) (*connect.Response[annalsv1.TombstoneResponse], error) {
	m, proc := req.Msg, req.Spec().Procedure
	expected := wire.ExpectedFromProto(m.Expected)
	if err := rules.ValidateDelete(m.Stream, expected); err != nil {
		return nil, v.s.toConnect(ctx, proc, err)
	}
	if err := v.s.authorize(ctx, Access{Op: OpDelete, Procedure: proc, Stream: m.Stream}); err != nil {
		return nil, v.s.toConnect(ctx, proc, err)
	}
	res, err := v.s.store.Tombstone(ctx, m.Stream, expected)
	if err != nil {
		return nil, v.s.toConnect(ctx, proc, err)
	}
	return connect.NewResponse(&annalsv1.TombstoneResponse{Position: res.Position}), nil
}

func (v *service) GetMetadata(ctx context.Context, req *connect.Request[annalsv1.GetMetadataRequest]) (*connect.Response[annalsv1.GetMetadataResponse], error) {
	m, proc := req.Msg, req.Spec().Procedure
	if err := annals.ValidateStreamID(m.Stream); err != nil {
		return nil, v.s.toConnect(ctx, proc, err)
	}
	if err := v.s.authorize(ctx, Access{Op: OpMetaRead, Procedure: proc, Stream: m.Stream}); err != nil {
		return nil, v.s.toConnect(ctx, proc, err)
	}
	meta, exp, err := v.s.store.GetMetadata(ctx, m.Stream)
	if err != nil {
		return nil, v.s.toConnect(ctx, proc, err)
	}
	return connect.NewResponse(&annalsv1.GetMetadataResponse{Metadata: wire.MetadataToProto(&meta), Expected: wire.ExpectedToProto(exp)}), nil
}

func (v *service) SetMetadata(ctx context.Context, req *connect.Request[annalsv1.SetMetadataRequest]) (*connect.Response[annalsv1.SetMetadataResponse], error) {
	m, proc := req.Msg, req.Spec().Procedure
	expected := wire.ExpectedFromProto(m.Expected)
	if err := rules.ValidateDelete(m.Stream, expected); err != nil {
		return nil, v.s.toConnect(ctx, proc, err)
	}
	meta, err := wire.MetadataFromProto(m.Metadata)
	if err == nil {
		err = meta.Validate()
	}
	if err != nil {
		return nil, v.s.toConnect(ctx, proc, err)
	}
	if err := v.s.authorize(ctx, Access{Op: OpMetaWrite, Procedure: proc, Stream: m.Stream}); err != nil {
		return nil, v.s.toConnect(ctx, proc, err)
	}
	res, err := v.s.store.SetMetadata(ctx, m.Stream, expected, meta)
	if err != nil {
		return nil, v.s.toConnect(ctx, proc, err)
	}
	return connect.NewResponse(&annalsv1.SetMetadataResponse{Revision: res.Revision, Position: res.Position}), nil
}

// listBatch is the number of streams in one ListStreamsResponse.
const listBatch = 1000

func (v *service) ListStreams(ctx context.Context, req *connect.Request[annalsv1.ListStreamsRequest], stream *connect.ServerStream[annalsv1.ListStreamsResponse]) error {
	m, proc := req.Msg, req.Spec().Procedure
	limit, err := wire.LimitFromProto(m.Limit)
	if err != nil {
		return v.s.toConnect(ctx, proc, err)
	}
	opts := &annals.ListOptions{Prefix: m.Prefix, After: m.After, Limit: limit}
	if _, err := rules.ListOptions(opts); err != nil {
		return v.s.toConnect(ctx, proc, err)
	}
	if err := v.s.authorize(ctx, Access{Op: OpRead, Procedure: proc, Prefix: m.Prefix}); err != nil {
		return v.s.toConnect(ctx, proc, err)
	}
	var batch []*annalsv1.StreamInfo
	for info, err := range v.s.store.ListStreams(ctx, opts) {
		if err != nil {
			if len(batch) > 0 {
				if serr := stream.Send(&annalsv1.ListStreamsResponse{Streams: batch}); serr != nil {
					return serr
				}
			}
			return v.s.toConnect(ctx, proc, err)
		}
		batch = append(batch, &annalsv1.StreamInfo{Stream: info.Stream, Revision: info.Revision, Count: info.Count})
		if len(batch) == listBatch {
			if err := stream.Send(&annalsv1.ListStreamsResponse{Streams: batch}); err != nil {
				return err
			}
			batch = nil
		}
	}
	if len(batch) > 0 {
		return stream.Send(&annalsv1.ListStreamsResponse{Streams: batch})
	}
	return nil
}

func (v *service) ServerInfo(ctx context.Context, req *connect.Request[annalsv1.ServerInfoRequest]) (*connect.Response[annalsv1.ServerInfoResponse], error) {
	proc := req.Spec().Procedure
	if err := v.s.authorize(ctx, Access{Op: OpRead, Procedure: proc}); err != nil {
		return nil, v.s.toConnect(ctx, proc, err)
	}
	info, err := v.s.Info(ctx)
	if err != nil {
		return nil, v.s.toConnect(ctx, proc, err)
	}
	return connect.NewResponse(&annalsv1.ServerInfoResponse{
		Version: info.Version, Backend: info.Backend, HeadPosition: info.HeadPosition,
		StartTime: timestamppb.New(info.StartTime), Subscriptions: uint64(info.Subscriptions),
	}), nil
}
