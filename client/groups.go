package client

import (
	"context"
	"errors"
	"fmt"
	"net/http"
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
// server's answer, so that they return [groups.ErrNotInFlight] exactly as the manager does
// (naming only their own ids); many goroutines may ack at once on one consumer: the acks
// (and the nacks of one action) waiting while one message is sent go together in the next
// one, which the server answers once. When the
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
	// readers are the consumers' goroutines that read and write their streams; Client.Close
	// waits.
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
	rc := &remoteConsumer{
		g: g, cancel: cancel, notify: make(chan struct{}, 1), wake: make(chan struct{}, 1),
		ended: make(chan struct{}), done: make(chan struct{}), sent: make(chan struct{}),
	}
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
	g.readers.Add(2)
	go func() {
		defer g.readers.Done()
		defer close(rc.done)
		rc.read()
	}()
	go func() {
		defer g.readers.Done()
		defer close(rc.sent)
		rc.sendLoop()
	}()
	return rc, nil
}
