package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/annalsdb/annals"
	"github.com/annalsdb/annals/bridge"
	"github.com/annalsdb/annals/kafkabus"
	"github.com/annalsdb/annals/natsbus"
	"github.com/annalsdb/annals/relay"
	"github.com/annalsdb/annals/supervisor"
	"github.com/spf13/pflag"
)

// relaySpec is the configuration of one relay: the flags of "annals relay", the keys of its
// --config file and of an item of "annals serve"'s relays: list ([relaySettings]).
type relaySpec struct {
	name               string
	kafka              []string
	nats               string
	topic              string
	subject            string
	natsStream         string
	format             string
	source             string
	categories         []string
	types              []string
	prefixes           []string
	maxInFlight        int
	checkpointInterval time.Duration
	holder             string
	leaseTTL           time.Duration
}

// relaySettings are the names of a relay's settings.
var relaySettings = []string{"name", "kafka", "nats", "topic", "subject", "nats-stream", "format", "source",
	"category", "type", "stream-prefix", "max-in-flight", "checkpoint-interval", "holder", "lease-ttl"}

// Defaults of a relay's settings.
const (
	defaultRelayTopic = "{category}"
	defaultNATSStream = "EVENTS"
)

// register defines the flags of the spec on fs.
func (s *relaySpec) register(fs *pflag.FlagSet) {
	fs.StringVar(&s.name, "name", "", "the relay's name (required): its checkpoint and its lease (relay/NAME) are kept in the store under it")
	fs.StringSliceVar(&s.kafka, "kafka", nil, "publish to the Kafka cluster with these seed brokers (host:port, comma-separated)")
	fs.StringVar(&s.nats, "nats", "", "publish to NATS JetStream at this URL (nats://host:4222; comma-separated for a cluster)")
	fs.StringVar(&s.topic, "topic", "", "with --kafka: the topic of each event, a template of {stream}, {category}, {type} (default "+defaultRelayTopic+")")
	fs.StringVar(&s.subject, "subject", "", "with --nats: the subject of each event, a template of {stream}, {category}, {type} (default "+natsbus.DefaultSubject+")")
	fs.StringVar(&s.natsStream, "nats-stream", "", "with --nats: the JetStream stream the subjects go to; created when missing if the subject template starts with a fixed token (it then binds TOKEN.>), else it must exist (default "+defaultNATSStream+")")
	fs.StringVar(&s.format, "format", "json", "payload: json (the data as stored, annals-* headers), cloudevents (CloudEvents 1.0 structured JSON) or cloudevents-binary (CloudEvents headers, the data as stored)")
	fs.StringVar(&s.source, "source", "", "the CloudEvents source attribute (default "+bridge.DefaultSource+")")
	fs.StringSliceVar(&s.categories, "category", nil, "publish only events of streams in these categories (the part of the stream id before the first -)")
	fs.StringSliceVar(&s.types, "type", nil, "publish only events of these types")
	fs.StringSliceVar(&s.prefixes, "stream-prefix", nil, "publish only events of streams whose id starts with one of these")
	fs.IntVar(&s.maxInFlight, "max-in-flight", 0, fmt.Sprintf("the most events published and not yet acknowledged by the broker (default %d)", relay.DefaultMaxInFlight))
	fs.DurationVar(&s.checkpointInterval, "checkpoint-interval", 0, fmt.Sprintf("write the checkpoint at most this often (default %v): a restart publishes again at most what was acknowledged in the last interval", relay.DefaultCheckpointInterval))
	fs.StringVar(&s.holder, "holder", "", "this replica's name in the relay's lease (default: host, process id and a random suffix; give each replica its own)")
	fs.DurationVar(&s.leaseTTL, "lease-ttl", 0, "the lease's time to live: a replica that dies is replaced about this long after (default 10s)")
}

// relayPlan is a checked relaySpec: the relay's options (without the store's parts) and how
// to reach its broker.
type relayPlan struct {
	name    string
	opts    relay.Options
	brokers []string // Kafka
	natsURL string
	stream  natsbus.StreamOptions
	// target names the broker and the template, as the status shows it.
	target string
	// hints say what to check when the broker (or the store's server) is out of reach.
	hints hints
}

