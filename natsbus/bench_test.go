package natsbus_test

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/annalsdb/annals"
	"github.com/annalsdb/annals/bridge"
	"github.com/annalsdb/annals/filestore"
	"github.com/annalsdb/annals/internal/bustest"
	"github.com/annalsdb/annals/internal/testwait"
	"github.com/annalsdb/annals/memstore"
	"github.com/annalsdb/annals/natsbus"
	"github.com/annalsdb/annals/relay"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// benchStore is a store of the benchmarks.
type benchStore interface {
	relay.Store
	annals.Appender
	Close() error
}

var benchStores = []struct {
	name string
	open func(b *testing.B) benchStore
}{
	{"memstore", func(*testing.B) benchStore { return memstore.New(nil) }},
	{"filestore", func(b *testing.B) benchStore {
		s, err := filestore.Open(b.TempDir(), nil)
		if err != nil {
			b.Fatal(err)
		}
		return s
	}},
}

// ackPublisher is a natsbus.Publisher that calls onAck with the id of each message the
// broker acknowledged.
type ackPublisher struct {
	*natsbus.Publisher
	onAck func(id annals.UUID)
}

func (p ackPublisher) Publish(ctx context.Context, msg *bridge.Message, done func(error)) error {
	id := msg.ID
	return p.Publisher.Publish(ctx, msg, func(err error) {
		if err == nil {
			p.onAck(id)
		}
		done(err)
	})
}

