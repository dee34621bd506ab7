package main

import (
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"slices"
	"strings"
	"sync/atomic"
	"time"

	"connectrpc.com/connect"
	"github.com/annalsdb/annals"
	"github.com/annalsdb/annals/console"
	"github.com/annalsdb/annals/internal/gen/annals/v1/annalsv1connect"
	"github.com/annalsdb/annals/server"
	"github.com/spf13/cobra"
	"go.yaml.in/yaml/v3"
)

// serveCommand is "annals serve", in the steps of its life: parse reads and checks the
// configuration, open opens the store and binds the listener, run serves until its context
// ends and shuts down gracefully, close releases what open took. Each step but close returns
// at its first error; close is always called once open was.
type serveCommand struct {
	m          *Main
	config     serveConfig
	configPath string

	// Set by parse.
	log *slog.Logger
	// bridges are the relays and ingests of the config file.
	bridges *serveBridges

	// Set by open.
	tlsConf *tls.Config
	store   annals.Store
	auth    *server.Auth
	backend string
	srv     *server.Server
	ln      net.Listener
	hs      *http.Server
	// ready is what /readyz reports on top of the store: false once shutdown began.
	ready atomic.Bool
	// serving is set by run once the http.Server owns the listener.
	serving bool
}

func (m *Main) newServeCmd() *cobra.Command {
	c := &serveCommand{m: m}
	cmd := &cobra.Command{
		Use:   "serve",
		Short: "Serve the store in the data directory over the network (API, SSE, console, metrics)",
		Long: `Serve the embedded store in the data directory (--data, default ./annals-data) on --listen
(default :2113): the gRPC / gRPC-Web / Connect API (plain JSON POSTs for the unary methods),
Server-Sent Events (GET /v1/sse/...), JSON reads (GET /v1/streams/..., /v1/all), leases for
replicas (the LeaseService; GET /v1/leases), status (GET /v1/stats, /v1/projections), Prometheus metrics (GET /metrics), health (GET /healthz:
the process runs; GET /readyz: the store answers and can write) and the web console (GET /).

Without --auth nobody is asked for credentials, so the server listens on localhost only
(127.0.0.1:2113) unless --listen says otherwise, and says so when it starts.

With --auth FILE (YAML: roles, users with bcrypt password hashes, static API tokens; see
docs/server.md), every request but /healthz, /readyz, POST /v1/login and the console's own
files needs "Authorization: Bearer <token>" (on GET /v1/sse/... also ?access_token=<token>):
a token from POST /v1/login {"username","password"}, signed with --token-key and valid for
--token-ttl, or a static token of the file. What a caller may do is decided by its roles and
the streams' ACLs.

TLS: --tls-cert and --tls-key (PEM files), or --dev for a self-signed certificate of
localhost kept in DATA/dev-tls (the start-up log says how to trust it). Without TLS, gRPC
runs over unencrypted HTTP/2 (h2c).

The config file may also list relays (to Kafka or NATS JetStream) and ingests (from them) that
the server runs over its store with its leases: "relays:" and "ingests:", each item holding the
settings of one with the keys of the flags of 'annals relay' and 'annals ingest' (see
docs/bridges.md); GET /v1/relays, the metrics and the console's Relays view show them.

Every setting is a flag, an environment variable (ANNALS_ and the flag's name in capitals,
- as _: --tls-cert is ANNALS_TLS_CERT) or a key of the YAML config file (--config or
ANNALS_CONFIG; the flag's name: "tls-cert: /etc/annals/cert.pem"); a flag beats the
environment, which beats the file. The effective configuration is logged at start-up, with
secrets masked.

SIGINT or SIGTERM stops the server gracefully: it stops accepting, ends the subscriptions
(clients reconnect to the next server), lets in-flight requests finish (at most
--shutdown-timeout), then closes the store: every acknowledged append is on disk.`,
		Example: `  annals serve
  annals serve --data /var/lib/annals --auth /etc/annals/auth.yaml --tls-cert cert.pem --tls-key key.pem
  annals serve --dev --log-format json`,
		Args: argsBetween(0, 0, "no arguments"),
		RunE: func(cmd *cobra.Command, args []string) error {
			return c.execute(cmd)
		},
	}
	c.flags(cmd.Flags())
	return cmd
}

// execute runs the steps of the command: parse, open, run, and close once open was called.
func (c *serveCommand) execute(cmd *cobra.Command) (err error) {
	if err := c.parse(cmd); err != nil {
		return err
	}
	defer func() {
		if cerr := c.close(); cerr != nil && err == nil {
			err = cerr
		}
	}()
	if err := c.open(cmd.Context()); err != nil {
		return err
	}
	return c.run(cmd.Context())
}

