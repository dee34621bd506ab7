package server

import (
	"context"
	"io/fs"
	"net/http"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"connectrpc.com/connect"
	"github.com/annalsdb/annals"
	annalsv1 "github.com/annalsdb/annals/internal/gen/annals/v1"
	"github.com/annalsdb/annals/internal/gen/annals/v1/annalsv1connect"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"google.golang.org/protobuf/reflect/protoreflect"
)

// MetricsOptions configure [NewMetrics]. A nil *MetricsOptions means all defaults.
type MetricsOptions struct {
	// DataDir, when set, is the store's directory, whose size annals_storage_bytes reports.
	DataDir string
}

// Metrics collects the server's Prometheus metrics in a registry of its own (with the Go
// runtime's and the process's collectors):
//
//   - annals_appends_total{code}, annals_appended_events_total, annals_appended_bytes_total
//     (data and metadata of the events of successful appends), annals_append_duration_seconds
//     (histogram, every append): Append, each append of a BatchAppend stream (timed from its
//     message's arrival to the send of its result) and JSON appends (POST /v1/streams/{stream});
//   - annals_rpcs_total{procedure,code}, annals_rpc_duration_seconds{procedure} (unary RPCs;
//     for streams, until the stream ends);
//   - annals_reads_total{kind,api} (kind stream or all; api grpc or json);
//   - annals_http_requests_total{route,code}, annals_http_in_flight_requests;
//   - with [Metrics.Watch], from [Server.Stats] at each scrape: annals_read_events_total
//     (the events sent by reads, ReadStream, ReadAll and the JSON read routes: [Counts]
//     EventsRead), annals_head_position,
//     annals_subscriptions (running, every kind), annals_subscription_lag_events and
//     annals_subscription_lag_seconds (the largest lag among the listed subscriptions, as
//     [SubscriptionStatus] defines it), annals_batch_append_streams (BatchAppend streams
//     open now), annals_request_bytes_in_flight (the bytes of request bodies held now, under
//     [Options.MaxRequestBytesInFlight]), annals_subscriptions_attached and
//     annals_subscription_fallbacks_total ([HubStatus]: the subscriptions of $all that deliver
//     from the hub's ring now, and the times one fell behind it and read from storage);
//   - with [Metrics.Watch], from the server's lease keeper ([Server.Leases]) at each scrape:
//     annals_leases (the leases held now), annals_lease_holder{name,holder} (1 for each lease
//     held now, at most [MaxListedLeases] of them: which replica holds what), and the
//     counters annals_lease_acquisitions_total (new fencing tokens this server handed out)
//     and annals_lease_takeovers_total (acquisitions of a name whose last holder, as this
//     server saw it, was another one that did not release it: it ran out);
//   - with [Metrics.Watch], from the server's consumer groups at each scrape (groups_metrics.go):
//     annals_groups, annals_group_consume_streams, and by group annals_group_consumers,
//     annals_group_in_flight, annals_group_lag, annals_group_parked, annals_group_buffered,
//     annals_group_delivered_total, annals_group_acked_total, annals_group_retries_total,
//     annals_group_parked_total, annals_group_skipped_total; by group and consumer name
//     annals_group_consumer_in_flight, annals_group_consumer_delivered_total and
//     annals_group_consumer_acked_total;
//   - with [Metrics.Watch], from [Options.Bridges] at each scrape ([NewBridgesCollector]), by
//     relay or ingest name: annals_relay_checkpoint_position, annals_relay_head_position,
//     annals_relay_lag_events, annals_relay_lag_seconds, annals_relay_published_total,
//     annals_relay_errors_total, annals_relay_in_flight, annals_relay_running,
//     annals_ingest_appended_total, annals_ingest_duplicates_total,
//     annals_ingest_errors_total, annals_ingest_running;
//   - with [MetricsOptions.DataDir]: annals_storage_bytes.
//
// Feed it with [Metrics.Interceptor] (in [Options.Interceptors]) and [Metrics.Middleware]
// (around the server's routes); serve it with [Metrics.Handler]. Its methods are safe for
// concurrent use.
type Metrics struct {
	reg *prometheus.Registry

	appends       *prometheus.CounterVec
	appendEvents  prometheus.Counter
	appendBytes   prometheus.Counter
	appendLatency prometheus.Histogram
	rpcs          *prometheus.CounterVec
	rpcLatency    *prometheus.HistogramVec
	reads         *prometheus.CounterVec
	httpRequests  *prometheus.CounterVec
	inFlight      prometheus.Gauge
}

