package client

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"sync"
	"time"

	"connectrpc.com/connect"
	"github.com/annalsdb/annals"
	"github.com/annalsdb/annals/groups"
	annalsv1 "github.com/annalsdb/annals/internal/gen/annals/v1"
	"github.com/annalsdb/annals/internal/gen/annals/v1/annalsv1connect"
	"github.com/annalsdb/annals/internal/wire"
)

// consumerCloseGrace bounds the wait of [groups.Consumer.Close] for the server to end the
// consumer's stream once the client ended its side; past it the stream is cut.
const consumerCloseGrace = 5 * time.Second

// Groups returns the server's consumer groups (its GroupService) as a [groups.Service], so
// that a consumer written against groups.Service runs the same in process (groups.Manager)
// and over the network. Its methods are safe for concurrent use.
//
// Every method checks its input as the in-process manager does, before anything else (an
// error matching [annals.ErrInvalidArgument]), then makes one call; the server's errors map
// back to the package's sentinels: [groups.ErrGroupNotFound], [groups.ErrGroupExists],
// [groups.ErrGroupDeleted], [groups.ErrNotInFlight], [groups.ErrConsumerClosed],
// [groups.ErrTooManyGroups] (Create) and [groups.ErrTooManyConsumers] (Join). After
// [Client.Close] every method returns an error matching [annals.ErrClosed].
//
// Join opens a Consume stream of its own (gRPC, on the client's connection) and returns once
// the server answered it. Receive returns the events the server sent, which the server
// bounds by the consumer's window. Ack and Nack send the ids at once and wait for the
// server's answer, so that they return [groups.ErrNotInFlight] exactly as the manager does;
// many goroutines may ack at once on one consumer (their acks share the stream). When the
// stream breaks (the server restarts or stops, the network fails, the group is deleted) the
// consumer ends: Receive, Ack and Nack return the error (matching [annals.ErrClosed] when
// the server stopped, [groups.ErrGroupDeleted] when the group was deleted), the events the
// consumer held unsettled go to the group's other consumers, and the caller joins again to
// go on. Close ends the stream; the server then gives the consumer's events in flight to
// the others. [Client.Close] ends every consumer of the client and waits for them.
func (c *Client) Groups() groups.Service { return c.groups }

// remoteGroups is the [groups.Service] of a Client.
type remoteGroups struct {
	c    *Client
	rpc  annalsv1connect.GroupServiceClient // the Connect protocol: the unary methods
	grpc annalsv1connect.GroupServiceClient // gRPC: Consume
	// readers are the consumers' goroutines that read their streams; Client.Close waits.
	readers sync.WaitGroup
}

func newRemoteGroups(c *Client, hc *http.Client, base string, copts []connect.ClientOption) *remoteGroups {
	return &remoteGroups{
		c:    c,
		rpc:  annalsv1connect.NewGroupServiceClient(hc, base, copts...),
		grpc: annalsv1connect.NewGroupServiceClient(hc, base, append([]connect.ClientOption{connect.WithGRPC()}, copts...)...),
	}
}

var _ groups.Service = (*remoteGroups)(nil)

// fail is [Client.fail] for the GroupService: tooMany is the sentinel of the reason TOO_MANY
// for the method (nil when it has none).
func (g *remoteGroups) fail(ctx context.Context, err error, tooMany error) error {
	err = g.c.fail(ctx, err)
	if tooMany != nil {
		if ce, ok := errors.AsType[*connect.Error](err); ok {
			if d := detailOf(ce); d != nil && d.Reason == wire.ReasonTooMany {
				return &remoteError{sentinel: tooMany, err: ce}
			}
		}
	}
	return err
}

func (g *remoteGroups) Create(ctx context.Context, name string, settings groups.Settings) (groups.Definition, error) {
	return g.createOrUpdate(ctx, name, settings, func(ctx context.Context, s *annalsv1.GroupSettings) (*annalsv1.GroupDefinition, error) {
		res, err := g.rpc.CreateGroup(ctx, connect.NewRequest(&annalsv1.CreateGroupRequest{Name: name, Settings: s}))
		if err != nil {
			return nil, err
		}
		return res.Msg.Definition, nil
	}, groups.ErrTooManyGroups)
}