// parse reads the configuration (flags, environment, config file), checks it, fills in the
// defaults that depend on other settings, and logs it.
func (c *serveCommand) parse(cmd *cobra.Command) error {
	m, conf := c.m, &c.config
	if cmd.Flags().Changed("server") {
		return usageErrorf(cmd, "serve serves the --data directory; --server does not apply")
	}
	m.remote.server = "" // $ANNALS_SERVER is for the other commands
	blocks := map[string]*yaml.Node{relaysKey: nil, ingestsKey: nil}
	source, err := m.applyConfig(cmd, c.configPath, blocks)
	if err != nil {
		return err
	}
	configPath := c.configPath
	if configPath == "" {
		configPath = m.getenv("ANNALS_CONFIG")
	}
	if c.bridges, err = parseServeBridges(configPath, blocks[relaysKey], blocks[ingestsKey]); err != nil {
		return usageError{msg: err.Error(), err: err}
	}
	if c.log, err = newLogger(m.Stderr, conf.logFormat, conf.logLevel); err != nil {
		return err
	}
	switch {
	case (conf.tlsCert == "") != (conf.tlsKey == ""):
		return usageErrorf(cmd, "--tls-cert and --tls-key go together")
	case conf.dev && conf.tlsCert != "":
		return usageErrorf(cmd, "--dev makes its own certificate: leave out --tls-cert and --tls-key")
	case conf.tokenKey != "" && len(conf.tokenKey) < 32:
		return usageErrorf(cmd, "--token-key: want at least 32 bytes, got %d", len(conf.tokenKey))
	case conf.maxStreams == 0:
		return usageErrorf(cmd, "--max-streams: want at least 1")
	case conf.maxInFlight < 0:
		return usageErrorf(cmd, "--max-request-bytes-in-flight: want a positive number of bytes, or 0 for the default")
	}
	if conf.listen == "" {
		conf.listen = defaultListen(conf.authFile)
	}
	if conf.maxInFlight == 0 {
		conf.maxInFlight = defaultMaxInFlight(conf.maxRequest)
	}
	if m.dataDir == "" && (m.postgres.url == "" || conf.dev) {
		return usageError{msg: "empty --data directory (pass --data DIR)"}
	}

	attrs := []any{}
	for _, f := range configFlags(cmd) {
		v := f.Value.String()
		if slices.Contains(secretFlags, f.Name) && v != "" {
			v = "***"
		}
		attrs = append(attrs, slog.Group(f.Name, slog.String("value", v), slog.String("from", source[f.Name])))
	}
	attrs = append(attrs, slog.String("effective-listen", conf.listen))
	for _, p := range c.bridges.relays {
		attrs = append(attrs, slog.String("relay "+p.name, p.target))
	}
	for _, p := range c.bridges.ingests {
		attrs = append(attrs, slog.String("ingest "+p.name, p.target))
	}
	c.log.Info("configuration", attrs...)
	return nil
}

// open makes the TLS configuration, opens the store, the auth and the server over it, and
// binds the listener.
func (c *serveCommand) open(ctx context.Context) (err error) {
	m, conf := c.m, &c.config
	if c.tlsConf, err = c.tlsConfig(); err != nil {
		return err
	}
	if c.store, err = m.openStore(ctx, false); err != nil {
		return err
	}
	if conf.authFile != "" {
		opts, err := readAuthFile(conf.authFile)
		if err != nil {
			return err
		}
		opts.Store, opts.Logger, opts.TokenTTL = c.store, c.log, conf.tokenTTL
		if conf.tokenKey != "" {
			opts.SigningKey = []byte(conf.tokenKey)
		}
		if c.auth, err = server.NewAuth(opts); err != nil {
			return fmt.Errorf("%s: %w", conf.authFile, err)
		}
	}

	c.backend = "filestore"
	dataDir := m.dataDir
	switch {
	case m.postgres.url != "":
		c.backend, dataDir = "pgstore", ""
	case m.Open != nil:
		c.backend = "custom"
	}
	metrics := server.NewMetrics(&server.MetricsOptions{DataDir: dataDir})
	sopts := &server.Options{
		Logger:                  c.log,
		MaxRequestBytes:         conf.maxRequest,
		MaxRequestBytesInFlight: conf.maxInFlight,
		Interceptors:            []connect.Interceptor{metrics.Interceptor()},
		Backend:                 c.backend,
	}
	if c.auth != nil {
		sopts.Authorize = c.auth.Authorize
	}
	if !c.bridges.empty() {
		sopts.Bridges = c.bridges.statuses
	}
	c.srv = server.New(c.store, sopts)
	metrics.Watch(c.srv)

	raw, err := net.Listen("tcp", conf.listen)
	if err != nil {
		return fmt.Errorf("listen: %w", err)
	}
	c.ln = server.BufferedListener(raw)
	var protocols http.Protocols
	protocols.SetHTTP1(true)
	protocols.SetHTTP2(true)
	if c.tlsConf == nil {
		protocols.SetUnencryptedHTTP2(true) // gRPC without TLS
	}
	c.hs = &http.Server{
		Handler:           routes(c.srv, c.auth, metrics, &c.ready, c.log),
		Protocols:         &protocols,
		TLSConfig:         c.tlsConf,
		ReadHeaderTimeout: conf.timeouts.readHeader,
		ReadTimeout:       conf.timeouts.read,
		WriteTimeout:      conf.timeouts.write,
		IdleTimeout:       conf.timeouts.idle,
		MaxHeaderBytes:    conf.maxHeader,
		HTTP2: &http.HTTP2Config{
			MaxConcurrentStreams: int(conf.maxStreams),
			// A stream whose handler stops reading (a BatchAppend stream at its bound) holds
			// at most its own window of the connection's: with three streams' worth, it
			// cannot stall the other requests of its connection.
			MaxReceiveBufferPerStream:     1 << 20,
			MaxReceiveBufferPerConnection: 3 << 20,
			SendPingTimeout:               30 * time.Second,
			PingTimeout:                   15 * time.Second,
		},
		ErrorLog: slog.NewLogLogger(c.log.Handler(), slog.LevelWarn),
	}
	return nil
}

