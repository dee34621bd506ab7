package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/annalsdb/annals"
	"github.com/annalsdb/annals/bridge"
	"github.com/annalsdb/annals/ingest"
	"github.com/annalsdb/annals/kafkabus"
	"github.com/annalsdb/annals/natsbus"
	"github.com/annalsdb/annals/supervisor"
	"github.com/spf13/pflag"
)

// ingestSpec is the configuration of one ingest: the flags of "annals ingest", the keys of
// its --config file and of an item of "annals serve"'s ingests: list ([ingestSettings]).
type ingestSpec struct {
	name           string
	kafka          []string
	topics         []string
	group          string
	nats           string
	natsStream     string
	filterSubjects []string
	stream         string
	eventType      string
	batch          int
	holder         string
	leaseTTL       time.Duration
}

// ingestSettings are the names of an ingest's settings.
var ingestSettings = []string{"name", "kafka", "topic", "group", "nats", "nats-stream", "filter-subject",
	"stream", "type", "batch", "holder", "lease-ttl"}

// Defaults of an ingest's settings.
const (
	defaultIngestStream      = "{stream}"
	defaultIngestGroupPrefix = "annals-ingest-"
)

// register defines the flags of the spec on fs.
func (s *ingestSpec) register(fs *pflag.FlagSet) {
	fs.StringVar(&s.name, "name", "", "the ingest's name (required): its progress and its lease (ingest/NAME) are kept in the store under it")
	fs.StringSliceVar(&s.kafka, "kafka", nil, "consume from the Kafka cluster with these seed brokers (host:port, comma-separated)")
	fs.StringSliceVar(&s.topics, "topic", nil, "with --kafka: the topics to consume (repeatable, or comma-separated)")
	fs.StringVar(&s.group, "group", "", "with --kafka: the consumer group whose offsets are committed (default "+defaultIngestGroupPrefix+"NAME)")
	fs.StringVar(&s.nats, "nats", "", "consume from NATS JetStream at this URL (nats://host:4222)")
	fs.StringVar(&s.natsStream, "nats-stream", "", "with --nats: the JetStream stream to consume (required; it must exist)")
	fs.StringSliceVar(&s.filterSubjects, "filter-subject", nil, "with --nats: consume only these subjects of the stream (repeatable; wildcards allowed)")
	fs.StringVar(&s.stream, "stream", defaultIngestStream, "the stream each message is appended to: a template of {stream} (the annals-stream header or CloudEvents subject), {subject} (topic or NATS subject), {key} (Kafka key), {type}, {category}")
	fs.StringVar(&s.eventType, "type", "", "the event type of a message that names none (no annals-type header, not a CloudEvent); without it such a message stops the ingest")
	fs.IntVar(&s.batch, "batch", 0, fmt.Sprintf("the most messages appended between two commits to the broker (default %d)", ingest.DefaultBatch))
	fs.StringVar(&s.holder, "holder", "", "this replica's name in the ingest's lease (default: host, process id and a random suffix; give each replica its own)")
	fs.DurationVar(&s.leaseTTL, "lease-ttl", 0, "the lease's time to live: a replica that dies is replaced about this long after (default 10s)")
}

// ingestPlan is a checked ingestSpec.
type ingestPlan struct {
	name    string
	opts    ingest.Options
	kafka   kafkabus.SourceOptions
	nats    natsbus.SourceOptions
	isKafka bool
	target  string
	hints   hints
}