// benchAppend appends n small events to 100 streams, 100 events per append.
func benchAppend(b *testing.B, store annals.Appender, n int) {
	b.Helper()
	for i := 0; i < n; {
		batch := make([]annals.Event, 0, 100)
		for ; len(batch) < 100 && i < n; i++ {
			batch = append(batch, annals.Event{Type: "ItemAdded", Data: fmt.Appendf(nil, `{"item":"sku-%d","qty":1}`, i)})
		}
		if _, err := store.Append(context.Background(), fmt.Sprintf("cart-%d", i%100), annals.Any, batch...); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkRelayNATS measures a relay from a store to the in-process JetStream, beside a
// plain JetStream async publisher (MaxPending as the relay's publisher) that publishes the
// same messages, encoded beforehand, in the same run: events/s of each and their ratio.
// Each iteration relays benchEvents events to streams of its own.
func BenchmarkRelayNATS(b *testing.B) {
	const benchEvents = 20_000
	for _, bs := range benchStores {
		b.Run(bs.name, func(b *testing.B) {
			n := bustest.StartNATS(b)
			nc, err := nats.Connect(n.URL())
			if err != nil {
				b.Fatal(err)
			}
			defer nc.Close()
			var relayTime, rawTime, pubTime time.Duration
			var relayCPU, rawCPU, pubCPU time.Duration
			iter := 0
			for b.Loop() {
				iter++
				store := bs.open(b)
				benchAppend(b, store, benchEvents)
				prefix := fmt.Sprintf("r%d", iter)
				c0 := processCPU(b)
				rawTime += benchRaw(b, nc, store, prefix+"raw")
				c1 := processCPU(b)
				pubTime += benchPublisher(b, n.URL(), store, prefix+"pub")
				c2 := processCPU(b)
				relayTime += benchRelay(b, n.URL(), store, prefix, benchEvents)
				c3 := processCPU(b)
				rawCPU, pubCPU, relayCPU = rawCPU+c1-c0, pubCPU+c2-c1, relayCPU+c3-c2
				if err := store.Close(); err != nil {
					b.Fatal(err)
				}
			}
			relayRate := float64(iter*benchEvents) / relayTime.Seconds()
			rawRate := float64(iter*benchEvents) / rawTime.Seconds()
			b.ReportMetric(relayRate, "relay-events/s")
			b.ReportMetric(rawRate, "raw-events/s")
			b.ReportMetric(relayRate/rawRate, "relay/raw")
			b.ReportMetric(float64(iter*benchEvents)/pubTime.Seconds(), "publisher-events/s")
			// The CPU time of the process (broker included) per event: steadier than the rates
			// on a shared machine.
			events := float64(iter * benchEvents)
			b.ReportMetric(float64(rawCPU.Microseconds())/events, "raw-cpu-µs/event")
			b.ReportMetric(float64(pubCPU.Microseconds())/events, "publisher-cpu-µs/event")
			b.ReportMetric(float64(relayCPU.Microseconds())/events, "relay-cpu-µs/event")
		})
	}
}

// benchRelay relays the events of store to a new stream of the server at url and returns the
// time from the relay's start to the broker's ack of the last of them.
func benchRelay(b *testing.B, url string, store relay.Store, prefix string, events int) time.Duration {
	b.Helper()
	p, err := natsbus.OpenPublisher(context.Background(), natsbus.PublisherOptions{
		URL:    url,
		Stream: natsbus.StreamOptions{Name: strings.ToUpper(prefix), Subjects: []string{prefix + ".>"}},
	})
	if err != nil {
		b.Fatal(err)
	}
	defer p.Close(context.Background())
	var acked atomic.Int64
	all := make(chan struct{})
	ap := ackPublisher{Publisher: p, onAck: func(annals.UUID) {
		if acked.Add(1) == int64(events) {
			close(all)
		}
	}}
	r, err := relay.New(store, ap, &relay.Options{Name: prefix, Encoder: natsEncoder(b, prefix)})
	if err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	start := time.Now()
	go func() { errc <- r.Run(ctx) }()
	select {
	case <-all:
	case err := <-errc:
		b.Fatalf("relay stopped: %v", err)
	}
	d := time.Since(start)
	cancel()
	if err := <-errc; err != nil {
		b.Fatal(err)
	}
	return d
}

// processCPU returns the user and system CPU time the process has used.
func processCPU(b *testing.B) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// encodeAll returns the messages of the events of store for a relay to prefix.
func encodeAll(b *testing.B, store annals.Reader, prefix string) []bridge.Message {
	b.Helper()
	enc := natsEncoder(b, prefix)
	var msgs []bridge.Message
	for ev, err := range store.ReadAll(context.Background(), nil) {
		if err != nil {
			b.Fatal(err)
		}
		m, err := enc.Encode(&ev)
		if err != nil {
			b.Fatal(err)
		}
		msgs = append(msgs, m)
	}
	return msgs
}

// benchPublisher publishes the events of store, encoded beforehand, with a natsbus.Publisher
// and returns the time from the first publish to the last ack: the Publisher's share of a
// relay's time.
func benchPublisher(b *testing.B, url string, store annals.Reader, prefix string) time.Duration {
	b.Helper()
	msgs := encodeAll(b, store, prefix)
	p, err := natsbus.OpenPublisher(context.Background(), natsbus.PublisherOptions{
		URL:    url,
		Stream: natsbus.StreamOptions{Name: strings.ToUpper(prefix), Subjects: []string{prefix + ".>"}},
	})
	if err != nil {
		b.Fatal(err)
	}
	defer p.Close(context.Background())
	var acked, failed atomic.Int64
	all := make(chan struct{})
	done := func(err error) {
		if err != nil {
			failed.Add(1)
		}
		if acked.Add(1) == int64(len(msgs)) {
			close(all)
		}
	}
	start := time.Now()
	for i := range msgs {
		if err := p.Publish(context.Background(), &msgs[i], done); err != nil {
			b.Fatal(err)
		}
	}
	<-all
	d := time.Since(start)
	if failed.Load() > 0 {
		b.Fatalf("%d publishes failed", failed.Load())
	}
	return d
}

// benchRaw encodes the events of store as the relay does, then publishes them to a new
// stream with a plain JetStream async publisher and returns the time from the first publish
// to the ack of the last.
func benchRaw(b *testing.B, nc *nats.Conn, store annals.Reader, prefix string) time.Duration {
	b.Helper()
	var msgs []*nats.Msg
	for _, m := range encodeAll(b, store, prefix) {
		nm := &nats.Msg{Subject: m.Subject, Data: m.Value, Header: nats.Header{}}
		for _, h := range m.Headers {
			nm.Header[h.Key] = append(nm.Header[h.Key], string(h.Value))
		}
		nm.Header[jetstream.MsgIDHeader] = []string{m.ID.String()}
		msgs = append(msgs, nm)
	}
	var failed atomic.Int64
	js, err := jetstream.New(nc, jetstream.WithPublishAsyncMaxPending(natsbus.DefaultMaxPending),
		jetstream.WithPublishAsyncErrHandler(func(jetstream.JetStream, *nats.Msg, error) { failed.Add(1) }))
	if err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	if _, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: strings.ToUpper(prefix), Subjects: []string{prefix + ".>"}}); err != nil {
		b.Fatal(err)
	}
	start := time.Now()
	for _, m := range msgs {
		if _, err := js.PublishMsgAsync(m, jetstream.WithStallWait(time.Minute)); err != nil {
			b.Fatal(err)
		}
	}
	<-js.PublishAsyncComplete()
	d := time.Since(start)
	if failed.Load() > 0 {
		b.Fatalf("%d raw publishes failed", failed.Load())
	}
	return d
}

