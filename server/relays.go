package server

import (
	"cmp"
	"net/http"
	"slices"

	"github.com/annalsdb/annals/ingest"
	"github.com/annalsdb/annals/relay"
	"github.com/prometheus/client_golang/prometheus"
)

// relaysRoute lists the relays and ingests that run in the server's process, as plain JSON,
// for the console, curl and scripts.
const relaysRoute = "GET /v1/relays"

// BridgeStatuses are the statuses of the relays (package relay) and ingests (package ingest)
// that run beside a server: what [Options.Bridges] returns.
type BridgeStatuses struct {
	Relays  []relay.Status
	Ingests []ingest.Status
}

// RelayList is the JSON answer of GET /v1/relays.
type RelayList struct {
	// Configured reports whether the server has [Options.Bridges].
	Configured bool `json:"configured"`
	// Relays and Ingests are their statuses, by name.
	Relays  []relay.Status  `json:"relays"`
	Ingests []ingest.Status `json:"ingests"`
}

// serveRelays answers GET /v1/relays. It is [OpRead] of the global log: a relay follows $all,
// and its figures are positions of the log.
func (s *Server) serveRelays(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	if err := checkQuery(r.URL.Query()); err != nil {
		s.writeHTTPError(w, r, relaysRoute, err)
		return
	}
	if err := s.authorize(ctx, Access{Op: OpRead, Procedure: relaysRoute}); err != nil {
		s.writeHTTPError(w, r, relaysRoute, err)
		return
	}
	out := RelayList{Relays: []relay.Status{}, Ingests: []ingest.Status{}}
	if s.opts.Bridges != nil {
		b := sortedBridges(s.opts.Bridges())
		out.Configured = true
		out.Relays = append(out.Relays, b.Relays...)
		out.Ingests = append(out.Ingests, b.Ingests...)
	}
	writeJSON(w, out)
}

// sortedBridges returns b with its relays and ingests sorted by name.
func sortedBridges(b BridgeStatuses) BridgeStatuses {
	b.Relays = slices.Clone(b.Relays)
	b.Ingests = slices.Clone(b.Ingests)
	slices.SortFunc(b.Relays, func(x, y relay.Status) int { return cmp.Compare(x.Name, y.Name) })
	slices.SortFunc(b.Ingests, func(x, y ingest.Status) int { return cmp.Compare(x.Name, y.Name) })
	return b
}

// The metrics of the relays and ingests, read from their statuses at each scrape and
// labelled by name. The counters count since the process started.
var (
	relayCheckpointDesc = prometheus.NewDesc("annals_relay_checkpoint_position", "Position of the last event the relay's broker acknowledged and its checkpoint holds.", []string{"name"}, nil)
	relayHeadDesc       = prometheus.NewDesc("annals_relay_head_position", "Position of the last event of the log the relay knows of.", []string{"name"}, nil)
	relayLagDesc        = prometheus.NewDesc("annals_relay_lag_events", "Positions between the last event the broker acknowledged and the head of the log.", []string{"name"}, nil)
	relayLagSecondsDesc = prometheus.NewDesc("annals_relay_lag_seconds", "Age of the oldest event not yet acknowledged by the broker (0 when none waits).", []string{"name"}, nil)
	relayPublishedDesc  = prometheus.NewDesc("annals_relay_published_total", "Events the broker acknowledged (published again after a restart included).", []string{"name"}, nil)
	relayErrorsDesc     = prometheus.NewDesc("annals_relay_errors_total", "Publish errors.", []string{"name"}, nil)
	relayInFlightDesc   = prometheus.NewDesc("annals_relay_in_flight", "Events published and waiting for the broker's acknowledgement.", []string{"name"}, nil)
	relayRunningDesc    = prometheus.NewDesc("annals_relay_running", "1 while this process publishes for the relay (it holds its lease), else 0.", []string{"name"}, nil)
	ingestAppendedDesc  = prometheus.NewDesc("annals_ingest_appended_total", "Events the ingest appended.", []string{"name"}, nil)
	ingestDupsDesc      = prometheus.NewDesc("annals_ingest_duplicates_total", "Messages the ingest recognised as already appended.", []string{"name"}, nil)
	ingestErrorsDesc    = prometheus.NewDesc("annals_ingest_errors_total", "Batches the ingest failed to append or commit.", []string{"name"}, nil)
	ingestRunningDesc   = prometheus.NewDesc("annals_ingest_running", "1 while this process ingests (it holds the ingest's lease), else 0.", []string{"name"}, nil)
)

// NewBridgesCollector returns a Prometheus collector of the relays' and ingests' figures,
// which calls statuses at each scrape: annals_relay_checkpoint_position,
// annals_relay_head_position, annals_relay_lag_events, annals_relay_lag_seconds,
// annals_relay_published_total, annals_relay_errors_total, annals_relay_in_flight,
// annals_relay_running, annals_ingest_appended_total, annals_ingest_duplicates_total,
// annals_ingest_errors_total and annals_ingest_running, each labelled by name.
// [Metrics.Watch] registers one over [Options.Bridges]; a process that runs relays without a
// server (annals relay --metrics-listen) registers its own. statuses must be safe for
// concurrent use.
func NewBridgesCollector(statuses func() BridgeStatuses) prometheus.Collector {
	return &bridgesCollector{statuses: statuses}
}

type bridgesCollector struct {
	statuses func() BridgeStatuses
}

func (c *bridgesCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{relayCheckpointDesc, relayHeadDesc, relayLagDesc, relayLagSecondsDesc, relayPublishedDesc,
		relayErrorsDesc, relayInFlightDesc, relayRunningDesc, ingestAppendedDesc, ingestDupsDesc, ingestErrorsDesc, ingestRunningDesc} {
		ch <- d
	}
}

func (c *bridgesCollector) Collect(ch chan<- prometheus.Metric) {
	if c.statuses == nil {
		return
	}
	b := c.statuses()
	gauge := func(d *prometheus.Desc, v float64, name string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, name)
	}
	counter := func(d *prometheus.Desc, v uint64, name string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(v), name)
	}
	running := func(state string) float64 {
		if state == "running" {
			return 1
		}
		return 0
	}
	for _, r := range b.Relays {
		gauge(relayCheckpointDesc, float64(r.Checkpoint), r.Name)
		gauge(relayHeadDesc, float64(r.Head), r.Name)
		gauge(relayLagDesc, float64(r.Lag), r.Name)
		gauge(relayLagSecondsDesc, r.LagSeconds, r.Name)
		counter(relayPublishedDesc, r.Published, r.Name)
		counter(relayErrorsDesc, r.Errors, r.Name)
		gauge(relayInFlightDesc, float64(r.InFlight), r.Name)
		gauge(relayRunningDesc, running(r.State), r.Name)
	}
	for _, in := range b.Ingests {
		counter(ingestAppendedDesc, in.Appended, in.Name)
		counter(ingestDupsDesc, in.Duplicates, in.Name)
		counter(ingestErrorsDesc, in.Errors, in.Name)
		gauge(ingestRunningDesc, running(in.State), in.Name)
	}
}