// NewMetrics returns metrics in a new registry.
func NewMetrics(opts *MetricsOptions) *Metrics {
	var o MetricsOptions
	if opts != nil {
		o = *opts
	}
	m := &Metrics{reg: prometheus.NewRegistry()}
	f := func(c prometheus.Collector) { m.reg.MustRegister(c) }
	m.appends = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "annals_appends_total", Help: "Appends, by result code (ok or the error's code)."}, []string{"code"})
	m.appendEvents = prometheus.NewCounter(prometheus.CounterOpts{Name: "annals_appended_events_total", Help: "Events written by successful appends."})
	m.appendBytes = prometheus.NewCounter(prometheus.CounterOpts{Name: "annals_appended_bytes_total", Help: "Bytes of data and metadata of the events written by successful appends."})
	m.appendLatency = prometheus.NewHistogram(prometheus.HistogramOpts{
		Name: "annals_append_duration_seconds", Help: "Time to answer an append (durable when it succeeds).",
		Buckets: []float64{.0005, .001, .002, .005, .01, .02, .05, .1, .2, .5, 1, 2, 5},
	})
	m.rpcs = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "annals_rpcs_total", Help: "RPCs of the EventStoreService and the LeaseService, by procedure and result code."}, []string{"procedure", "code"})
	m.rpcLatency = prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "annals_rpc_duration_seconds", Help: "Duration of RPCs (streams: until they end).", Buckets: prometheus.DefBuckets}, []string{"procedure"})
	m.reads = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "annals_reads_total", Help: "Reads, by kind (stream or all) and API (grpc: ReadStream and ReadAll; json: the GET routes)."}, []string{"kind", "api"})
	m.httpRequests = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "annals_http_requests_total", Help: "HTTP requests, by route and status."}, []string{"route", "code"})
	m.inFlight = prometheus.NewGauge(prometheus.GaugeOpts{Name: "annals_http_in_flight_requests", Help: "HTTP requests being served now (subscriptions included)."})
	for _, c := range []prometheus.Collector{m.appends, m.appendEvents, m.appendBytes, m.appendLatency, m.rpcs, m.rpcLatency, m.reads, m.httpRequests, m.inFlight,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{})} {
		f(c)
	}
	m.appends.WithLabelValues("ok")
	if o.DataDir != "" {
		dir := o.DataDir
		f(prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "annals_storage_bytes", Help: "Size of the files in the data directory."}, func() float64 {
			return float64(dirSize(dir))
		}))
	}
	return m
}

// dirSize is the total size of the regular files under dir (what it can read of them).
func dirSize(dir string) int64 {
	var n int64
	_ = filepath.WalkDir(dir, func(_ string, d fs.DirEntry, err error) error {
		if err == nil && d.Type().IsRegular() {
			if fi, err := d.Info(); err == nil {
				n += fi.Size()
			}
		}
		return nil
	})
	return n
}

// Registry returns the registry the metrics are in, to add more.
func (m *Metrics) Registry() *prometheus.Registry { return m.reg }

// Handler serves the metrics in the Prometheus text format.
func (m *Metrics) Handler() http.Handler {
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{Registry: m.reg})
}

// Watch adds the gauges read from s at every scrape: the head of the log, the running
// subscriptions, their lag, and the request bytes in flight. Call it once.
func (m *Metrics) Watch(s *Server) {
	bridges := func() BridgeStatuses {
		if s.opts.Bridges == nil {
			return BridgeStatuses{}
		}
		return s.opts.Bridges()
	}
	m.reg.MustRegister(&serverCollector{m: m, s: s}, &groupsCollector{s: s}, NewBridgesCollector(bridges))
}

