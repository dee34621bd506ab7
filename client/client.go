// Package client is an [annals.Store] over the network: it talks to an Annals server (the
// server package, `annals serve`) with the EventStoreService of proto/annals/v1, so that the
// whole toolkit runs unchanged against a remote store, and the conformance suite runs against
// the server through it.
//
// The client speaks binary protobuf over HTTP/2: unencrypted HTTP/2 with prior knowledge (h2c)
// for http:// URLs, TLS with ALPN for https:// ones, many concurrent calls on one connection.
// Reads, subscriptions and listings are gRPC server streams, which carry them without
// buffering them whole; the unary calls (metadata, deletes, info) use the Connect protocol,
// whose answer is one HTTP/2 HEADERS and one DATA frame, where gRPC sends a third, its
// trailers, and frames the message in an envelope. Appends share one gRPC BatchAppend stream
// per Client (batch.go; see [Client.Append]). The events of reads and subscriptions
// are decoded straight from the wire into annals.RecordedEvents.
//
// # Errors
//
// The server's errors map back to the store's: errors.Is(err, annals.ErrWrongExpectedVersion)
// works across the network, and the error is an [*annals.WrongExpectedVersionError] with the
// actual revision; likewise [annals.ErrStreamNotFound], [annals.ErrStreamDeleted],
// [annals.ErrInvalidArgument], [annals.ErrTooLarge] and [annals.ErrClosed] (the server's store
// is closed). After [Client.Close] every method returns an error matching [annals.ErrClosed].
// A canceled or expired context gives the context's error. Bad input comes first, as in the
// in-process stores: it is [annals.ErrInvalidArgument] even with a canceled context or a
// closed client. Anything else (the server cannot be reached, authentication failed) is a
// *connect.Error, wrapped.
//
// # Subscriptions
//
// A subscription that loses the server (a restart, a network failure, the server shutting
// down) reconnects with backoff and resumes after the last event it delivered: no gap and no
// duplicate, as if it had never been cut. It gives up, with the last error, when no
// reconnection succeeds within [Options.ReconnectTimeout].
//
// Appends are not retried by the client: an append whose answer was lost may or may not have
// been written, and repeating it with the same event IDs is safe (see [annals.Store.Append]).
//
// # Leases
//
// A Client is also a lease.Keeper over the server's LeaseService (lease.go), for replicas of
// an application that share out its projections and process managers.
//
// # Consumer groups
//
// [Client.Groups] is the server's consumer groups (its GroupService) as a groups.Service
// (groups.go): the same consumer code runs over the network and in process.
package client

import (
	"context"
	"errors"
	"fmt"
	"iter"
	"math"
	"math/rand/v2"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"connectrpc.com/connect"
	"github.com/annalsdb/annals"
	annalsv1 "github.com/annalsdb/annals/internal/gen/annals/v1"
	"github.com/annalsdb/annals/internal/gen/annals/v1/annalsv1connect"
	"github.com/annalsdb/annals/internal/rules"
	"github.com/annalsdb/annals/internal/wire"
	"github.com/annalsdb/annals/lease"
)

var _ annals.Store = (*Client)(nil)

// DefaultReconnectTimeout is the default of [Options.ReconnectTimeout].
const DefaultReconnectTimeout = time.Minute

// Options configure a [Client]. A nil *Options means all defaults.
type Options struct {
	// HTTPClient sends the requests. It must speak HTTP/2 (gRPC needs it). nil means a client
	// of the package's own, which uses unencrypted HTTP/2 for http:// URLs and TLS for
	// https:// ones, and pings an idle connection every 15 seconds to notice a dead server.
	HTTPClient *http.Client
	// Token, when not empty, is sent as "Authorization: Bearer <Token>" with every request.
	Token string
	// ReconnectTimeout is how long a subscription that lost the server keeps trying to
	// reconnect (with backoff from 50 ms to 2 s) before it ends with the last error. 0 means
	// [DefaultReconnectTimeout]; a negative value ends the subscription at the first failure.
	ReconnectTimeout time.Duration
	// Gzip compresses requests and asks for compressed responses. Off by default: on a fast
	// network gzip costs more CPU than it saves time (it cut loopback reads of $all by half).
	Gzip bool
	// ClientOptions are passed to the Connect clients after the package's own (protocol,
	// codec, compression, the token).
	ClientOptions []connect.ClientOption
	// UnaryAppends sends every append in a unary Append call of its own, instead of
	// multiplexing them on the client's BatchAppend stream (see [Client.Append]).
	UnaryAppends bool
}