// run serves until ctx ends, then shuts down: /readyz turns 503, the listener closes, the
// subscriptions end, in-flight requests get the shutdown timeout to finish.
func (c *serveCommand) run(ctx context.Context) error {
	if !c.bridges.empty() {
		// The relays and ingests run over the server's store with the server's leases, so
		// that of several servers over one store, one runs each.
		c.bridges.start(ctx, c.store, c.srv.Leases(), c.log)
	}
	served := make(chan error, 1)
	c.serving = true
	go func() {
		if c.tlsConf != nil {
			served <- c.hs.ServeTLS(c.ln, "", "")
		} else {
			served <- c.hs.Serve(c.ln)
		}
	}()
	c.ready.Store(true)
	url := c.url()
	if c.auth == nil {
		host, _, _ := net.SplitHostPort(c.ln.Addr().String())
		if ip := net.ParseIP(host); ip != nil && ip.IsLoopback() {
			c.log.Warn("no authentication configured (--auth): listening on localhost only; pass --auth FILE to serve other machines", slog.String("url", url))
		} else {
			c.log.Warn("no authentication configured (--auth) and listening beyond localhost: anyone who reaches "+c.ln.Addr().String()+" can read and write every stream", slog.String("url", url))
		}
	}
	c.log.Info(servingLogMessage, slog.String("url", url), slog.String("data", c.m.dataDir), slog.String("backend", c.backend), slog.Bool("auth", c.auth != nil), slog.Bool("tls", c.tlsConf != nil))

	select {
	case err := <-served:
		c.bridges.stop()
		return fmt.Errorf("serve: %w", err)
	case <-ctx.Done():
	}
	if !c.bridges.empty() {
		c.log.Info("stopping the relays and ingests: checkpointing what the brokers acknowledged")
		c.bridges.stop()
	}
	timeout := c.config.timeouts.shutdown
	c.log.Info("shutting down: no new connections; ending subscriptions; waiting for in-flight requests", slog.Duration("timeout", timeout))
	c.ready.Store(false)
	sctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	shut := make(chan error, 1)
	go func() { shut <- c.hs.Shutdown(sctx) }()
	c.srv.Close()
	if err := <-shut; err != nil {
		c.log.Warn("in-flight requests did not finish in time: closing their connections", slog.Any("error", err))
		c.hs.Close()
	}
	<-served
	c.log.Info(shutdownLogMessage, slog.String("url", url))
	return nil
}

// url is the address the server serves, for the log.
func (c *serveCommand) url() string {
	scheme := "http"
	if c.tlsConf != nil {
		scheme = "https"
	}
	return scheme + "://" + c.ln.Addr().String()
}

// close closes the listener when run never served it (the http.Server closes it otherwise),
// then the store.
func (c *serveCommand) close() error {
	if c.ln != nil && !c.serving {
		c.ln.Close()
	}
	c.bridges.stop()
	if c.store == nil {
		return nil
	}
	if err := c.store.Close(); err != nil {
		return fmt.Errorf("close store: %w", err)
	}
	return nil
}