var (
	readEventsDesc = prometheus.NewDesc("annals_read_events_total", "Events sent by reads: ReadStream, ReadAll and the JSON read routes.", nil, nil)
	headDesc       = prometheus.NewDesc("annals_head_position", "Position of the last event of the log.", nil, nil)
	subsDesc       = prometheus.NewDesc("annals_subscriptions", "Running subscriptions (gRPC/Connect and SSE).", nil, nil)
	lagDesc        = prometheus.NewDesc("annals_subscription_lag_events", "The largest lag, in events, of the running subscriptions (the oldest listed by Stats).", nil, nil)
	lagSecondsDesc = prometheus.NewDesc("annals_subscription_lag_seconds", "The largest lag, in seconds, of the running subscriptions (the oldest listed by Stats).", nil, nil)
	batchesDesc    = prometheus.NewDesc("annals_batch_append_streams", "BatchAppend streams open now.", nil, nil)
	attachedDesc   = prometheus.NewDesc("annals_subscriptions_attached", "Subscriptions of $all that deliver from the server's ring of recent events now.", nil, nil)
	fallbacksDesc  = prometheus.NewDesc("annals_subscription_fallbacks_total", "Times a subscription of $all fell behind the server's ring of recent events and read from storage.", nil, nil)
	inFlightDesc   = prometheus.NewDesc("annals_request_bytes_in_flight", "Bytes of request bodies held by the requests being served (bounded by max-request-bytes-in-flight).", nil, nil)
	leasesDesc     = prometheus.NewDesc("annals_leases", "Leases held now (not expired).", nil, nil)
	holderDesc     = prometheus.NewDesc("annals_lease_holder", "1 for each lease held now, by lease name and holder (at most 1000 leases).", []string{"name", "holder"}, nil)
	acquiredDesc   = prometheus.NewDesc("annals_lease_acquisitions_total", "Lease acquisitions (new fencing tokens) this server handed out.", nil, nil)
	takeoverDesc   = prometheus.NewDesc("annals_lease_takeovers_total", "Lease acquisitions of a name whose last holder, as this server saw it, was another that did not release it.", nil, nil)
)

type serverCollector struct {
	m *Metrics
	s *Server
}

func (c *serverCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- readEventsDesc
	ch <- headDesc
	ch <- subsDesc
	ch <- lagDesc
	ch <- lagSecondsDesc
	ch <- batchesDesc
	ch <- attachedDesc
	ch <- fallbacksDesc
	ch <- inFlightDesc
	ch <- leasesDesc
	ch <- holderDesc
	ch <- acquiredDesc
	ch <- takeoverDesc
}

func (c *serverCollector) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	ch <- prometheus.MustNewConstMetric(readEventsDesc, prometheus.CounterValue, float64(c.s.stats.totals[cEventsRead].Load()))
	c.collectLeases(ctx, ch)
	st, err := c.s.Stats(ctx)
	if err != nil {
		ch <- prometheus.NewInvalidMetric(headDesc, err)
		return
	}
	var lag uint64
	var lagSeconds float64
	for _, sub := range st.Subscriptions {
		lag = max(lag, sub.LagEvents)
		lagSeconds = max(lagSeconds, sub.LagSeconds)
	}
	ch <- prometheus.MustNewConstMetric(headDesc, prometheus.GaugeValue, float64(st.HeadPosition))
	ch <- prometheus.MustNewConstMetric(subsDesc, prometheus.GaugeValue, float64(st.SubscriptionCount))
	ch <- prometheus.MustNewConstMetric(lagDesc, prometheus.GaugeValue, float64(lag))
	ch <- prometheus.MustNewConstMetric(lagSecondsDesc, prometheus.GaugeValue, lagSeconds)
	ch <- prometheus.MustNewConstMetric(batchesDesc, prometheus.GaugeValue, float64(c.s.batchStreams.Load()))
	ch <- prometheus.MustNewConstMetric(attachedDesc, prometheus.GaugeValue, float64(st.Hub.Attached))
	ch <- prometheus.MustNewConstMetric(fallbacksDesc, prometheus.CounterValue, float64(st.Hub.Fallbacks))
	ch <- prometheus.MustNewConstMetric(inFlightDesc, prometheus.GaugeValue, float64(st.RequestBytesInFlight))
}

// collectLeases reports the leases held now and the server's counts of acquisitions.
func (c *serverCollector) collectLeases(ctx context.Context, ch chan<- prometheus.Metric) {
	ch <- prometheus.MustNewConstMetric(acquiredDesc, prometheus.CounterValue, float64(c.s.leaseStats.acquisitions.Load()))
	ch <- prometheus.MustNewConstMetric(takeoverDesc, prometheus.CounterValue, float64(c.s.leaseStats.takeovers.Load()))
	ls, err := c.s.leases.Leases(ctx, "")
	if err != nil {
		ch <- prometheus.NewInvalidMetric(leasesDesc, err)
		return
	}
	ch <- prometheus.MustNewConstMetric(leasesDesc, prometheus.GaugeValue, float64(len(ls)))
	for _, l := range ls[:min(len(ls), MaxListedLeases)] {
		ch <- prometheus.MustNewConstMetric(holderDesc, prometheus.GaugeValue, 1, l.Name, l.Holder)
	}
}

// codeLabel is "ok" for nil, else the error's Connect code.
func codeLabel(err error) string {
	if err == nil {
		return "ok"
	}
	return connect.CodeOf(err).String()
}