func (g *remoteGroups) Update(ctx context.Context, name string, settings groups.Settings) (groups.Definition, error) {
	return g.createOrUpdate(ctx, name, settings, func(ctx context.Context, s *annalsv1.GroupSettings) (*annalsv1.GroupDefinition, error) {
		res, err := g.rpc.UpdateGroup(ctx, connect.NewRequest(&annalsv1.UpdateGroupRequest{Name: name, Settings: s}))
		if err != nil {
			return nil, err
		}
		return res.Msg.Definition, nil
	}, nil)
}

func (g *remoteGroups) createOrUpdate(ctx context.Context, name string, settings groups.Settings,
	call func(context.Context, *annalsv1.GroupSettings) (*annalsv1.GroupDefinition, error), tooMany error) (groups.Definition, error) {
	if err := groups.ValidateName("group", name); err != nil {
		return groups.Definition{}, err
	}
	if err := settings.Validate(); err != nil {
		return groups.Definition{}, err
	}
	cctx, done, err := g.c.begin(ctx)
	if err != nil {
		return groups.Definition{}, err
	}
	defer done()
	d, err := call(cctx, wire.GroupSettingsToProto(settings))
	if err != nil {
		return groups.Definition{}, g.fail(ctx, err, tooMany)
	}
	def, err := wire.GroupDefinitionFromProto(d)
	if err != nil {
		return groups.Definition{}, fmt.Errorf("annals client: group definition from the server: %w", err)
	}
	return def, nil
}

func (g *remoteGroups) Delete(ctx context.Context, name string) error {
	if err := groups.ValidateName("group", name); err != nil {
		return err
	}
	cctx, done, err := g.c.begin(ctx)
	if err != nil {
		return err
	}
	defer done()
	if _, err := g.rpc.DeleteGroup(cctx, connect.NewRequest(&annalsv1.DeleteGroupRequest{Name: name})); err != nil {
		return g.fail(ctx, err, nil)
	}
	return nil
}

func (g *remoteGroups) List(ctx context.Context) ([]groups.Info, error) {
	cctx, done, err := g.c.begin(ctx)
	if err != nil {
		return nil, err
	}
	defer done()
	res, err := g.rpc.ListGroups(cctx, connect.NewRequest(&annalsv1.ListGroupsRequest{}))
	if err != nil {
		return nil, g.fail(ctx, err, nil)
	}
	out := make([]groups.Info, len(res.Msg.Groups))
	for i, m := range res.Msg.Groups {
		if out[i], err = wire.GroupInfoFromProto(m); err != nil {
			return nil, fmt.Errorf("annals client: group from the server: %w", err)
		}
	}
	return out, nil
}

func (g *remoteGroups) Info(ctx context.Context, name string) (groups.Info, error) {
	if err := groups.ValidateName("group", name); err != nil {
		return groups.Info{}, err
	}
	cctx, done, err := g.c.begin(ctx)
	if err != nil {
		return groups.Info{}, err
	}
	defer done()
	res, err := g.rpc.GetGroup(cctx, connect.NewRequest(&annalsv1.GetGroupRequest{Name: name}))
	if err != nil {
		return groups.Info{}, g.fail(ctx, err, nil)
	}
	info, err := wire.GroupInfoFromProto(res.Msg.Group)
	if err != nil {
		return groups.Info{}, fmt.Errorf("annals client: group from the server: %w", err)
	}
	return info, nil
}

func (g *remoteGroups) ReplayParked(ctx context.Context, name string, limit int) (int, error) {
	if err := groups.ValidateName("group", name); err != nil {
		return 0, err
	}
	if limit < 0 || limit > 1<<31-1 {
		return 0, fmt.Errorf("%w: replay limit %d is not between 0 and %d", annals.ErrInvalidArgument, limit, 1<<31-1)
	}
	cctx, done, err := g.c.begin(ctx)
	if err != nil {
		return 0, err
	}
	defer done()
	res, err := g.rpc.ReplayParked(cctx, connect.NewRequest(&annalsv1.ReplayParkedRequest{Name: name, Limit: uint32(limit)}))
	if err != nil {
		return 0, g.fail(ctx, err, nil)
	}
	return int(res.Msg.Replayed), nil
}