// build checks the spec; changed reports which settings were given, set names them in the
// errors, which match annals.ErrInvalidArgument.
func (s *ingestSpec) build(changed func(string) bool, set setter) (*ingestPlan, error) {
	bad := badSetting
	base := bridgeBasics{kind: "ingest", name: s.name, kafka: s.kafka, nats: s.nats, holder: s.holder, leaseTTL: s.leaseTTL}
	kafka, err := base.check("progress", fmt.Sprintf("say where to consume: %s BROKERS %s TOPIC, or %s URL %s STREAM", set("kafka"), set("topic"), set("nats"), set("nats-stream")), set)
	if err != nil {
		return nil, err
	}
	if err := annals.ValidateStreamID(ingest.ProgressStreamPrefix + s.name); err != nil {
		return nil, bad("%s: %s", set("name"), trimSentinels(err.Error()))
	}
	p := &ingestPlan{name: s.name}
	nats := !kafka
	switch {
	case kafka && (changed("nats-stream") || changed("filter-subject")):
		return nil, bad("%s and %s are for NATS; with %s, %s names what to consume", set("nats-stream"), set("filter-subject"), set("kafka"), set("topic"))
	case nats && (changed("topic") || changed("group")):
		return nil, bad("%s and %s are for Kafka; with %s, %s names what to consume", set("topic"), set("group"), set("nats"), set("nats-stream"))
	case kafka && len(s.topics) == 0:
		return nil, bad("%s needs %s: the topics to consume", set("kafka"), set("topic"))
	case nats && s.natsStream == "":
		return nil, bad("%s needs %s: the JetStream stream to consume", set("nats"), set("nats-stream"))
	case s.batch < 0:
		return nil, bad("%s %d: want a positive number, or 0 for the default (%d)", set("batch"), s.batch, ingest.DefaultBatch)
	}
	for _, l := range []struct {
		setting, what string
		values        []string
	}{{"topic", "topic", s.topics}, {"filter-subject", "subject", s.filterSubjects}} {
		if slices.Contains(l.values, "") {
			return nil, bad("%s: an empty %s in %q", set(l.setting), l.what, strings.Join(l.values, ","))
		}
	}
	tmpl, err := bridge.ParseTemplate(s.stream)
	if err != nil {
		return nil, bad("%s: %s", set("stream"), trimSentinels(err.Error()))
	}
	if s.eventType != "" {
		if !utf8.ValidString(s.eventType) || strings.ContainsFunc(s.eventType, unicode.IsControl) {
			return nil, bad("%s %q: an event type is printable UTF-8", set("type"), s.eventType)
		}
	}
	p.opts = ingest.Options{Name: s.name, Decoder: bridge.Decoder{Stream: tmpl, Type: s.eventType}, Batch: s.batch}
	p.opts.Policy.Holder, p.opts.Policy.TTL = s.holder, s.leaseTTL
	if kafka {
		group := s.group
		if group == "" {
			group = defaultIngestGroupPrefix + s.name
		}
		p.isKafka = true
		// One replica consumes at a time (it holds the ingest's lease); kafkabus.Source joins
		// the group as one static member, so one that takes over replaces a dead one at once.
		p.kafka = kafkabus.SourceOptions{Brokers: s.kafka, Topics: s.topics, Group: group}
		p.target = fmt.Sprintf("kafka %s topic %s group %s", strings.Join(s.kafka, ","), strings.Join(s.topics, ","), group)
		p.hints.broker = fmt.Sprintf("is Kafka running at %s?", strings.Join(s.kafka, ","))
	} else {
		p.nats = natsbus.SourceOptions{URL: s.nats, Stream: s.natsStream, FilterSubjects: s.filterSubjects}
		p.target = fmt.Sprintf("nats %s stream %s", s.nats, s.natsStream)
		if len(s.filterSubjects) > 0 {
			p.target += " subjects " + strings.Join(s.filterSubjects, ",")
		}
		p.hints.broker = fmt.Sprintf("is NATS running at %s, with JetStream enabled and a stream %s?", s.nats, s.natsStream)
	}
	return p, nil
}

// connect opens the source and builds the ingest over store.
func (p *ingestPlan) connect(ctx context.Context, store ingest.Store, policy supervisor.Policy, log *slog.Logger) (*ingest.Ingest, func(context.Context) error, error) {
	var (
		src      ingest.Source
		closeSrc func(context.Context) error
	)
	if p.isKafka {
		s, err := kafkabus.OpenSource(p.kafka)
		if err != nil {
			return nil, nil, fmt.Errorf("connect to %s: %w", p.target, err)
		}
		src, closeSrc = s, func(context.Context) error { return s.Close() }
	} else {
		s, err := natsbus.OpenSource(ctx, p.nats)
		if err != nil {
			return nil, nil, fmt.Errorf("connect to %s: %w", p.target, err)
		}
		src, closeSrc = s, func(context.Context) error { return s.Close() }
	}
	opts := p.opts
	opts.Logger = log
	opts.Policy.Keeper = policy.Keeper
	opts.Policy.OnChange = statusLogger(log, "ingest", p.name, p.hints)
	in, err := ingest.New(store, src, &opts)
	if err != nil {
		return nil, nil, errors.Join(err, closeSrc(ctx))
	}
	return in, closeSrc, nil
}

// ingestWorker returns the worker that connects and runs the ingest of p over store.
func ingestWorker(p *ingestPlan, store ingest.Store, policy supervisor.Policy, log *slog.Logger) *bridgeWorker {
	return &bridgeWorker{kind: "ingest", name: p.name, log: log, hints: p.hints,
		connect: func(ctx context.Context) (bridgeRunner, func(context.Context) error, error) {
			in, closeSrc, err := p.connect(ctx, store, policy, log)
			if err != nil {
				return nil, nil, err
			}
			return in, closeSrc, nil
		}}
}

// ingestStatus returns the status of the ingest of w: its own once connected, else
// "connecting" (or "failed", for good) with the last failure to connect.
func ingestStatus(w *bridgeWorker, p *ingestPlan) ingest.Status {
	runner, at, err := w.current()
	if in, ok := runner.(*ingest.Ingest); ok {
		return in.Status()
	}
	st := ingest.Status{Name: p.name, State: w.notConnectedState()}
	if err != nil {
		st.LastError, st.LastTime = trimSentinels(err.Error()), at
	}
	return st
}
