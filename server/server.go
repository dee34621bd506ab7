// Package server serves an [annals.Store] over the network: the EventStoreService of
// proto/annals/v1 through Connect, so that one set of handlers answers gRPC, gRPC-Web and the
// Connect protocol (plain HTTP/JSON), Server-Sent Events for browsers that follow a stream
// or $all, and plain JSON routes for scripts in any language: reads, and appends of events
// whose data is JSON as it is (POST /v1/streams/{stream}).
//
// A [Server] is built over any store with [New]; [Server.Handler] returns its http.Handler.
// The server does not listen by itself: run the handler in an http.Server, with unencrypted
// HTTP/2 enabled (http.Protocols.SetUnencryptedHTTP2) for gRPC without TLS. [Server.Close]
// ends the running subscriptions (clients reconnect elsewhere); it does not close the store.
//
// # Errors
//
// Every error a request gets goes through one table (errors.go): a conflict is Aborted (HTTP
// 409) with the actual revision in an ErrorDetail, a missing stream NotFound, a tombstoned
// stream FailedPrecondition, bad input InvalidArgument, a closed store Unavailable; anything
// else is Internal with a generic message, and the full error goes to the log. Connect itself
// answers malformed messages and fields the API does not know (InvalidArgument, naming the
// field: the server's JSON codec is strict), unknown methods (404), wrong content types (415)
// and bodies over [Options.MaxRequestBytes] (ResourceExhausted). A request that finds no room
// under [Options.MaxRequestBytesInFlight] is ResourceExhausted (429); a body that stalls past
// the http.Server's read timeout is DeadlineExceeded with HTTP status 408, and a
// Content-Encoding the server cannot decode is Unimplemented with HTTP status 415.
//
// # BatchAppend
//
// BatchAppend (batch.go) carries many appends over one bidirectional stream, each with an id
// of the client's choosing and answered by id, in any order, with the result or the Status a
// unary Append would give (the same function makes both, [Server.append]). The appends of a
// stream run concurrently, so that the store commits them together, at most
// [MaxBatchInFlight] at once; their encoded size is held under
// [Options.MaxRequestBytesInFlight] until they return; at either bound the server stops
// reading the stream. One writer sends the results ready in one message. A message with no
// appends, an append without its AppendRequest, or an id already in flight ends the stream
// with InvalidArgument, after the appends in the store are answered; [Server.Close] ends it
// the same way with Unavailable and reason SHUTTING_DOWN. The core of a stream
// ([Server.serveBatch]) reads and writes through functions, so that another transport than
// Connect can serve it.
//
// # Leases
//
// The LeaseService of the same proto (lease.go) keeps leases with fencing tokens for replicas
// of an application, in [Options.Leases], the store when it keeps leases, or a lease.Memory of
// the server's; GET /v1/leases lists them and GET /v1/projections reports the runners' ones.
// A held lease is AlreadyExists with the lease in the ErrorDetail (reason LEASE_HELD), a lost
// one Aborted (LEASE_LOST).
//
// # Extending
//
// Authentication goes in front of the handler as ordinary middleware (it puts the caller in
// the request's context); authorization goes in [Options.Authorize], which the server calls
// with the operation and the stream before touching the store, on every endpoint, SSE
// included. Every endpoint checks its input first (stream ids, expectations, filters, limits,
// query parameters), then authorizes, then calls the store: bad input is InvalidArgument
// whoever asks, and the hook sees only well-formed requests. Metrics and tracing fit [Options.Interceptors] (every RPC) and middleware around
// [Server.Handler] (every HTTP request). More routes (metrics, health, a console) go on the
// same mux through [Server.Register].
package server

import (
	"context"
	"fmt"
	"log/slog"
	"math"
	"net/http"
	"runtime/debug"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"connectrpc.com/connect"
	"github.com/annalsdb/annals"
	"github.com/annalsdb/annals/internal/gen/annals/v1/annalsv1connect"
	"github.com/annalsdb/annals/lease"
)

// DefaultMaxRequestBytes is the default of [Options.MaxRequestBytes]: twice the store's
// default append limit, enough for a 16 MiB append of small events in protobuf or in JSON
// (base64 data), so that the store, not the transport, reports an append over its limit.
const DefaultMaxRequestBytes = 2 * annals.DefaultMaxAppendSize

// compressMinBytes is the smallest response message the server compresses.
const compressMinBytes = 1024