// Join opens a Consume stream, joins the group on it and waits for the server's answer,
// within ctx; the stream then lives until the consumer's Close (or the client's).
func (g *remoteGroups) Join(ctx context.Context, name string, opts *groups.JoinOptions) (groups.Consumer, error) {
	var o groups.JoinOptions
	if opts != nil {
		o = *opts
	}
	if err := groups.ValidateName("group", name); err != nil {
		return nil, err
	}
	if o.Name != "" {
		if err := groups.ValidateName("consumer", o.Name); err != nil {
			return nil, err
		}
	}
	if o.Window < 0 || o.Window > groups.MaxWindow {
		return nil, fmt.Errorf("%w: join: window %d is not between 1 and %d", annals.ErrInvalidArgument, o.Window, groups.MaxWindow)
	}
	if g.c.life.Err() != nil {
		return nil, errClosed
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	sctx, cancel := context.WithCancel(g.c.life)
	rc := &remoteConsumer{g: g, cancel: cancel, notify: make(chan struct{}, 1), ended: make(chan struct{}), done: make(chan struct{})}
	rc.stream = g.grpc.Consume(sctx)
	// The join is bounded by ctx: its end cuts the stream.
	stop := context.AfterFunc(ctx, cancel)
	joined, err := rc.join(name, &o)
	if !stop() || err != nil {
		cancel()
		rc.stream.CloseResponse()
		if err == nil || ctx.Err() != nil {
			return nil, g.c.fail(ctx, ctx.Err())
		}
		return nil, g.fail(ctx, err, groups.ErrTooManyConsumers)
	}
	rc.window = int(joined.Window)
	if rc.window <= 0 {
		rc.window = groups.DefaultWindow
	}
	g.readers.Add(1)
	go func() {
		defer g.readers.Done()
		defer close(rc.done)
		rc.read()
	}()
	return rc, nil
}

// remoteConsumer is a consumer over a Consume stream.
type remoteConsumer struct {
	g      *remoteGroups
	stream *connect.BidiStreamForClient[annalsv1.ConsumeRequest, annalsv1.ConsumeResponse]
	cancel context.CancelFunc // cuts the stream
	window int
	notify chan struct{} // capacity 1: a message was queued
	ended  chan struct{} // closed when the stream ended (mu.err is set)
	done   chan struct{} // closed when the reader returned

	// sendMu serialises the sends of the stream (Connect's Send is not safe for concurrent
	// use).
	sendMu sync.Mutex

	mu struct {
		sync.Mutex
		// queue holds the messages received and not yet returned by Receive: at most the
		// window (see add).
		queue []groups.Message
		// seq numbers the acks and nacks; pending holds those waiting for their answer.
		seq     uint64
		pending map[uint64]chan error
		err     error // why the consumer ended; nil while it runs
		closed  bool  // Close was called
	}
}

// join sends the join and returns the server's answer.
func (rc *remoteConsumer) join(name string, o *groups.JoinOptions) (*annalsv1.ConsumeJoined, error) {
	err := rc.stream.Send(&annalsv1.ConsumeRequest{Kind: &annalsv1.ConsumeRequest_Join{Join: &annalsv1.ConsumeJoin{Group: name, Name: o.Name, Window: uint32(o.Window)}}})
	if err != nil && !errors.Is(err, io.EOF) {
		return nil, err
	}
	// At io.EOF the server ended the stream: Receive returns why.
	m, err := rc.stream.Receive()
	if err != nil {
		return nil, err
	}
	j := m.GetJoined()
	if j == nil {
		return nil, fmt.Errorf("annals client: the server answered a join with %T, not joined", m.Kind)
	}
	return j, nil
}

// read reads the stream until it ends: it queues the events and hands the answers to the
// acks and nacks waiting for them.
func (rc *remoteConsumer) read() {
	for {
		m, err := rc.stream.Receive()
		if err != nil {
			rc.end(err)
			return
		}
		switch k := m.Kind.(type) {
		case *annalsv1.ConsumeResponse_Events:
			msgs := make([]groups.Message, 0, len(k.Events.Messages))
			for _, pm := range k.Events.Messages {
				gm, err := wire.GroupMessageFromProto(pm)
				if err != nil {
					rc.end(fmt.Errorf("annals client: an event from the server: %w", err))
					return
				}
				msgs = append(msgs, gm)
			}
			rc.add(msgs)
		case *annalsv1.ConsumeResponse_Settled:
			rc.mu.Lock()
			for _, seq := range k.Settled.Seqs {
				rc.answerLocked(seq, nil)
			}
			rc.mu.Unlock()
		case *annalsv1.ConsumeResponse_SettleError:
			se := k.SettleError
			rc.mu.Lock()
			rc.answerLocked(se.Seq, settleError(se))
			rc.mu.Unlock()
		default:
			rc.end(fmt.Errorf("annals client: unexpected message %T on a Consume stream", m.Kind))
			return
		}
	}
}

// settleError is the error of a settle_error answer.
func settleError(se *annalsv1.ConsumeSettleError) error {
	sentinels := map[string]error{
		wire.ReasonNotInFlight:    groups.ErrNotInFlight,
		wire.ReasonGroupDeleted:   groups.ErrGroupDeleted,
		wire.ReasonConsumerClosed: groups.ErrConsumerClosed,
		wire.ReasonClosed:         annals.ErrClosed,
		wire.ReasonShuttingDown:   annals.ErrClosed,
	}
	if s, ok := sentinels[se.Reason]; ok {
		return &remoteError{sentinel: s, err: connect.NewError(connect.CodeFailedPrecondition, errors.New(se.Message))}
	}
	return fmt.Errorf("annals client: %s", se.Message)
}

// answerLocked hands err to the ack or nack seq, if it still waits.
func (rc *remoteConsumer) answerLocked(seq uint64, err error) {
	if ch, ok := rc.mu.pending[seq]; ok {
		delete(rc.mu.pending, seq)
		ch <- err
	}
}

// add queues msgs for Receive. A message of an event already queued replaces it (the server
// took the event back after the message timeout and delivered it again). The queue holds
// at most the window: the server never has more events in flight to the consumer, so when
// it would hold more, the oldest were taken back (and are delivered again) and are dropped.
func (rc *remoteConsumer) add(msgs []groups.Message) {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	if rc.mu.err != nil {
		return
	}
	for _, m := range msgs {
		if i := slices.IndexFunc(rc.mu.queue, func(q groups.Message) bool { return q.Event.ID == m.Event.ID }); i >= 0 {
			rc.mu.queue[i] = m
			continue
		}
		rc.mu.queue = append(rc.mu.queue, m)
	}
	if over := len(rc.mu.queue) - rc.window; over > 0 {
		rc.mu.queue = slices.Delete(rc.mu.queue, 0, over)
	}
	select {
	case rc.notify <- struct{}{}:
	default:
	}
}

// end ends the consumer with the error that ended its stream, unless it ended already, and
// fails the acks and nacks waiting.
func (rc *remoteConsumer) end(err error) {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	if rc.mu.err != nil {
		return
	}
	switch {
	case rc.mu.closed:
		err = fmt.Errorf("annals client: %w", groups.ErrConsumerClosed)
	case rc.g.c.life.Err() != nil:
		err = errClosed
	case errors.Is(err, io.EOF):
		err = fmt.Errorf("annals client: the server ended the Consume stream")
	default:
		err = fromConnect(err)
		if ce, ok := errors.AsType[*connect.Error](err); ok {
			if d := detailOf(ce); d != nil && d.Reason == wire.ReasonShuttingDown {
				err = &remoteError{sentinel: annals.ErrClosed, err: ce}
			}
		}
	}
	rc.mu.err = err
	rc.mu.queue = nil
	for seq := range rc.mu.pending {
		rc.answerLocked(seq, err)
	}
	close(rc.ended)
}

// Receive implements [groups.Consumer.Receive].
func (rc *remoteConsumer) Receive(ctx context.Context) (groups.Message, error) {
	for {
		if err := ctx.Err(); err != nil {
			return groups.Message{}, err
		}
		rc.mu.Lock()
		if len(rc.mu.queue) > 0 {
			m := rc.mu.queue[0]
			rc.mu.queue[0] = groups.Message{}
			rc.mu.queue = rc.mu.queue[1:]
			rc.mu.Unlock()
			return m, nil
		}
		err := rc.mu.err
		rc.mu.Unlock()
		if err != nil {
			return groups.Message{}, err
		}
		select {
		case <-ctx.Done():
			return groups.Message{}, ctx.Err()
		case <-rc.notify:
		case <-rc.ended:
		}
	}
}

// Ack implements [groups.Consumer.Ack]: one ack message per [wire.MaxSettleIDs] ids, each
// answered by the server.
func (rc *remoteConsumer) Ack(ctx context.Context, ids ...annals.UUID) error {
	return rc.settle(ctx, ids, func(chunk []string, seq uint64) *annalsv1.ConsumeRequest {
		return &annalsv1.ConsumeRequest{Kind: &annalsv1.ConsumeRequest_Ack{Ack: &annalsv1.ConsumeAck{Ids: chunk, Seq: seq}}}
	})
}

// Nack implements [groups.Consumer.Nack], as Ack.
func (rc *remoteConsumer) Nack(ctx context.Context, n groups.Nack, ids ...annals.UUID) error {
	if err := n.Validate(); err != nil {
		return err
	}
	return rc.settle(ctx, ids, func(chunk []string, seq uint64) *annalsv1.ConsumeRequest {
		m := wire.NackToProto(n, nil, seq)
		m.Ids = chunk
		return &annalsv1.ConsumeRequest{Kind: &annalsv1.ConsumeRequest_Nack{Nack: m}}
	})
}

// settle sends the ids in messages of at most wire.MaxSettleIDs made by msg, and waits for
// their answers; it returns the first error. With no ids it only reports whether the
// consumer ended.
func (rc *remoteConsumer) settle(ctx context.Context, ids []annals.UUID, msg func(chunk []string, seq uint64) *annalsv1.ConsumeRequest) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if len(ids) == 0 {
		rc.mu.Lock()
		defer rc.mu.Unlock()
		return rc.mu.err
	}
	all := wire.UUIDsToProto(ids)
	var first error
	for len(all) > 0 {
		chunk := all[:min(len(all), wire.MaxSettleIDs)]
		all = all[len(chunk):]
		if err := rc.settleChunk(ctx, chunk, msg); err != nil && first == nil {
			first = err
		}
	}
	return first
}

