package kafkabus_test

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/annalsdb/annals"
	"github.com/annalsdb/annals/bridge"
	"github.com/annalsdb/annals/filestore"
	"github.com/annalsdb/annals/internal/bustest"
	"github.com/annalsdb/annals/internal/testwait"
	"github.com/annalsdb/annals/kafkabus"
	"github.com/annalsdb/annals/memstore"
	"github.com/annalsdb/annals/relay"
	"github.com/twmb/franz-go/pkg/kgo"
)

// ackingPublisher wraps a Publisher and reports each acknowledged message to onAck.
type ackingPublisher struct {
	*kafkabus.Publisher
	onAck func(msg *bridge.Message)
}

func (p *ackingPublisher) Publish(ctx context.Context, msg *bridge.Message, done func(error)) error {
	return p.Publisher.Publish(ctx, msg, func(err error) {
		if err == nil {
			p.onAck(msg)
		}
		done(err)
	})
}

func benchStores(b *testing.B) map[string]func() annals.Store {
	return map[string]func() annals.Store{
		"memstore": func() annals.Store { return memstore.New(nil) },
		"filestore": func() annals.Store {
			s, err := filestore.Open(b.TempDir(), nil)
			if err != nil {
				b.Fatal(err)
			}
			return s
		},
	}
}

func eventsSubject(b testing.TB) bridge.Encoder {
	subject, err := bridge.ParseTemplate("events")
	if err != nil {
		b.Fatal(err)
	}
	return bridge.Encoder{Subject: subject, Bus: bridge.Kafka}
}

// BenchmarkRelayKafka relays n events already in a store to kfake, and publishes the same
// messages, encoded beforehand, with a plain franz-go producer (its defaults) to the same
// cluster, in the same run. Each iteration does both; events/s of each and their ratio are
// reported.
func BenchmarkRelayKafka(b *testing.B) {
	const streams, perStream = 100, 500
	const n = streams * perStream
	for _, name := range []string{"memstore", "filestore"} {
		b.Run(name, func(b *testing.B) {
			store := benchStores(b)[name]()
			b.Cleanup(func() { store.Close() })
			w := &writer{store: store, streams: streams, perStr: perStream, batch: 10}
			if err := w.run(b.Context()); err != nil {
				b.Fatal(err)
			}
			enc := eventsSubject(b)
			var msgs []bridge.Message
			for ev, err := range store.ReadAll(b.Context(), nil) {
				if err != nil {
					b.Fatal(err)
				}
				m, err := enc.Encode(&ev)
				if err != nil {
					b.Fatal(err)
				}
				m.Subject = "plain"
				msgs = append(msgs, m)
			}
			k := bustest.StartKafka(b, &bustest.KafkaOptions{Partitions: 4})
			var relayTime, plainTime, pubTime time.Duration
			b.ResetTimer()
			for i := range b.N {
				relayTime += relayOnce(b, k, store, fmt.Sprintf("bench-%d", i), n)
				plainTime += plainOnce(b, k, msgs)
				pubTime += publisherOnce(b, k, msgs)
			}
			b.StopTimer()
			relayRate := float64(n*b.N) / relayTime.Seconds()
			plainRate := float64(n*b.N) / plainTime.Seconds()
			b.ReportMetric(relayRate, "relay-events/s")
			b.ReportMetric(plainRate, "producer-events/s")
			b.ReportMetric(float64(n*b.N)/pubTime.Seconds(), "publisher-events/s")
			b.ReportMetric(relayRate/plainRate, "ratio")
			b.ReportMetric(0, "ns/op")
		})
	}
}

// relayOnce runs a new relay over store until it has n acknowledgements, and returns the time
// from its start.
func relayOnce(b *testing.B, k *bustest.Kafka, store annals.Store, name string, n int) time.Duration {
	p, err := kafkabus.OpenPublisher(kafkabus.PublisherOptions{Brokers: []string{k.Addr()}})
	if err != nil {
		b.Fatal(err)
	}
	defer p.Close(context.Background())
	var acked atomic.Int64
	all := make(chan struct{})
	ap := &ackingPublisher{Publisher: p, onAck: func(*bridge.Message) {
		if acked.Add(1) == int64(n) {
			close(all)
		}
	}}
	start := time.Now()
	r, err := relay.New(store, ap, &relay.Options{Name: name, Encoder: eventsSubject(b)})
	if err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithCancel(b.Context())
	errc := make(chan error, 1)
	go func() { errc <- r.Run(ctx) }()
	select {
	case <-all:
	case err := <-errc:
		b.Fatalf("Run: %v", err)
	}
	d := time.Since(start)
	cancel()
	if err := <-errc; err != nil {
		b.Fatalf("Run: %v", err)
	}
	return d
}