// routes returns the server's handler: the public routes (health, login, the console's own
// files) and, behind the auth middleware when auth is on, everything else: the API, SSE,
// JSON reads, status and metrics. Paths that match no route are behind it too, so that no
// endpoint added later slips past authentication.
func routes(srv *server.Server, auth *server.Auth, metrics *server.Metrics, ready *atomic.Bool, log *slog.Logger) http.Handler {
	api := http.NewServeMux()
	srv.Register(api)
	var metricsHandler http.Handler = metrics.Handler()
	if auth != nil {
		metricsHandler = auth.Require(server.OpMetrics, metricsHandler)
	}
	api.Handle("GET /metrics", metricsHandler)
	var protected http.Handler = api
	if auth != nil {
		protected = auth.Middleware(api)
	}

	mux := http.NewServeMux()
	for _, p := range []string{"/", "/" + annalsv1connect.EventStoreServiceName + "/", "/" + annalsv1connect.LeaseServiceName + "/", "/" + annalsv1connect.GroupServiceName + "/", "/v1/", "/metrics"} {
		mux.Handle(p, protected)
	}
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		io.WriteString(w, "ok\n")
	})
	var failing atomic.Bool // the last probe found the server not ready
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		if !ready.Load() {
			w.WriteHeader(http.StatusServiceUnavailable)
			io.WriteString(w, "shutting down\n")
			return
		}
		ctx, cancel := context.WithTimeout(r.Context(), 2*time.Second)
		defer cancel()
		if err := srv.Ready(ctx); err != nil {
			// Probes come every few seconds: log when the state changes, not on each one.
			if !failing.Swap(true) {
				log.Warn("readyz: not ready", "err", err)
			}
			w.WriteHeader(http.StatusServiceUnavailable)
			io.WriteString(w, "not ready\n")
			return
		}
		if failing.Swap(false) {
			log.Info("readyz: ready again")
		}
		io.WriteString(w, "ok\n")
	})
	if auth != nil {
		auth.Register(mux)
	}
	mountConsole(mux)
	return metrics.Middleware(deadlines(mux))
}

// mountConsole serves the web console, which is public: its page and files hold no data; the
// data comes from the API, with the token the console's login got.
func mountConsole(mux *http.ServeMux) {
	h := console.Handler(nil)
	mux.Handle("GET /{$}", h)
	mux.Handle("GET "+console.AssetPrefix, h)
}

// streamingProcedures are the RPCs that may run longer than the write timeout.
var streamingProcedures = []string{
	annalsv1connect.EventStoreServiceSubscribeProcedure,
	annalsv1connect.EventStoreServiceReadStreamProcedure,
	annalsv1connect.EventStoreServiceReadAllProcedure,
	annalsv1connect.EventStoreServiceListStreamsProcedure,
}

// deadlines lifts the http.Server's write timeout for subscriptions and streaming reads,
// which last as long as the client wants; over HTTP/1 it lifts their read timeout too, since
// Go's HTTP/1 server cancels a request whose connection passes its read deadline. The read
// timeout is lifted only once the request's body has been read whole (at once for a GET
// without a body), so that a client cannot hold a connection open for ever by sending its
// request slowly, or a body that nobody reads (a request refused by auth). A BatchAppend
// stream and a Consume stream of the GroupService, whose bodies last as long as the stream,
// have both lifted at once, over HTTP/2 too (Go's HTTP/2 server gives each stream the
// timeouts): the server bounds each of their sends itself (see [server.BatchSendTimeout] and
// [server.Options.ConsumeSendTimeout]), and HTTP/2 pings find dead connections.
func deadlines(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p := r.URL.Path
		sse := strings.HasPrefix(p, "/v1/sse/")
		switch {
		case p == annalsv1connect.EventStoreServiceBatchAppendProcedure, p == annalsv1connect.GroupServiceConsumeProcedure:
			rc := http.NewResponseController(w)
			_ = rc.SetWriteDeadline(time.Time{})
			_ = rc.SetReadDeadline(time.Time{})
		case sse || slices.Contains(streamingProcedures, p):
			rc := http.NewResponseController(w)
			_ = rc.SetWriteDeadline(time.Time{})
			if sse || r.ProtoMajor == 1 {
				lift := func() { _ = rc.SetReadDeadline(time.Time{}) }
				if r.ContentLength == 0 && len(r.TransferEncoding) == 0 {
					lift()
				} else {
					r.Body = &liftOnRead{ReadCloser: r.Body, left: r.ContentLength, lift: lift}
				}
			}
		}
		next.ServeHTTP(w, r)
	})
}

// liftOnRead calls lift once its body has been read whole: left bytes (-1: unknown, until EOF).
type liftOnRead struct {
	io.ReadCloser
	left int64
	lift func()
	done bool
}

func (b *liftOnRead) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	if b.left > 0 {
		b.left -= int64(n)
	}
	if !b.done && (b.left == 0 || err == io.EOF) {
		b.done = true
		b.lift()
	}
	return n, err
}