// DefaultSubscriptionBuffer is the default of [Options.SubscriptionBuffer].
const DefaultSubscriptionBuffer = 256

// Options configure a [Server]. A nil *Options means all defaults.
type Options struct {
	// Logger gets the full text of internal errors (the client gets a generic message); nil
	// means slog.Default().
	Logger *slog.Logger
	// MaxRequestBytes bounds the size of one request message (after decompression); a larger
	// one is refused with ResourceExhausted. 0 means [DefaultMaxRequestBytes].
	MaxRequestBytes int
	// MaxRequestBytesInFlight bounds the bytes of request bodies the server holds at once,
	// across all requests of the Connect API, so that many large requests at once cannot
	// exhaust memory: a request takes its declared size (Content-Length, or the size in its
	// message's envelope; at most MaxRequestBytes) before its body is read, or
	// MaxRequestBytes when its body is compressed or of unknown size; it gives it back when
	// it has been answered, or once its body is read for a server-streaming procedure
	// (Subscribe and the reads, which may run for hours). A BatchAppend stream takes the
	// encoded size of each message it reads until that message's appends are made, not the
	// stream's whole body (batch.go). A request
	// that finds no room waits up to RequestBudgetWait over HTTP/1, or not at all over HTTP/2
	// (its unread body would stall the other requests of its connection), then fails with
	// ResourceExhausted (HTTP 429). The decoded message
	// and the store's copy come on top, so the memory requests cost is a small multiple of
	// this. 0 means [DefaultMaxRequestBytesInFlight]; a value below MaxRequestBytes is raised
	// to it.
	MaxRequestBytesInFlight int64
	// Limits are the store's size limits, which the server checks before it authorizes an
	// append, with the store's other rules of input (event types, ids, expectations). A zero
	// field means no check of that size by the server: the store checks its own limits after
	// authorization.
	Limits annals.Limits
	// RequestBudgetWait is how long a request waits for room under MaxRequestBytesInFlight;
	// 0 means [DefaultRequestBudgetWait].
	RequestBudgetWait time.Duration
	// SubscriptionBuffer bounds the events each subscription of a stream holds between the
	// store and the network; a subscriber that reads slower than that leaves the rest in
	// storage (the store's own guarantee), so a slow reader costs at most this many events of
	// memory. The subscriptions of $all share one subscription of the store and one ring of
	// its last 8,192 events (at most 64 MiB of them) instead: one that falls further behind
	// reads from storage until it catches up with the ring.
	// 0 means [DefaultSubscriptionBuffer].
	SubscriptionBuffer int
	// Authorize, when set, is called before every operation with what it is about to do, once
	// the request's input is known to be well formed. An
	// error stops the request: wrap [ErrUnauthenticated] or [ErrPermissionDenied], or return a
	// *connect.Error with the code of your choice. It must be safe for concurrent use.
	Authorize func(ctx context.Context, a Access) error
	// Interceptors wrap every RPC of the Connect service, in order (the first is outermost).
	// A streaming interceptor must not keep a message after its Send returns: reads and
	// subscriptions reuse their buffers for the next batch. The events of their messages
	// come already encoded, as the messages' unknown fields, which proto.Marshal writes out
	// as the events field: an interceptor that needs them unmarshals the marshaled message.
	Interceptors []connect.Interceptor
	// HandlerOptions are passed to the Connect handler after the server's own (read limit,
	// interceptors), e.g. connect.WithCompression.
	HandlerOptions []connect.HandlerOption
	// Backend names the store in ServerInfo, e.g. "filestore"; empty means "unknown".
	Backend string
	// Version is reported by ServerInfo; empty means the main module's version.
	Version string
	// KeepAlive is the interval of the comments that keep idle SSE connections open through
	// proxies; 0 means 15 seconds.
	KeepAlive time.Duration
	// Projections, when set, reports the application's projections for GET /v1/projections
	// (the web console shows them); see [ProjectionStatus]. An error is answered through the
	// error table. It must be safe for concurrent use.
	Projections func(ctx context.Context) ([]ProjectionStatus, error)
	// Leases keeps the leases of the LeaseService (replicas of the application take them to
	// share out projections and process managers; GET /v1/leases and GET /v1/projections
	// report them). nil means the store, when it keeps leases (it implements lease.Keeper),
	// else a lease.Memory of the server's own: its leases do not survive a restart of the
	// server, and servers over the same store do not share them. An append fenced by a lease
	// (AppendRequest.lease) runs under the keeper's Fenced method (lease.Memory, memstore,
	// filestore and pgstore have one: no other holder can take the lease meanwhile); a keeper
	// without one refuses fenced appends with Unimplemented.
	Leases lease.Keeper
	// ConsumeSendTimeout bounds each send of a Consume stream of the GroupService: a consumer
	// that reads nothing for this long (its flow-control window full) has its stream broken
	// and leaves its group, so that it cannot hold the server. 0 means
	// [DefaultConsumeSendTimeout].
	ConsumeSendTimeout time.Duration
	// Bridges, when set, reports the relays and ingests that run beside the server (annals
	// serve's relays: and ingests:) for GET /v1/relays and the metrics; see
	// [BridgeStatuses]. It is called at each request and scrape, and must be safe for
	// concurrent use and return quickly.
	Bridges func() BridgeStatuses
}

