package server

import (
	"context"
	"errors"
	"time"

	"github.com/annalsdb/annals/groups"
	"github.com/prometheus/client_golang/prometheus"
)

// The metrics of the consumer groups, read from the server's manager at each scrape (see
// [Metrics.Watch]). The per-group ones are labelled by group (at most groups.MaxGroups); the
// per-consumer ones by group and consumer name, the consumers of one name (replicas of one
// service) added up (at most groups.MaxGroups × groups.MaxConsumers series). The counters
// count since the group was loaded by this server (they restart with it) and, per consumer,
// since the consumers of that name now joined joined.
var (
	groupsDesc           = prometheus.NewDesc("annals_groups", "Consumer groups.", nil, nil)
	groupConsumeDesc     = prometheus.NewDesc("annals_group_consume_streams", "Consume streams of the GroupService open now.", nil, nil)
	groupConsumersDesc   = prometheus.NewDesc("annals_group_consumers", "Consumers joined to the group.", []string{"group"}, nil)
	groupInFlightDesc    = prometheus.NewDesc("annals_group_in_flight", "Events delivered by the group and not settled.", []string{"group"}, nil)
	groupLagDesc         = prometheus.NewDesc("annals_group_lag", "Positions ($all) or revisions (a stream) between the group's checkpoint and the end of what it follows.", []string{"group"}, nil)
	groupParkedDesc      = prometheus.NewDesc("annals_group_parked", "Events parked by the group and not replayed.", []string{"group"}, nil)
	groupBufferedDesc    = prometheus.NewDesc("annals_group_buffered", "Events read by the group and not yet delivered.", []string{"group"}, nil)
	groupDeliveredDesc   = prometheus.NewDesc("annals_group_delivered_total", "Deliveries of events by the group (redeliveries included).", []string{"group"}, nil)
	groupAckedDesc       = prometheus.NewDesc("annals_group_acked_total", "Events acked to the group.", []string{"group"}, nil)
	groupRetriesDesc     = prometheus.NewDesc("annals_group_retries_total", "Retries of the group's events (nacks with retry, and message timeouts).", []string{"group"}, nil)
	groupParkedTotalDesc = prometheus.NewDesc("annals_group_parked_total", "Events the group parked.", []string{"group"}, nil)
	groupSkippedDesc     = prometheus.NewDesc("annals_group_skipped_total", "Events skipped by a nack of the group's consumers.", []string{"group"}, nil)
	consumerInFlightDesc = prometheus.NewDesc("annals_group_consumer_in_flight", "Events delivered to the group's consumers of this name and not settled.", []string{"group", "consumer"}, nil)
	consumerDelivDesc    = prometheus.NewDesc("annals_group_consumer_delivered_total", "Events delivered to the group's consumers of this name since they joined.", []string{"group", "consumer"}, nil)
	consumerAckedDesc    = prometheus.NewDesc("annals_group_consumer_acked_total", "Events acked by the group's consumers of this name since they joined.", []string{"group", "consumer"}, nil)
)

type groupsCollector struct {
	s *Server
}

func (c *groupsCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{groupsDesc, groupConsumeDesc, groupConsumersDesc, groupInFlightDesc, groupLagDesc, groupParkedDesc,
		groupBufferedDesc, groupDeliveredDesc, groupAckedDesc, groupRetriesDesc, groupParkedTotalDesc, groupSkippedDesc,
		consumerInFlightDesc, consumerDelivDesc, consumerAckedDesc} {
		ch <- d
	}
}

func (c *groupsCollector) Collect(ch chan<- prometheus.Metric) {
	ch <- prometheus.MustNewConstMetric(groupConsumeDesc, prometheus.GaugeValue, float64(c.s.consumeStreams.Load()))
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	m, err := c.s.groupManager(ctx)
	if errors.Is(err, errNoGroups) || errors.Is(err, ErrShuttingDown) {
		return
	}
	var list []groups.Info
	if err == nil {
		list, err = m.List(ctx)
	}
	if err != nil {
		ch <- prometheus.NewInvalidMetric(groupsDesc, err)
		return
	}
	ch <- prometheus.MustNewConstMetric(groupsDesc, prometheus.GaugeValue, float64(len(list)))
	gauge := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...)
	}
	counter := func(d *prometheus.Desc, v uint64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(v), labels...)
	}
	for _, g := range list {
		gauge(groupConsumersDesc, float64(len(g.Consumers)), g.Name)
		gauge(groupInFlightDesc, float64(g.InFlight), g.Name)
		gauge(groupLagDesc, float64(g.Lag), g.Name)
		gauge(groupParkedDesc, float64(g.Parked), g.Name)
		gauge(groupBufferedDesc, float64(g.Buffered), g.Name)
		counter(groupDeliveredDesc, g.Delivered, g.Name)
		counter(groupAckedDesc, g.Acked, g.Name)
		counter(groupRetriesDesc, g.Retries, g.Name)
		counter(groupParkedTotalDesc, g.ParkedTotal, g.Name)
		counter(groupSkippedDesc, g.Skipped, g.Name)
		type sums struct {
			inFlight         int
			delivered, acked uint64
		}
		byName := make(map[string]*sums)
		var names []string
		for _, cn := range g.Consumers {
			sm, ok := byName[cn.Name]
			if !ok {
				sm = new(sums)
				byName[cn.Name] = sm
				names = append(names, cn.Name)
			}
			sm.inFlight += cn.InFlight
			sm.delivered += cn.Delivered
			sm.acked += cn.Acked
		}
		for _, name := range names {
			sm := byName[name]
			gauge(consumerInFlightDesc, float64(sm.inFlight), g.Name, name)
			counter(consumerDelivDesc, sm.delivered, g.Name, name)
			counter(consumerAckedDesc, sm.acked, g.Name, name)
		}
	}
}