// plainOnce publishes msgs with a new franz-go producer and returns the time until every one
// is acknowledged.
func plainOnce(b *testing.B, k *bustest.Kafka, msgs []bridge.Message) time.Duration {
	c, err := kgo.NewClient(kgo.SeedBrokers(k.Addr()), kgo.AllowAutoTopicCreation())
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	var failed atomic.Pointer[error]
	start := time.Now()
	for i := range msgs {
		m := &msgs[i]
		rec := &kgo.Record{Topic: m.Subject, Key: m.Key, Value: m.Value, Headers: make([]kgo.RecordHeader, len(m.Headers))}
		for j, h := range m.Headers {
			rec.Headers[j] = kgo.RecordHeader{Key: h.Key, Value: h.Value}
		}
		c.Produce(b.Context(), rec, func(_ *kgo.Record, err error) {
			if err != nil {
				failed.CompareAndSwap(nil, &err)
			}
		})
	}
	if err := c.Flush(b.Context()); err != nil {
		b.Fatal(err)
	}
	d := time.Since(start)
	if err := failed.Load(); err != nil {
		b.Fatal(*err)
	}
	return d
}

// publisherOnce publishes msgs through a new kafkabus.Publisher and returns the time until
// every one is acknowledged: the publisher's share of the relay's cost.
func publisherOnce(b *testing.B, k *bustest.Kafka, msgs []bridge.Message) time.Duration {
	p, err := kafkabus.OpenPublisher(kafkabus.PublisherOptions{Brokers: []string{k.Addr()}})
	if err != nil {
		b.Fatal(err)
	}
	defer p.Close(context.Background())
	var acked atomic.Int64
	all := make(chan struct{})
	var failed atomic.Pointer[error]
	start := time.Now()
	for i := range msgs {
		err := p.Publish(b.Context(), &msgs[i], func(err error) {
			if err != nil {
				failed.CompareAndSwap(nil, &err)
			}
			if acked.Add(1) == int64(len(msgs)) {
				close(all)
			}
		})
		if err != nil {
			b.Fatal(err)
		}
	}
	<-all
	d := time.Since(start)
	if err := failed.Load(); err != nil {
		b.Fatal(*err)
	}
	return d
}

// BenchmarkRelayKafkaLatency appends b.N events, one per append over 50 streams, from 8
// writers together at 5,000 events/s while a relay publishes them to kfake, and reports the time from the call to
// Append (its own durability included) to the broker's acknowledgement (seen in the
// publisher's done): p50 and p99.
func BenchmarkRelayKafkaLatency(b *testing.B) {
	const rate = 5000
	const streams = 50
	const writers = 8
	for _, name := range []string{"memstore", "filestore"} {
		b.Run(name, func(b *testing.B) {
			store := benchStores(b)[name]()
			b.Cleanup(func() { store.Close() })
			k := bustest.StartKafka(b, &bustest.KafkaOptions{Partitions: 4})
			p, err := kafkabus.OpenPublisher(kafkabus.PublisherOptions{Brokers: []string{k.Addr()}})
			if err != nil {
				b.Fatal(err)
			}
			b.Cleanup(func() { p.Close(context.Background()) })
			var mu sync.Mutex
			appended := map[annals.UUID]time.Time{}
			latencies := make([]time.Duration, 0, b.N)
			all := make(chan struct{})
			ap := &ackingPublisher{Publisher: p, onAck: func(m *bridge.Message) {
				now := time.Now()
				mu.Lock()
				defer mu.Unlock()
				at, ok := appended[m.ID]
				if !ok {
					return // published again after a retry: counted once
				}
				delete(appended, m.ID)
				latencies = append(latencies, now.Sub(at))
				if len(latencies) == b.N {
					close(all)
				}
			}}
			r, err := relay.New(store, ap, &relay.Options{Name: "latency", Encoder: eventsSubject(b)})
			if err != nil {
				b.Fatal(err)
			}
			ctx, cancel := context.WithCancel(b.Context())
			errc := make(chan error, 1)
			go func() { errc <- r.Run(ctx) }()
			b.ResetTimer()
			start := time.Now()
			// writers append concurrently (as the clients of a server do), so that a store that
			// syncs each commit can group them and keep the rate.
			var wg sync.WaitGroup
			werrs := make(chan error, writers)
			for j := range writers {
				wg.Go(func() {
					for i := j; i < b.N; i += writers {
						if !testwait.Pace(ctx, start, int64(i), rate) {
							return
						}
						id := annals.NewUUID()
						mu.Lock()
						appended[id] = time.Now()
						mu.Unlock()
						if _, err := store.Append(ctx, fmt.Sprintf("order-%d", i%streams), annals.Any, annals.Event{ID: id, Type: "OrderPlaced", Data: []byte(`{}`)}); err != nil {
							werrs <- err
							return
						}
					}
				})
			}
			wg.Wait()
			close(werrs)
			for err := range werrs {
				b.Fatal(err)
			}
			writeRate := float64(b.N) / time.Since(start).Seconds()
			select {
			case <-all:
			case err := <-errc:
				b.Fatalf("Run: %v", err)
			}
			b.StopTimer()
			cancel()
			if err := <-errc; err != nil {
				b.Fatalf("Run: %v", err)
			}
			slices.Sort(latencies)
			b.ReportMetric(float64(latencies[len(latencies)/2].Microseconds())/1000, "p50-ms")
			b.ReportMetric(float64(latencies[len(latencies)*99/100].Microseconds())/1000, "p99-ms")
			b.ReportMetric(writeRate, "appended-events/s")
		})
	}
}