// Op is a kind of access, as [Options.Authorize] sees it.
type Op string

// The kinds of access. They match the lists of an [annals.ACL], plus OpAdmin for what concerns
// the whole server.
const (
	OpRead      Op = "read"
	OpWrite     Op = "write"
	OpDelete    Op = "delete"
	OpMetaRead  Op = "metaRead"
	OpMetaWrite Op = "metaWrite"
	OpAdmin     Op = "admin"
)

// Access describes an operation the server is about to perform.
type Access struct {
	Op Op
	// Procedure is the RPC ("/annals.v1.EventStoreService/Append") or, for SSE, the route
	// ("GET /v1/sse/all").
	Procedure string
	// Stream is the stream the operation is about; "" for the global log ($all), a listing of
	// streams, or the server's info.
	Stream string
	// Prefix is the prefix a listing of streams asked for ("" for all streams).
	Prefix string
	// Filter narrows a read or subscription of $all; nil for everything.
	Filter *annals.Filter
	// Lease is, for an operation on leases (see [IsLeaseAccess]), the lease's name (Acquire,
	// Renew and Release: [OpWrite]), or the prefix of a listing of leases (ListLeases and
	// GET /v1/leases: [OpRead]; "" for every lease).
	Lease string
	// Group is, for an operation of the GroupService or GET /v1/groups, the consumer group
	// it is about. Creating, updating, deleting a group and replaying its parked events are
	// [OpAdmin]; reading a group (GetGroup, ListGroups, GET /v1/groups, Consume) is [OpRead]
	// of the group's stream (Stream; "" with the group's Filter for a group on $all).
	Group string
}

// Server serves one store. Its methods are safe for concurrent use.
type Server struct {
	store   annals.Store
	log     *slog.Logger
	opts    Options
	started time.Time

	// closing is canceled by Close; every subscription's context derives from it.
	closing context.Context
	close   context.CancelFunc

	// subs counts the running subscriptions and BatchAppend streams; Close waits for them.
	// Add is called only under mu while not closed, so that it never races with Close's Wait.
	subs sync.WaitGroup
	// subscriptions is the number of running subscriptions, for ServerInfo.
	subscriptions atomic.Int64
	// batchStreams is the number of open BatchAppend streams, for the metrics;
	// consumeStreams that of the Consume streams of the GroupService.
	batchStreams   atomic.Int64
	consumeStreams atomic.Int64
	// groups is the consumer-group manager, opened at the first need (groups.go).
	groups groupState
	// hub follows $all once for all the subscriptions of $all.
	hub *hub

	mu struct {
		sync.Mutex
		closed bool
	}

	// stats counts appends, reads and deliveries, and lists the running subscriptions.
	stats stats
	// budget bounds the request bodies in flight.
	budget *budget
	// limits are Options.Limits with the sizes the server does not check at their largest.
	limits annals.Limits
	// leases keeps the leases (Options.Leases, the store, or a lease.Memory); leaseStats
	// counts the acquisitions.
	leases     lease.Keeper
	leaseStats leaseStats
}

