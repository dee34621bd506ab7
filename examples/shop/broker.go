package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/annalsdb/annals/examples/shop/services"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/twmb/franz-go/pkg/kfake"
)

// onBus are the services that take their events from the broker with --bus kafka or nats;
// the inventory keeps its consumer group.
var onBus = []string{"fulfillment", "notification"}

// kafkaPartitions is the partitions of each topic of the launcher's Kafka.
const kafkaPartitions = 4

// broker is the message broker the launcher runs in its own process for --bus kafka or nats:
// an in-process Kafka (kfake, which speaks the real protocol) or a NATS server with JetStream.
// Its methods are not safe for concurrent use.
type broker struct {
	bus string
	// addr is the Kafka broker's host:port or the NATS server's URL.
	addr  string
	kafka *kfake.Cluster
	nats  *server.Server
}

// startBroker starts the broker of bus (kafka or nats); NATS keeps its JetStream store under
// dir. It makes the topics or the stream that the relay publishes to.
func startBroker(ctx context.Context, bus, dir string) (*broker, error) {
	b := &broker{bus: bus}
	switch bus {
	case busKafka:
		c, err := kfake.NewCluster(kfake.NumBrokers(1),
			kfake.SeedTopics(kafkaPartitions, kafkaTopics(relayCategories())...))
		if err != nil {
			return nil, fmt.Errorf("start kafka (kfake): %w", err)
		}
		b.kafka, b.addr = c, strings.Join(c.ListenAddrs(), ",")
		return b, nil
	case busNATS:
		s, err := server.NewServer(&server.Options{Host: "127.0.0.1", Port: server.RANDOM_PORT, JetStream: true,
			StoreDir: filepath.Join(dir, "nats"), NoSigs: true, NoLog: true})
		if err != nil {
			return nil, fmt.Errorf("start nats: %w", err)
		}
		s.Start()
		b.nats = s
		if !s.ReadyForConnections(30 * time.Second) {
			b.close()
			return nil, fmt.Errorf("start nats: not ready after 30 s")
		}
		b.addr = s.ClientURL()
		if err := b.makeStream(ctx); err != nil {
			b.close()
			return nil, err
		}
		return b, nil
	}
	return nil, fmt.Errorf("--bus %q: want %s, %s or %s", bus, busGroups, busKafka, busNATS)
}

// makeStream creates the JetStream stream the relay publishes to, with the default
// duplicate window (in which a relay's restart publishes again).
func (b *broker) makeStream(ctx context.Context) error {
	nc, err := nats.Connect(b.addr)
	if err != nil {
		return fmt.Errorf("connect to nats: %w", err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err == nil {
		_, err = js.CreateOrUpdateStream(ctx, jetstream.StreamConfig{Name: natsStream, Subjects: []string{subjectPrefix + ">"},
			Storage: jetstream.FileStorage})
	}
	if err != nil {
		return fmt.Errorf("create stream %s: %w", natsStream, err)
	}
	return nil
}

// close stops the broker.
func (b *broker) close() {
	if b.kafka != nil {
		b.kafka.Close()
	}
	if b.nats != nil {
		b.nats.Shutdown()
		b.nats.WaitForShutdown()
	}
}

// serviceArgs are the flags of a service that consumes the broker.
func (b *broker) serviceArgs() []string {
	return []string{"--bus", b.bus, "--" + b.bus, b.addr}
}

// writeServeConfig writes the configuration file of `annals serve` that relays the events of
// the services on the bus to the broker, and returns its path. JSON is YAML.
func (b *broker) writeServeConfig(dir string) (string, error) {
	r := map[string]any{"name": "shop", "format": "json", "category": relayCategories(), "type": relayTypes()}
	switch b.bus {
	case busKafka:
		r["kafka"], r["topic"] = b.addr, topicTemplate
	case busNATS:
		r["nats"], r["subject"], r["nats-stream"] = b.addr, subjectTemplate, natsStream
	}
	conf, err := json.MarshalIndent(map[string]any{"relays": []any{r}}, "", "  ")
	if err != nil {
		return "", err
	}
	path := filepath.Join(dir, "annals-relay.yaml")
	return path, os.WriteFile(path, conf, 0o600)
}

// relayCategories and relayTypes are what the relay publishes: what the services on the bus
// take (the union of their groups' filters).
func relayCategories() []string {
	return relayUnion(func(s services.Service) []string { return s.Settings().Filter.Categories })
}
func relayTypes() []string {
	return relayUnion(func(s services.Service) []string { return s.Settings().Filter.EventTypes })
}

func relayUnion(field func(services.Service) []string) []string {
	// The services' settings need no store: only their filters are read.
	ful, err1 := services.NewFulfillment(nil)
	note, err2 := services.NewNotification(nil, nil)
	if err1 != nil || err2 != nil {
		panic(fmt.Sprintf("the shop's registry: %v %v", err1, err2)) // the shop's own types: a bug
	}
	var out []string
	for _, s := range []services.Service{ful, note} {
		for _, v := range field(s) {
			if !slices.Contains(out, v) {
				out = append(out, v)
			}
		}
	}
	return out
}