// build checks the spec; changed reports which settings were given, set names them in the
// errors, which match annals.ErrInvalidArgument.
func (s *relaySpec) build(changed func(string) bool, set setter) (*relayPlan, error) {
	bad := badSetting
	base := bridgeBasics{kind: "relay", name: s.name, kafka: s.kafka, nats: s.nats, holder: s.holder, leaseTTL: s.leaseTTL}
	kafka, err := base.check("checkpoint", fmt.Sprintf("say where to publish: %s BROKERS or %s URL", set("kafka"), set("nats")), set)
	if err != nil {
		return nil, err
	}
	p := &relayPlan{name: s.name}
	switch {
	case kafka && (changed("subject") || changed("nats-stream")):
		return nil, bad("%s and %s are for NATS; with %s, %s names the topic", set("subject"), set("nats-stream"), set("kafka"), set("topic"))
	case !kafka && changed("topic"):
		return nil, bad("%s is for Kafka; with %s, %s names the subject", set("topic"), set("nats"), set("subject"))
	}
	f, err := bridge.ParseFormat(s.format)
	if err != nil {
		return nil, bad("%s: %s", set("format"), trimSentinels(err.Error()))
	}
	if changed("source") && f == bridge.FormatJSON {
		return nil, bad("%s is the CloudEvents source: it needs %s cloudevents or cloudevents-binary", set("source"), set("format"))
	}
	p.opts.Name = s.name
	p.opts.Encoder.Format, p.opts.Encoder.Source = f, s.source
	tmplSetting, tmplText := "topic", s.topic
	if kafka {
		p.brokers = s.kafka
		if tmplText == "" {
			tmplText = defaultRelayTopic
		}
		p.opts.Encoder.Bus = bridge.Kafka
		p.hints.broker = fmt.Sprintf("is Kafka running at %s?", strings.Join(s.kafka, ","))
	} else {
		tmplSetting, tmplText = "subject", s.subject
		if tmplText == "" {
			tmplText = natsbus.DefaultSubject
		}
		p.natsURL = s.nats
		p.stream.Name = s.natsStream
		if p.stream.Name == "" {
			p.stream.Name = defaultNATSStream
		}
		p.stream.Subjects = natsStreamSubjects(tmplText)
		p.opts.Encoder.Bus = bridge.NATS
		p.hints.broker = fmt.Sprintf("is NATS running at %s, with JetStream enabled?", s.nats)
	}
	if p.opts.Encoder.Subject, err = bridge.ParseTemplate(tmplText); err != nil {
		return nil, bad("%s: %s", set(tmplSetting), trimSentinels(err.Error()))
	}
	// The encoder's own checks (placeholders of the relay side, a NATS subject's tokens), here
	// rather than when the relay is built after connecting, so that a mistake is a usage error
	// and not a failure to connect that a server retries.
	if err := p.opts.Encoder.Validate(); err != nil {
		return nil, bad("%s: %s", set(tmplSetting), trimSentinels(err.Error()))
	}
	if kafka {
		p.target = fmt.Sprintf("kafka %s topic %s", strings.Join(s.kafka, ","), tmplText)
	} else {
		p.target = fmt.Sprintf("nats %s stream %s subject %s", s.nats, p.stream.Name, tmplText)
	}
	if len(s.categories)+len(s.types)+len(s.prefixes) > 0 {
		p.opts.Filter = &annals.Filter{Categories: s.categories, EventTypes: s.types, StreamPrefixes: s.prefixes}
		if err := p.opts.Filter.Validate(); err != nil {
			return nil, bad("%s, %s, %s: %s", set("category"), set("type"), set("stream-prefix"), trimSentinels(err.Error()))
		}
	}
	switch {
	case s.maxInFlight < 0:
		return nil, bad("%s %d: want a positive number, or 0 for the default (%d)", set("max-in-flight"), s.maxInFlight, relay.DefaultMaxInFlight)
	case s.checkpointInterval < 0:
		return nil, bad("%s %v: want a positive duration, or 0 for the default (%v)", set("checkpoint-interval"), s.checkpointInterval, relay.DefaultCheckpointInterval)
	}
	p.opts.MaxInFlight, p.opts.CheckpointInterval = s.maxInFlight, s.checkpointInterval
	p.opts.Policy.Holder, p.opts.Policy.TTL = s.holder, s.leaseTTL
	return p, nil
}

// natsStreamSubjects is the rule of --nats-stream's creation: a subject template whose first
// token is fixed text ("events.{category}.{stream}") makes the relay create the stream,
// when it is missing, with the subjects "<token>.>" ("events.>"); a template that starts with
// a placeholder gives none: the stream must exist, made by its owner with the subjects the
// relay publishes to.
func natsStreamSubjects(tmpl string) []string {
	first, rest, ok := strings.Cut(tmpl, ".")
	if !ok || first == "" || rest == "" || strings.ContainsAny(first, "{}*> \t") {
		return nil
	}
	return []string{first + ".>"}
}