// settleChunk sends one ack or nack of chunk and waits for its answer.
func (rc *remoteConsumer) settleChunk(ctx context.Context, chunk []string, msg func(chunk []string, seq uint64) *annalsv1.ConsumeRequest) error {
	rc.mu.Lock()
	if err := rc.mu.err; err != nil {
		rc.mu.Unlock()
		return err
	}
	rc.mu.seq++
	seq := rc.mu.seq
	ch := make(chan error, 1)
	if rc.mu.pending == nil {
		rc.mu.pending = make(map[uint64]chan error)
	}
	rc.mu.pending[seq] = ch
	rc.mu.Unlock()
	rc.sendMu.Lock()
	err := rc.stream.Send(msg(chunk, seq))
	rc.sendMu.Unlock()
	if err != nil {
		// The stream broke: the reader ends the consumer with the reason, which answers seq.
		<-rc.ended
	}
	select {
	case err := <-ch:
		return err
	case <-ctx.Done():
		rc.mu.Lock()
		delete(rc.mu.pending, seq)
		rc.mu.Unlock()
		return ctx.Err()
	}
}

// Close implements [groups.Consumer.Close]: it ends its side of the stream, waits for the
// server to end it (at most consumerCloseGrace), and waits for the reader.
func (rc *remoteConsumer) Close() error {
	rc.mu.Lock()
	if rc.mu.closed {
		rc.mu.Unlock()
		<-rc.done
		return nil
	}
	rc.mu.closed = true
	rc.mu.Unlock()
	rc.sendMu.Lock()
	_ = rc.stream.CloseRequest()
	rc.sendMu.Unlock()
	t := time.NewTimer(consumerCloseGrace)
	select {
	case <-rc.done:
	case <-t.C:
	}
	t.Stop()
	rc.cancel()
	<-rc.done
	_ = rc.stream.CloseResponse()
	// Whatever ended the stream, the consumer is closed now.
	rc.mu.Lock()
	rc.mu.err = fmt.Errorf("annals client: %w", groups.ErrConsumerClosed)
	rc.mu.Unlock()
	return nil
}