// Client is a remote [annals.Store]. It is safe for concurrent use; one Client multiplexes
// every call on its HTTP/2 connection.
type Client struct {
	rpc   annalsv1connect.EventStoreServiceClient // gRPC: ListStreams
	unary annalsv1connect.EventStoreServiceClient // the Connect protocol: the unary methods
	lease annalsv1connect.LeaseServiceClient      // the Connect protocol: the lease.Keeper
	// The reads and subscriptions, with the codec that decodes their events.
	readStream *connect.Client[annalsv1.ReadStreamRequest, readBatch]
	readAll    *connect.Client[annalsv1.ReadAllRequest, readBatch]
	sub        *connect.Client[annalsv1.SubscribeRequest, subscribeMessage]
	transport  *http.Transport // ours to close, nil when the caller gave the HTTPClient
	reconnect  time.Duration
	// batch multiplexes the appends on a BatchAppend stream; nil with Options.UnaryAppends.
	batch *batcher
	// groups is the GroupService's groups.Service (groups.go).
	groups *remoteGroups

	// life ends with Close; every call's context is canceled with it.
	life  context.Context
	close context.CancelFunc
	once  sync.Once
}

// Open returns a client of the server at baseURL (e.g. "http://localhost:2113"), after
// checking with one ServerInfo call, bounded by ctx, that the server answers. It returns an
// error for a URL that is not http:// or https://, or when that call fails.
func Open(ctx context.Context, baseURL string, opts *Options) (*Client, error) {
	var o Options
	if opts != nil {
		o = *opts
	}
	u, err := url.Parse(baseURL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("annals client: server URL %q: want http://host:port or https://host:port", baseURL)
	}
	c := &Client{reconnect: o.ReconnectTimeout}
	if c.reconnect == 0 {
		c.reconnect = DefaultReconnectTimeout
	}
	hc := o.HTTPClient
	if hc == nil {
		c.transport = newTransport()
		hc = &http.Client{Transport: c.transport}
	}
	var copts []connect.ClientOption
	if o.Gzip {
		copts = append(copts, connect.WithSendGzip())
	} else {
		copts = append(copts, connect.WithAcceptCompression("gzip", nil, nil))
	}
	if o.Token != "" {
		copts = append(copts, connect.WithInterceptors(bearer("Bearer "+o.Token)))
	}
	copts = append(copts, o.ClientOptions...)
	base := strings.TrimSuffix(baseURL, "/")
	grpc := append([]connect.ClientOption{connect.WithGRPC()}, copts...)
	c.rpc = annalsv1connect.NewEventStoreServiceClient(hc, base, grpc...)
	c.unary = annalsv1connect.NewEventStoreServiceClient(hc, base, copts...)
	c.lease = annalsv1connect.NewLeaseServiceClient(hc, base, copts...)
	c.groups = newRemoteGroups(c, hc, base, copts)
	events := append([]connect.ClientOption{connect.WithGRPC(), connect.WithCodec(codec{})}, copts...)
	c.readStream = connect.NewClient[annalsv1.ReadStreamRequest, readBatch](hc, base+annalsv1connect.EventStoreServiceReadStreamProcedure, events...)
	c.readAll = connect.NewClient[annalsv1.ReadAllRequest, readBatch](hc, base+annalsv1connect.EventStoreServiceReadAllProcedure, events...)
	c.sub = connect.NewClient[annalsv1.SubscribeRequest, subscribeMessage](hc, base+annalsv1connect.EventStoreServiceSubscribeProcedure, events...)
	c.life, c.close = context.WithCancel(context.Background())
	if !o.UnaryAppends {
		c.batch = newBatcher(c.life, func(ctx context.Context) batchStream {
			ctx, cancel := context.WithCancel(ctx)
			return &connectBatch{BidiStreamForClient: c.rpc.BatchAppend(ctx), cancel: cancel}
		})
	}
	if _, err := c.Info(ctx); err != nil {
		c.Close()
		return nil, fmt.Errorf("annals client: open %s: %w", baseURL, err)
	}
	return c, nil
}