// countAppend counts an append with the result code (see codeLabel) that took d seconds: of
// events events and n bytes of data and metadata, counted when it succeeded.
func (m *Metrics) countAppend(code string, events, n int, d float64) {
	m.appends.WithLabelValues(code).Inc()
	m.appendLatency.Observe(d)
	if code == "ok" {
		m.appendEvents.Add(float64(events))
		m.appendBytes.Add(float64(n))
	}
}

// appendNote is how a JSON append (POST /v1/streams/{stream}) tells [Metrics.Middleware]
// what it did, so that it is counted with the RPC appends.
type appendNote struct {
	code      string // "" until the append was tried
	events, n int
}

type appendNoteKey struct{}

// noteAppend records the outcome of a JSON append in ctx's appendNote, if any.
func noteAppend(ctx context.Context, err error, events []annals.Event) {
	note, ok := ctx.Value(appendNoteKey{}).(*appendNote)
	if !ok {
		return
	}
	note.code, note.events = "ok", len(events)
	if err != nil {
		note.code = lookup(err).code.String()
	}
	for i := range events {
		note.n += len(events[i].Data) + len(events[i].Metadata)
	}
}

// Interceptor returns the Connect interceptor that counts and times the RPCs, appends and
// reads.
func (m *Metrics) Interceptor() connect.Interceptor { return metricsInterceptor{m} }

type metricsInterceptor struct{ m *Metrics }

func (i metricsInterceptor) WrapUnary(next connect.UnaryFunc) connect.UnaryFunc {
	return func(ctx context.Context, req connect.AnyRequest) (connect.AnyResponse, error) {
		start := time.Now()
		res, err := next(ctx, req)
		d := time.Since(start).Seconds()
		proc := req.Spec().Procedure
		i.m.rpcs.WithLabelValues(proc, codeLabel(err)).Inc()
		i.m.rpcLatency.WithLabelValues(proc).Observe(d)
		if proc == annalsv1connect.EventStoreServiceAppendProcedure {
			a, _ := req.Any().(*annalsv1.AppendRequest)
			events, n := appendSize(a)
			i.m.countAppend(codeLabel(err), events, n, d)
		}
		return res, err
	}
}

// appendSize returns the number of events of a and the bytes of their data and metadata
// (0, 0 for nil).
func appendSize(a *annalsv1.AppendRequest) (events, n int) {
	if a == nil {
		return 0, 0
	}
	for _, e := range a.Events {
		n += len(e.Data) + len(e.Metadata)
	}
	return len(a.Events), n
}

func (i metricsInterceptor) WrapStreamingClient(next connect.StreamingClientFunc) connect.StreamingClientFunc {
	return next
}

func (i metricsInterceptor) WrapStreamingHandler(next connect.StreamingHandlerFunc) connect.StreamingHandlerFunc {
	return func(ctx context.Context, conn connect.StreamingHandlerConn) error {
		start := time.Now()
		proc := conn.Spec().Procedure
		mc := &metricsConn{StreamingHandlerConn: conn, m: i.m}
		switch proc {
		case annalsv1connect.EventStoreServiceReadStreamProcedure:
			i.m.reads.WithLabelValues("stream", "grpc").Inc()
		case annalsv1connect.EventStoreServiceReadAllProcedure:
			i.m.reads.WithLabelValues("all", "grpc").Inc()
		case annalsv1connect.EventStoreServiceBatchAppendProcedure:
			mc.pending = make(map[uint64]pendingAppend)
		}
		err := next(ctx, mc)
		i.m.rpcs.WithLabelValues(proc, codeLabel(err)).Inc()
		i.m.rpcLatency.WithLabelValues(proc).Observe(time.Since(start).Seconds())
		return err
	}
}

// metricsConn counts the appends of a BatchAppend stream.
type metricsConn struct {
	connect.StreamingHandlerConn
	m *Metrics
	// pending holds the appends of a BatchAppend stream received and not yet answered, by
	// id (as many as the server holds in flight, and one message more).
	mu      sync.Mutex
	pending map[uint64]pendingAppend
}

// pendingAppend is an append of a BatchAppend stream waiting for its result: its counts,
// not its request, which the server drops once the append returns.
type pendingAppend struct {
	start     time.Time
	events, n int
}

func (c *metricsConn) Receive(msg any) error {
	err := c.StreamingHandlerConn.Receive(msg)
	if m, ok := msg.(*annalsv1.BatchAppendRequest); ok && err == nil {
		now := time.Now()
		c.mu.Lock()
		for _, a := range m.Appends {
			events, n := appendSize(a.Append)
			c.pending[a.Id] = pendingAppend{start: now, events: events, n: n}
		}
		c.mu.Unlock()
	}
	return err
}