// connect opens the publisher and builds the relay over store, with policy's lease keeper
// (nil: the store's) and log.
func (p *relayPlan) connect(ctx context.Context, store relay.Store, policy supervisor.Policy, log *slog.Logger) (*relay.Relay, func(context.Context) error, error) {
	var (
		pub      relay.Publisher
		closePub func(context.Context) error
	)
	if len(p.brokers) > 0 {
		kp, err := kafkabus.OpenPublisher(kafkabus.PublisherOptions{Brokers: p.brokers})
		if err != nil {
			return nil, nil, fmt.Errorf("connect to %s: %w", p.target, err)
		}
		pub, closePub = kp, kp.Close
	} else {
		np, err := natsbus.OpenPublisher(ctx, natsbus.PublisherOptions{URL: p.natsURL, Stream: p.stream})
		if err != nil {
			return nil, nil, fmt.Errorf("connect to %s: %w", p.target, err)
		}
		pub, closePub = np, np.Close
	}
	opts := p.opts
	opts.Logger = log
	opts.Policy.Keeper = policy.Keeper
	opts.Policy.OnChange = statusLogger(log, "relay", p.name, p.hints)
	r, err := relay.New(store, pub, &opts)
	if err != nil {
		cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), closeTimeout)
		defer cancel()
		return nil, nil, errors.Join(err, closePub(cctx))
	}
	return r, closePub, nil
}

// relayWorker returns the worker that connects and runs the relay of p over store.
func relayWorker(p *relayPlan, store relay.Store, policy supervisor.Policy, log *slog.Logger) *bridgeWorker {
	return &bridgeWorker{kind: "relay", name: p.name, log: log, hints: p.hints,
		connect: func(ctx context.Context) (bridgeRunner, func(context.Context) error, error) {
			r, closePub, err := p.connect(ctx, store, policy, log)
			if err != nil {
				return nil, nil, err
			}
			return r, closePub, nil
		},
		watch: func(ctx context.Context, runner bridgeRunner) {
			watchStall(ctx, runner.(*relay.Relay), log, p.hints.broker, stallAfter)
		}}
}

// watchStall checks r every interval until ctx ends: when r published events that the broker
// has not acknowledged for a whole interval, it logs that the relay waits for the broker
// (with hint), and when acknowledgements come again, that they do. Every progressEvery
// intervals in which events were acknowledged, and when ctx ends, it logs the relay's
// progress (events published, checkpoint, lag), so that a long catch-up shows it moves.
func watchStall(ctx context.Context, r *relay.Relay, log *slog.Logger, hint string, interval time.Duration) {
	const progressEvery = 3
	t := time.NewTicker(interval)
	defer t.Stop()
	last := r.Status().Published
	logged := last
	progress := func(st relay.Status) {
		log.Info("relay progress", slog.String("relay", r.Name()), slog.Uint64("published", st.Published),
			slog.Uint64("checkpoint", st.Checkpoint), slog.Uint64("lag", st.Lag))
		logged = st.Published
	}
	stalled := false
	for tick := 1; ; tick++ {
		select {
		case <-ctx.Done():
			if st := r.Status(); st.Published != logged {
				progress(st)
			}
			return
		case <-t.C:
		}
		st := r.Status()
		waiting := st.State == "running" && st.InFlight > 0 && st.Published == last
		last = st.Published
		switch {
		case waiting && !stalled:
			stalled = true
			log.Warn(fmt.Sprintf("relay waits for the broker: %d events in flight and none acknowledged for %v (%s)", st.InFlight, interval, hint), slog.String("relay", r.Name()))
		case !waiting && stalled:
			stalled = false
			log.Info("relay: the broker acknowledges again", slog.String("relay", r.Name()))
		}
		if tick%progressEvery == 0 && st.Published != logged {
			progress(st)
		}
	}
}

// relayStatus returns the status of the relay of w (built by [relayWorker] from p): the
// relay's own once connected, else "connecting" (or "failed", for good) with the last failure to connect. Its target
// is the plan's, which names the template too.
func relayStatus(w *bridgeWorker, p *relayPlan) relay.Status {
	runner, at, err := w.current()
	if r, ok := runner.(*relay.Relay); ok {
		st := r.Status()
		st.Target = p.target
		return st
	}
	st := relay.Status{Name: p.name, State: w.notConnectedState(), Target: p.target}
	if err != nil {
		st.LastError, st.LastErrorTime = trimSentinels(err.Error()), at
	}
	return st
}