// newTransport returns an HTTP/2-only transport: h2c for http://, TLS (ALPN h2) for https://.
func newTransport() *http.Transport {
	var p http.Protocols
	p.SetHTTP2(true)
	p.SetUnencryptedHTTP2(true)
	return &http.Transport{
		Protocols:           &p,
		DialContext:         (&net.Dialer{Timeout: 10 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
		TLSHandshakeTimeout: 10 * time.Second,
		HTTP2:               &http.HTTP2Config{SendPingTimeout: 15 * time.Second, PingTimeout: 15 * time.Second},
	}
}

// bearer sets the Authorization header on every request.
type bearer string

func (b bearer) WrapUnary(next connect.UnaryFunc) connect.UnaryFunc {
	return func(ctx context.Context, req connect.AnyRequest) (connect.AnyResponse, error) {
		req.Header().Set("Authorization", string(b))
		return next(ctx, req)
	}
}

func (b bearer) WrapStreamingClient(next connect.StreamingClientFunc) connect.StreamingClientFunc {
	return func(ctx context.Context, spec connect.Spec) connect.StreamingClientConn {
		conn := next(ctx, spec)
		conn.RequestHeader().Set("Authorization", string(b))
		return conn
	}
}

func (b bearer) WrapStreamingHandler(next connect.StreamingHandlerFunc) connect.StreamingHandlerFunc {
	return next
}

// Close ends every running subscription and read, and every append waiting for its answer
// (with an error matching [annals.ErrClosed]), ends the BatchAppend stream and closes the
// client's idle connections. Later calls return an error
// matching [annals.ErrClosed]. It is safe to call more than once; the server and its store are
// not affected.
func (c *Client) Close() error {
	c.once.Do(func() {
		c.close()
		if c.batch != nil {
			c.batch.close()
		}
		c.groups.readers.Wait() // the streams of the consumers end with c.life
		if c.transport != nil {
			c.transport.CloseIdleConnections()
		}
	})
	return nil
}

// noLimits is what the client checks appends against: the size limits are the server's.
var noLimits = annals.Limits{MaxEventSize: math.MaxInt, MaxAppendSize: math.MaxInt}

var errClosed = fmt.Errorf("annals client: %w", annals.ErrClosed)

// begin starts a call: it returns a context that ends with ctx or with Close, and the function
// that releases it; or the error to return at once when the client is closed or ctx is done.
func (c *Client) begin(ctx context.Context) (context.Context, func(), error) {
	if c.life.Err() != nil {
		return nil, nil, errClosed
	}
	if err := ctx.Err(); err != nil {
		return nil, nil, err
	}
	cctx, cancel := context.WithCancel(ctx)
	stop := context.AfterFunc(c.life, cancel)
	return cctx, func() { stop(); cancel() }, nil
}

// fail returns the error a call made with ctx returns for err: the client's closing first,
// then ctx's own end, then the server's answer.
func (c *Client) fail(ctx context.Context, err error) error {
	if c.life.Err() != nil {
		return errClosed
	}
	if ctx.Err() != nil {
		return ctx.Err()
	}
	return fromConnect(err)
}

// Append implements [annals.Store.Append]. The result carries the position, for
// read-your-writes. When ctx carries a lease ([lease.NewContext]), the server writes the
// events only if the lease is still current, checked in the same step as the write, and
// refuses them otherwise with an error matching [lease.ErrLost].
//
// The appends of all the goroutines that use the Client share one BatchAppend stream, opened
// at the first append: a sender puts every append waiting into one message, and the server
// commits them together, so that one network write and one fdatasync answer many. At most
// [MaxPendingAppends] appends wait or are in flight at once; an Append beyond that waits for
// room. An append whose ctx ends returns ctx's error at once (the append may still be made,
// as with a unary call cut off). When the stream breaks (the server restarts or stops, the
// network fails), the appends it had not answered fail with the error a unary call would
// give (their outcome is unknown: retry them with their event IDs), and the next Append opens
// a new stream. Against a server that does not serve BatchAppend, and with
// [Options.UnaryAppends], each append is a unary Append call.
func (c *Client) Append(ctx context.Context, stream string, expected annals.ExpectedRevision, events ...annals.Event) (annals.AppendResult, error) {
	// The input first, as every store checks it (the sizes are the server's to check).
	if _, err := rules.ValidateAppend(noLimits, stream, expected, events); err != nil {
		return annals.AppendResult{}, err
	}
	fence, fenced := lease.FromContext(ctx)
	if fenced {
		if err := lease.ValidateHeld(fence); err != nil {
			return annals.AppendResult{}, badLease(fmt.Errorf("the lease of the append: %w", err))
		}
	}
	if c.life.Err() != nil {
		return annals.AppendResult{}, errClosed
	}
	if err := ctx.Err(); err != nil {
		return annals.AppendResult{}, err
	}
	req := &annalsv1.AppendRequest{Stream: stream, Expected: wire.ExpectedToProto(expected), Events: make([]*annalsv1.Event, len(events))}
	for i := range events {
		req.Events[i] = wire.EventToProto(&events[i])
	}
	if fenced {
		req.Lease = wire.LeaseToProto(fence)
	}
	if c.batch != nil {
		res, err := c.batch.append(ctx, req)
		switch {
		case err == nil:
			return annals.AppendResult{Revision: res.Revision, Position: res.Position}, nil
		case !errors.Is(err, errNoBatch):
			return annals.AppendResult{}, c.fail(ctx, err)
		}
	}
	cctx, done, err := c.begin(ctx)
	if err != nil {
		return annals.AppendResult{}, err
	}
	defer done()
	res, err := c.unary.Append(cctx, connect.NewRequest(req))
	if err != nil {
		return annals.AppendResult{}, c.fail(ctx, err)
	}
	return annals.AppendResult{Revision: res.Msg.Revision, Position: res.Msg.Position}, nil
}

// readRequest holds the fields that ReadStreamRequest and ReadAllRequest share.
func readFields(opts *annals.ReadOptions) (o annals.ReadOptions, limit uint64) {
	if opts != nil {
		o = *opts
	}
	if o.Limit < 0 {
		// Sent as is, a negative limit would wrap; the server refuses this one instead.
		return o, 1 << 63
	}
	return o, uint64(o.Limit)
}

// ReadStream implements [annals.Store.ReadStream] with one server-streaming call: events come
// in batches, so that a long read is not held in memory on either side.
func (c *Client) ReadStream(ctx context.Context, stream string, opts *annals.ReadOptions) iter.Seq2[annals.RecordedEvent, error] {
	return func(yield func(annals.RecordedEvent, error) bool) {
		o, limit := readFields(opts)
		if _, err := rules.StreamReadOptions(stream, opts); err != nil {
			yield(annals.RecordedEvent{}, err)
			return
		}
		req := &annalsv1.ReadStreamRequest{
			Stream: stream, From: o.From, Backwards: o.Backwards, Limit: limit, Until: o.Until,
			AsOf: wire.TimeToProto(o.AsOf), Filter: wire.FilterToProto(o.Filter),
		}
		c.read(ctx, yield, func(ctx context.Context) (*connect.ServerStreamForClient[readBatch], error) {
			return c.readStream.CallServerStream(ctx, connect.NewRequest(req))
		})
	}
}

// ReadAll implements [annals.Store.ReadAll] like [Client.ReadStream].
func (c *Client) ReadAll(ctx context.Context, opts *annals.ReadOptions) iter.Seq2[annals.RecordedEvent, error] {
	return func(yield func(annals.RecordedEvent, error) bool) {
		o, limit := readFields(opts)
		if _, err := rules.ReadOptions(opts); err != nil {
			yield(annals.RecordedEvent{}, err)
			return
		}
		req := &annalsv1.ReadAllRequest{
			From: o.From, Backwards: o.Backwards, Limit: limit, Until: o.Until,
			AsOf: wire.TimeToProto(o.AsOf), Filter: wire.FilterToProto(o.Filter),
		}
		c.read(ctx, yield, func(ctx context.Context) (*connect.ServerStreamForClient[readBatch], error) {
			return c.readAll.CallServerStream(ctx, connect.NewRequest(req))
		})
	}
}

// read runs one read: it opens the stream with open and yields its events, then its error.
func (c *Client) read(ctx context.Context, yield func(annals.RecordedEvent, error) bool, open func(context.Context) (*connect.ServerStreamForClient[readBatch], error)) {
	cctx, done, err := c.begin(ctx)
	if err != nil {
		yield(annals.RecordedEvent{}, err)
		return
	}
	defer done()
	st, err := open(cctx)
	if err != nil {
		yield(annals.RecordedEvent{}, c.fail(ctx, err))
		return
	}
	defer st.Close()
	for st.Receive() {
		batch := st.Msg().events
		for _, e := range batch {
			if cctx.Err() != nil {
				yield(annals.RecordedEvent{}, c.fail(ctx, cctx.Err()))
				return
			}
			if !yield(e, nil) {
				return
			}
		}
		putEvents(batch)
	}
	if err := st.Err(); err != nil {
		yield(annals.RecordedEvent{}, c.fail(ctx, err))
	}
}

// SubscribeStream implements [annals.Store.SubscribeStream] with a Subscribe call that
// reconnects after losing the server and resumes after the last revision delivered.
func (c *Client) SubscribeStream(ctx context.Context, stream string, opts *annals.SubscribeOptions) iter.Seq2[annals.RecordedEvent, error] {
	if stream == annals.AllStream {
		// On the wire "$all" names the global log; as a stream id it is refused.
		return func(yield func(annals.RecordedEvent, error) bool) {
			yield(annals.RecordedEvent{}, annals.ValidateStreamID(stream))
		}
	}
	return c.subscribe(ctx, stream, opts)
}

// SubscribeAll implements [annals.Store.SubscribeAll] like [Client.SubscribeStream], resuming
// after the last position delivered.
func (c *Client) SubscribeAll(ctx context.Context, opts *annals.SubscribeOptions) iter.Seq2[annals.RecordedEvent, error] {
	return c.subscribe(ctx, annals.AllStream, opts)
}

// Backoff between reconnection attempts of a subscription.
const (
	minBackoff = 50 * time.Millisecond
	maxBackoff = 2 * time.Second
)

func (c *Client) subscribe(ctx context.Context, stream string, opts *annals.SubscribeOptions) iter.Seq2[annals.RecordedEvent, error] {
	var o annals.SubscribeOptions
	if opts != nil {
		o = *opts
	}
	return func(yield func(annals.RecordedEvent, error) bool) {
		s := &subscription{c: c, stream: stream, all: stream == annals.AllStream, filter: wire.FilterToProto(o.Filter),
			next: o.From, fromEnd: o.From == annals.End, backoff: minBackoff}
		var err error
		if s.all {
			_, err = rules.SubscribeOptions(opts)
		} else {
			_, err = rules.StreamSubscribeOptions(stream, opts)
		}
		if err != nil {
			yield(annals.RecordedEvent{}, err)
			return
		}
		cctx, done, err := c.begin(ctx)
		if err != nil {
			yield(annals.RecordedEvent{}, err)
			return
		}
		defer done()
		for {
			connected, stopped, err := s.connect(cctx, yield)
			if stopped {
				return
			}
			wait, err := s.retry(ctx, err, connected)
			if err != nil {
				yield(annals.RecordedEvent{}, err)
				return
			}
			timer := time.NewTimer(wait)
			select {
			case <-timer.C:
			case <-cctx.Done():
				timer.Stop()
			}
		}
	}
}

// subscription is the state of one subscription across its connections: where it resumes,
// and the backoff of its reconnections. Only the subscription's goroutine uses it.
type subscription struct {
	c       *Client
	stream  string
	all     bool
	filter  *annalsv1.Filter
	next    uint64 // where the next connection starts
	fromEnd bool   // the next connection starts from the end: no start known yet
	backoff time.Duration
	giveUp  time.Time // when reconnecting stops; zero while connected
}

// connect makes one connection of the subscription and passes its events to yield until it
// ends. It reports whether the server started the subscription, whether yield asked to stop
// (nothing more is to be done), and the error that ended the connection.
func (s *subscription) connect(ctx context.Context, yield func(annals.RecordedEvent, error) bool) (connected, stopped bool, err error) {
	req := &annalsv1.SubscribeRequest{Stream: s.stream, From: s.next, FromEnd: s.fromEnd, Filter: s.filter}
	if s.fromEnd {
		req.From = 0
	}
	st, err := s.c.sub.CallServerStream(ctx, connect.NewRequest(req))
	if err != nil {
		return false, false, err
	}
	defer st.Close()
	for st.Receive() {
		m := st.Msg()
		if m.started {
			if s.fromEnd {
				s.next, s.fromEnd = m.from, false
			}
			connected, s.giveUp, s.backoff = true, time.Time{}, minBackoff
		}
		for _, e := range m.events {
			if ctx.Err() != nil {
				break
			}
			if s.all {
				s.next = e.Position + 1
			} else {
				s.next = e.Revision + 1
			}
			if !yield(e, nil) {
				return connected, true, nil
			}
		}
		putEvents(m.events)
	}
	if err = st.Err(); err == nil {
		err = connect.NewError(connect.CodeUnavailable, errors.New("the server ended the subscription"))
	}
	return connected, false, err
}

// retry decides what follows a connection that ended with err: the wait before the next
// one, or the error that ends the subscription (the client or ctx closed, an error that
// retrying cannot mend, or no connection within the client's reconnect timeout).
func (s *subscription) retry(ctx context.Context, err error, connected bool) (time.Duration, error) {
	c := s.c
	if c.life.Err() != nil || ctx.Err() != nil || !retryable(err) || c.reconnect < 0 {
		return 0, c.fail(ctx, err)
	}
	now := time.Now()
	if connected || s.giveUp.IsZero() {
		s.giveUp = now.Add(c.reconnect)
	}
	if now.After(s.giveUp) {
		return 0, fmt.Errorf("annals client: subscription could not reconnect within %v: %w", c.reconnect, fromConnect(err))
	}
	wait := s.backoff/2 + rand.N(s.backoff/2+1)
	s.backoff = min(2*s.backoff, maxBackoff)
	return wait, nil
}

// retryable reports whether a subscription that failed with err should reconnect: the server
// could not be reached or went away (no ErrorDetail, a transport code), or it said it is
// shutting down or its store is closed (a restart in progress).
func retryable(err error) bool {
	ce, ok := errors.AsType[*connect.Error](err)
	if !ok {
		return true // not even a Connect error: the transport failed
	}
	if d := detailOf(ce); d != nil {
		return d.Reason == wire.ReasonShuttingDown || d.Reason == wire.ReasonClosed
	}
	switch ce.Code() {
	case connect.CodeUnavailable, connect.CodeUnknown, connect.CodeInternal, connect.CodeCanceled,
		connect.CodeDeadlineExceeded, connect.CodeAborted:
		return true
	}
	return false
}

// GetMetadata implements [annals.Store.GetMetadata].
func (c *Client) GetMetadata(ctx context.Context, stream string) (annals.StreamMetadata, annals.ExpectedRevision, error) {
	if err := annals.ValidateStreamID(stream); err != nil {
		return annals.StreamMetadata{}, 0, err
	}
	cctx, done, err := c.begin(ctx)
	if err != nil {
		return annals.StreamMetadata{}, 0, err
	}
	defer done()
	res, err := c.unary.GetMetadata(cctx, connect.NewRequest(&annalsv1.GetMetadataRequest{Stream: stream}))
	if err != nil {
		return annals.StreamMetadata{}, 0, c.fail(ctx, err)
	}
	meta, err := wire.MetadataFromProto(res.Msg.GetMetadata())
	if err != nil {
		return annals.StreamMetadata{}, 0, fmt.Errorf("annals client: metadata from the server: %w", err)
	}
	return meta, wire.ExpectedFromProto(res.Msg.GetExpected()), nil
}

// SetMetadata implements [annals.Store.SetMetadata].
func (c *Client) SetMetadata(ctx context.Context, stream string, expected annals.ExpectedRevision, meta annals.StreamMetadata) (annals.AppendResult, error) {
	if _, err := rules.MetadataEvent(noLimits, stream, expected, meta); err != nil {
		return annals.AppendResult{}, err
	}
	cctx, done, err := c.begin(ctx)
	if err != nil {
		return annals.AppendResult{}, err
	}
	defer done()
	req := &annalsv1.SetMetadataRequest{Stream: stream, Expected: wire.ExpectedToProto(expected), Metadata: wire.MetadataToProto(&meta)}
	res, err := c.unary.SetMetadata(cctx, connect.NewRequest(req))
	if err != nil {
		return annals.AppendResult{}, c.fail(ctx, err)
	}
	return annals.AppendResult{Revision: res.Msg.Revision, Position: res.Msg.Position}, nil
}

// Delete implements [annals.Store.Delete].
func (c *Client) Delete(ctx context.Context, stream string, expected annals.ExpectedRevision) (annals.DeleteResult, error) {
	if err := rules.ValidateDelete(stream, expected); err != nil {
		return annals.DeleteResult{}, err
	}
	cctx, done, err := c.begin(ctx)
	if err != nil {
		return annals.DeleteResult{}, err
	}
	defer done()
	res, err := c.unary.Delete(cctx, connect.NewRequest(&annalsv1.DeleteRequest{Stream: stream, Expected: wire.ExpectedToProto(expected)}))
	if err != nil {
		return annals.DeleteResult{}, c.fail(ctx, err)
	}
	return annals.DeleteResult{Position: res.Msg.Position}, nil
}

// Tombstone implements [annals.Store.Tombstone].
func (c *Client) Tombstone(ctx context.Context, stream string, expected annals.ExpectedRevision) (annals.DeleteResult, error) {
	if err := rules.ValidateDelete(stream, expected); err != nil {
		return annals.DeleteResult{}, err
	}
	cctx, done, err := c.begin(ctx)
	if err != nil {
		return annals.DeleteResult{}, err
	}
	defer done()
	res, err := c.unary.Tombstone(cctx, connect.NewRequest(&annalsv1.TombstoneRequest{Stream: stream, Expected: wire.ExpectedToProto(expected)}))
	if err != nil {
		return annals.DeleteResult{}, c.fail(ctx, err)
	}
	return annals.DeleteResult{Position: res.Msg.Position}, nil
}

// ListStreams implements [annals.Store.ListStreams] with one server-streaming call.
func (c *Client) ListStreams(ctx context.Context, opts *annals.ListOptions) iter.Seq2[annals.StreamInfo, error] {
	return func(yield func(annals.StreamInfo, error) bool) {
		var o annals.ListOptions
		if opts != nil {
			o = *opts
		}
		if _, err := rules.ListOptions(opts); err != nil {
			yield(annals.StreamInfo{}, err)
			return
		}
		limit := uint64(o.Limit)
		cctx, done, err := c.begin(ctx)
		if err != nil {
			yield(annals.StreamInfo{}, err)
			return
		}
		defer done()
		st, err := c.rpc.ListStreams(cctx, connect.NewRequest(&annalsv1.ListStreamsRequest{Prefix: o.Prefix, After: o.After, Limit: limit}))
		if err != nil {
			yield(annals.StreamInfo{}, c.fail(ctx, err))
			return
		}
		defer st.Close()
		for st.Receive() {
			for _, m := range st.Msg().GetStreams() {
				if cctx.Err() != nil {
					yield(annals.StreamInfo{}, c.fail(ctx, cctx.Err()))
					return
				}
				if !yield(annals.StreamInfo{Stream: m.GetStream(), Revision: m.GetRevision(), Count: m.GetCount()}, nil) {
					return
				}
			}
		}
		if err := st.Err(); err != nil {
			yield(annals.StreamInfo{}, c.fail(ctx, err))
		}
	}
}

// ServerInfo describes the server, as [Client.Info] returns it.
type ServerInfo struct {
	Version string
	Backend string
	// HeadPosition is the position of the last event in the log, 0 when it is empty.
	HeadPosition uint64
	StartTime    time.Time
	// Subscriptions is the number of subscriptions running on the server.
	Subscriptions uint64
}

// Info returns what the server says of itself and the head of its log.
func (c *Client) Info(ctx context.Context) (ServerInfo, error) {
	cctx, done, err := c.begin(ctx)
	if err != nil {
		return ServerInfo{}, err
	}
	defer done()
	res, err := c.unary.ServerInfo(cctx, connect.NewRequest(&annalsv1.ServerInfoRequest{}))
	if err != nil {
		return ServerInfo{}, c.fail(ctx, err)
	}
	m := res.Msg
	info := ServerInfo{Version: m.Version, Backend: m.Backend, HeadPosition: m.HeadPosition, Subscriptions: m.Subscriptions}
	if m.StartTime != nil {
		info.StartTime = m.StartTime.AsTime()
	}
	return info, nil
}