func (c *metricsConn) Send(msg any) error {
	if r, ok := msg.(*annalsv1.BatchAppendResponse); ok {
		c.countResults(r.Results)
	}
	return c.StreamingHandlerConn.Send(msg)
}

// countResults counts the appends of a BatchAppend stream that results answer.
func (c *metricsConn) countResults(results []*annalsv1.BatchAppendResult) {
	now := time.Now()
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, r := range results {
		p, ok := c.pending[r.Id]
		if !ok {
			continue
		}
		delete(c.pending, r.Id)
		code := "ok"
		if st := r.GetError(); st != nil {
			code = connect.Code(st.Code).String()
		}
		c.m.countAppend(code, p.events, p.n, now.Sub(p.start).Seconds())
	}
}

// routeOf names the route of a request for the labels of annals_http_requests_total, from a
// fixed set (so that a client cannot make up labels).
func routeOf(r *http.Request) string {
	p := r.URL.Path
	switch {
	case strings.HasPrefix(p, "/"+annalsv1connect.EventStoreServiceName+"/"):
		name := strings.TrimPrefix(p, "/"+annalsv1connect.EventStoreServiceName+"/")
		if annalsv1.File_annals_v1_annals_proto.Services().ByName("EventStoreService").Methods().ByName(protoreflect.Name(name)) != nil {
			return name
		}
		return "unknown_method"
	case strings.HasPrefix(p, "/"+annalsv1connect.LeaseServiceName+"/"):
		name := strings.TrimPrefix(p, "/"+annalsv1connect.LeaseServiceName+"/")
		if annalsv1.File_annals_v1_annals_proto.Services().ByName("LeaseService").Methods().ByName(protoreflect.Name(name)) != nil {
			return "lease_" + name
		}
		return "unknown_method"
	case strings.HasPrefix(p, "/"+annalsv1connect.GroupServiceName+"/"):
		name := strings.TrimPrefix(p, "/"+annalsv1connect.GroupServiceName+"/")
		if annalsv1.File_annals_v1_annals_proto.Services().ByName("GroupService").Methods().ByName(protoreflect.Name(name)) != nil {
			return "group_" + name
		}
		return "unknown_method"
	case strings.HasPrefix(p, "/v1/sse/streams/"):
		return "sse_stream"
	case p == "/v1/sse/all":
		return "sse_all"
	case strings.HasPrefix(p, "/v1/streams/") && r.Method == http.MethodPost:
		return "json_append"
	case strings.HasPrefix(p, "/v1/streams/"):
		return "json_stream"
	case p == "/v1/all":
		return "json_all"
	case p == "/v1/streams":
		return "json_list"
	case p == "/v1/login", p == "/v1/stats", p == "/v1/projections", p == "/v1/leases", p == "/v1/groups", p == "/v1/relays":
		return strings.TrimPrefix(p, "/v1/")
	case p == "/metrics", p == "/healthz", p == "/readyz":
		return strings.TrimPrefix(p, "/")
	case strings.HasPrefix(p, "/v1/"):
		return "v1_other"
	case p == "/", strings.HasPrefix(p, "/console/"):
		return "console"
	}
	return "other"
}

// Middleware returns a handler that counts the requests to next by route and status.
func (m *Metrics) Middleware(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		m.inFlight.Inc()
		defer m.inFlight.Dec()
		route := routeOf(r)
		rw := &statusWriter{ResponseWriter: w}
		switch route {
		case "json_stream":
			m.reads.WithLabelValues("stream", "json").Inc()
		case "json_all":
			m.reads.WithLabelValues("all", "json").Inc()
		case "json_append":
			note, start := new(appendNote), time.Now()
			r = r.WithContext(context.WithValue(r.Context(), appendNoteKey{}, note))
			defer func() {
				if note.code != "" {
					m.countAppend(note.code, note.events, note.n, time.Since(start).Seconds())
				}
			}()
		}
		next.ServeHTTP(rw, r)
		status := rw.status
		if status == 0 {
			status = http.StatusOK
		}
		m.httpRequests.WithLabelValues(route, strconv.Itoa(status)).Inc()
	})
}

// statusWriter records the status of a response.
type statusWriter struct {
	http.ResponseWriter
	status int
}

func (w *statusWriter) WriteHeader(code int) {
	if w.status == 0 {
		w.status = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Write(b []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	return w.ResponseWriter.Write(b)
}

// Unwrap lets http.ResponseController reach the connection's Flush and deadlines.
func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// Flush flushes the response, for handlers that use http.Flusher directly.
func (w *statusWriter) Flush() {
	_ = http.NewResponseController(w.ResponseWriter).Flush()
}