// BenchmarkRelayNATSLatency measures the time from the start of an append to the broker's
// ack of its event through a relay, with a writer appending one event per append at 5,000
// events/s (paced on a schedule, so that a late append does not lower the rate; the rate of
// the last iteration is reported, lower when the machine could not keep up): p50 and p99.
func BenchmarkRelayNATSLatency(b *testing.B) {
	const rate, seconds = 5_000, 2
	for _, bs := range benchStores {
		b.Run(bs.name, func(b *testing.B) {
			n := bustest.StartNATS(b)
			var lat []time.Duration
			var achieved float64
			iter := 0
			for b.Loop() {
				iter++
				lat = append(lat, benchLatency(b, bs.open(b), n.URL(), fmt.Sprintf("l%d", iter), rate, rate*seconds, &achieved)...)
			}
			b.ReportMetric(achieved, "appended-events/s")
			slices.Sort(lat)
			b.ReportMetric(float64(lat[len(lat)/2].Microseconds())/1000, "p50-ms")
			b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds())/1000, "p99-ms")
		})
	}
}

func benchLatency(b *testing.B, store benchStore, url, prefix string, rate, events int, achieved *float64) []time.Duration {
	b.Helper()
	defer store.Close()
	p, err := natsbus.OpenPublisher(context.Background(), natsbus.PublisherOptions{
		URL:    url,
		Stream: natsbus.StreamOptions{Name: strings.ToUpper(prefix), Subjects: []string{prefix + ".>"}},
	})
	if err != nil {
		b.Fatal(err)
	}
	defer p.Close(context.Background())
	var mu sync.Mutex
	started := make(map[annals.UUID]time.Time, events)
	lat := make([]time.Duration, 0, events)
	all := make(chan struct{})
	ap := ackPublisher{Publisher: p, onAck: func(id annals.UUID) {
		now := time.Now()
		mu.Lock()
		defer mu.Unlock()
		if t0, ok := started[id]; ok {
			lat = append(lat, now.Sub(t0))
			delete(started, id)
			if len(lat) == events {
				close(all)
			}
		}
	}}
	r, err := relay.New(store, ap, &relay.Options{Name: prefix, Encoder: natsEncoder(b, prefix)})
	if err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() { errc <- r.Run(ctx) }()
	// The schedule hands each event to one of a few appenders at its time, so that a store
	// whose appends wait for a sync keeps the rate (concurrent appends share a sync).
	const appenders = 16
	work := make(chan int)
	var wg sync.WaitGroup
	var appendErr atomic.Pointer[error]
	for range appenders {
		wg.Go(func() {
			for i := range work {
				ev := annals.Event{ID: annals.NewUUID(), Type: "ItemAdded", Data: fmt.Appendf(nil, `{"item":"sku-%d","qty":1}`, i)}
				t0 := time.Now()
				mu.Lock()
				started[ev.ID] = t0
				mu.Unlock()
				if _, err := store.Append(context.Background(), fmt.Sprintf("cart-%d", i%100), annals.Any, ev); err != nil {
					appendErr.Store(&err)
				}
			}
		})
	}
	start := time.Now()
	for i := range events {
		testwait.Pace(context.Background(), start, int64(i), rate)
		work <- i
	}
	close(work)
	wg.Wait()
	*achieved = float64(events) / time.Since(start).Seconds()
	if err := appendErr.Load(); err != nil {
		b.Fatal(*err)
	}
	select {
	case <-all:
	case err := <-errc:
		b.Fatalf("relay stopped: %v", err)
	}
	cancel()
	if err := <-errc; err != nil {
		b.Fatal(err)
	}
	return lat
}