// New returns a server for store. The server does not own the store: closing the server
// leaves it open.
func New(store annals.Store, opts *Options) *Server {
	var o Options
	if opts != nil {
		o = *opts
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.MaxRequestBytes <= 0 {
		o.MaxRequestBytes = DefaultMaxRequestBytes
	}
	if o.MaxRequestBytesInFlight <= 0 {
		o.MaxRequestBytesInFlight = DefaultMaxRequestBytesInFlight
	}
	if o.RequestBudgetWait <= 0 {
		o.RequestBudgetWait = DefaultRequestBudgetWait
	}
	if o.SubscriptionBuffer <= 0 {
		o.SubscriptionBuffer = DefaultSubscriptionBuffer
	}
	if o.Backend == "" {
		o.Backend = "unknown"
	}
	if o.Version == "" {
		o.Version = "devel"
		if bi, ok := debug.ReadBuildInfo(); ok && bi.Main.Version != "" {
			o.Version = bi.Main.Version
		}
	}
	if o.KeepAlive <= 0 {
		o.KeepAlive = 15 * time.Second
	}
	s := &Server{store: store, log: o.Logger, opts: o, started: time.Now().UTC()}
	s.limits = o.Limits
	if s.limits.MaxEventSize <= 0 {
		s.limits.MaxEventSize = math.MaxInt
	}
	if s.limits.MaxAppendSize <= 0 {
		s.limits.MaxAppendSize = math.MaxInt
	}
	switch k, ok := store.(lease.Keeper); {
	case o.Leases != nil:
		s.leases = o.Leases
	case ok:
		s.leases = k
	default:
		s.leases = lease.NewMemory(nil)
	}
	s.groups.lock = make(chan struct{}, 1)
	s.budget = newBudget(o.MaxRequestBytesInFlight, o.RequestBudgetWait, o.MaxRequestBytes)
	s.closing, s.close = context.WithCancel(context.Background())
	s.hub = newHub(store, s.closing)
	return s
}

// Register adds the server's routes to mux: the Connect service under
// /annals.v1.EventStoreService/, the SSE endpoints GET /v1/sse/streams/{stream} and
// GET /v1/sse/all, the plain JSON reads GET /v1/streams/{stream} and GET /v1/all, the plain
// JSON append POST /v1/streams/{stream} (within the request budget, as the Connect API), the
// listing GET /v1/streams, the status routes GET /v1/stats ([Stats]; [OpAdmin]) and
// GET /v1/projections ([Projections]; [OpRead]), the leases: the Connect service
// /annals.v1.LeaseService/ and the listing GET /v1/leases ([LeaseList]), the consumer
// groups: the Connect service /annals.v1.GroupService/ and the listing GET /v1/groups
// ([GroupList]), the conversation of an event, GET /v1/correlation ([Correlation]), and the
// relays and ingests of [Options.Bridges], GET /v1/relays ([RelayList]; [OpRead]).
func (s *Server) Register(mux *http.ServeMux) {
	handlerOpts := []connect.HandlerOption{
		connect.WithReadMaxBytes(s.opts.MaxRequestBytes),
		connect.WithInterceptors(s.opts.Interceptors...),
		// Connect compresses every response message a client accepts gzip for, however
		// small; gRPC clients of most languages accept it, and a small BatchAppend result or
		// live subscription batch then cost twice the CPU (docs/server.md, "Choosing the
		// transport of BatchAppend").
		connect.WithCompressMinBytes(compressMinBytes),
	}
	handlerOpts = append(handlerOpts, jsonCodecs...)
	handlerOpts = append(handlerOpts, s.opts.HandlerOptions...)
	path, h := annalsv1connect.NewEventStoreServiceHandler(&service{s: s}, handlerOpts...)
	mux.Handle(path, s.guard(h))
	path, h = annalsv1connect.NewLeaseServiceHandler(&leaseService{s: s}, handlerOpts...)
	mux.Handle(path, s.guard(h))
	groupOpts := append(slices.Clone(handlerOpts), connect.WithReadMaxBytes(min(s.opts.MaxRequestBytes, maxGroupMessageBytes)))
	path, h = annalsv1connect.NewGroupServiceHandler(&groupService{s: s}, groupOpts...)
	mux.Handle(path, s.guard(h))
	mux.HandleFunc(sseStreamRoute, s.serveSSEStream)
	mux.HandleFunc(sseAllRoute, s.serveSSEAll)
	mux.HandleFunc(restStreamRoute, s.serveRESTStream)
	mux.Handle(restAppendRoute, s.guard(http.HandlerFunc(s.serveRESTAppend)))
	mux.HandleFunc(restAllRoute, s.serveRESTAll)
	mux.HandleFunc(listRoute, s.serveList)
	mux.HandleFunc(statsRoute, s.serveStats)
	mux.HandleFunc(projectionsRoute, s.serveProjections)
	mux.HandleFunc(leasesRoute, s.serveLeases)
	mux.HandleFunc(groupsRoute, s.serveGroups)
	mux.HandleFunc(correlationRoute, s.serveCorrelation)
	mux.HandleFunc(relaysRoute, s.serveRelays)
}

// Handler returns an http.Handler that serves only the server's routes (see
// [Server.Register]).
func (s *Server) Handler() http.Handler {
	mux := http.NewServeMux()
	s.Register(mux)
	return mux
}

// Close ends every running subscription (gRPC/Connect ones with Unavailable and reason
// SHUTTING_DOWN, which the Go client answers by reconnecting; SSE ones by closing the
// response) and every BatchAppend stream (it stops reading it, answers the appends already
// handed to the store, then ends it the same way), refuses new ones, then waits for them to
// end. Other requests are not affected: stop the http.Server with Shutdown to let them
// finish. The Consume streams of the GroupService end the same way, their consumers leaving
// their groups; then Close closes the server's consumer groups (their checkpoints are
// written) and returns the error of that. Close does not close the store and is safe to call
// more than once.
func (s *Server) Close() error {
	s.mu.Lock()
	s.mu.closed = true
	s.mu.Unlock()
	s.close()
	s.subs.Wait()
	return s.closeGroups()
}

// beginSubscription registers a subscription with the server. It returns a context that ends
// with ctx or when the server closes, and the function to call when the subscription ends; or
// [ErrShuttingDown] once Close was called.
func (s *Server) beginSubscription(ctx context.Context) (context.Context, func(), error) {
	return s.beginLong(ctx, &s.subscriptions)
}

// beginLong registers a long-lived call (a subscription, a BatchAppend stream) with the
// server, which Close waits for, and counts it in n while it runs. It returns a context that
// ends with ctx or when the server closes, and the function to call when the call ends; or
// [ErrShuttingDown] once Close was called.
func (s *Server) beginLong(ctx context.Context, n *atomic.Int64) (context.Context, func(), error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.mu.closed {
		return nil, nil, ErrShuttingDown
	}
	s.subs.Add(1)
	n.Add(1)
	ctx, cancel := context.WithCancel(ctx)
	stop := context.AfterFunc(s.closing, cancel)
	return ctx, func() {
		stop()
		cancel()
		n.Add(-1)
		s.subs.Done()
	}, nil
}

// authorize calls Options.Authorize, if any.
func (s *Server) authorize(ctx context.Context, a Access) error {
	if s.opts.Authorize == nil {
		return nil
	}
	return s.opts.Authorize(ctx, a)
}

// Info describes the server and the state of its store, as ServerInfo reports it.
type Info struct {
	Version string
	Backend string
	// HeadPosition is the position of the last event in the log, 0 when it is empty.
	HeadPosition uint64
	StartTime    time.Time
	// Subscriptions is the number of subscriptions (Subscribe and SSE) running now.
	Subscriptions int64
}

// Info returns what ServerInfo reports. It returns the store's error when the head of the log
// cannot be read.
func (s *Server) Info(ctx context.Context) (Info, error) {
	info := Info{Version: s.opts.Version, Backend: s.opts.Backend, StartTime: s.started, Subscriptions: s.subscriptions.Load()}
	for e, err := range s.store.ReadAll(ctx, &annals.ReadOptions{Backwards: true, From: annals.End, Limit: 1}) {
		if err != nil {
			return Info{}, err
		}
		info.HeadPosition = e.Position
	}
	return info, nil
}

// Ready returns nil when the server can do its work: the store answers a read of the head of
// the log within ctx and, when it has a Ready method (interface{ Ready() error }; filestore's
// reports a disk too full to append), that method returns nil. The error says why not, for
// the log: a readiness probe shows none of it.
func (s *Server) Ready(ctx context.Context) error {
	if _, err := s.Info(ctx); err != nil {
		return fmt.Errorf("the store does not answer: %w", err)
	}
	if r, ok := s.store.(interface{ Ready() error }); ok {
		if err := r.Ready(); err != nil {
			return fmt.Errorf("the store is not ready: %w", err)
		}
	}
	return nil
}
