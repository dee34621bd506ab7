package kafkabus_test

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/annalsdb/annals"
	"github.com/annalsdb/annals/bridge"
	"github.com/annalsdb/annals/filestore"
	"github.com/annalsdb/annals/internal/bustest"
	"github.com/annalsdb/annals/internal/testwait"
	"github.com/annalsdb/annals/kafkabus"
	"github.com/annalsdb/annals/memstore"
	"github.com/annalsdb/annals/relay"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
)

// writer appends perStream events to each of streams streams ("order-<i>"), one stream after
// another in turns, batch events per append, and keeps the position of its last append.
type writer struct {
	store           annals.Store
	streams, perStr int
	batch           int
	last            atomic.Uint64
	appended        atomic.Int64
}

func (w *writer) run(ctx context.Context) error {
	for rev := 0; rev < w.perStr; rev += w.batch {
		for s := range w.streams {
			n := min(w.batch, w.perStr-rev)
			evs := make([]annals.Event, n)
			for i := range evs {
				evs[i] = annals.Event{Type: "OrderPlaced", Data: fmt.Appendf(nil, `{"n":%d}`, rev+i)}
			}
			res, err := w.store.Append(ctx, fmt.Sprintf("order-%d", s), annals.Any, evs...)
			if err != nil {
				return err
			}
			w.last.Store(res.Position)
			w.appended.Add(int64(n))
		}
	}
	return nil
}

// startRelay runs a relay named name from store to the topic "events" on k, through p (nil:
// a new Publisher), until the test ends or the returned stop is called, which returns Run's error.
func startRelay(t *testing.T, k *bustest.Kafka, store relay.Store, name string, p relay.Publisher) (*relay.Relay, func() error) {
	t.Helper()
	if p == nil {
		p = openPublisher(t, k, nil)
	}
	subject, err := bridge.ParseTemplate("events")
	if err != nil {
		t.Fatal(err)
	}
	r, err := relay.New(store, p, &relay.Options{Name: name, Encoder: bridge.Encoder{Subject: subject, Bus: bridge.Kafka}})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	errc := make(chan error, 1)
	go func() { errc <- r.Run(ctx) }()
	var once atomic.Bool
	stop := func() error {
		if once.Swap(true) {
			return nil
		}
		cancel()
		return <-errc
	}
	t.Cleanup(func() { stop() })
	return r, stop
}

func waitAcked(t *testing.T, r *relay.Relay, pos uint64) {
	t.Helper()
	testwait.Until(t, fmt.Sprintf("relay acknowledged position %d", pos), func() bool {
		st := r.Status()
		if st.LastError != "" {
			t.Logf("relay: %s", st.LastError)
		}
		return st.Acked >= pos
	})
}

func TestRelayEveryEventArrives(t *testing.T) {
	k := bustest.StartKafka(t, &bustest.KafkaOptions{Partitions: 4})
	store := memstore.New(nil)
	t.Cleanup(func() { store.Close() })
	w := &writer{store: store, streams: 20, perStr: 50, batch: 3}
	if err := w.run(t.Context()); err != nil {
		t.Fatal(err)
	}
	r, stop := startRelay(t, k, store, "k", nil)
	waitAcked(t, r, w.last.Load())
	if err := stop(); err != nil {
		t.Fatalf("Run: %v", err)
	}
	recs := k.ReadAll(t.Context(), t, "events")
	if dups := checkStreams(t, recs, w.streams, w.perStr); dups != 0 {
		t.Errorf("%d records twice from one relay run", dups)
	}
	checkOnePartitionPerStream(t, recs)
}

// eachStore runs fn on a memstore and on a filestore.
func eachStore(t *testing.T, fn func(t *testing.T, store annals.Store)) {
	t.Run("memstore", func(t *testing.T) {
		s := memstore.New(nil)
		t.Cleanup(func() { s.Close() })
		fn(t, s)
	})
	t.Run("filestore", func(t *testing.T) {
		s, err := filestore.Open(t.TempDir(), nil)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { s.Close() })
		fn(t, s)
	})
}

func TestRelayBrokerOutage(t *testing.T) { eachStore(t, testRelayBrokerOutage) }

func testRelayBrokerOutage(t *testing.T, store annals.Store) {
	k := bustest.StartKafka(t, &bustest.KafkaOptions{Partitions: 4})
	w := &writer{store: store, streams: 10, perStr: 400, batch: 2}
	werr := make(chan error, 1)
	go func() { werr <- w.run(t.Context()) }()
	r, stop := startRelay(t, k, store, "k", nil)
	testwait.Until(t, "relay publishing", func() bool { return r.Status().Acked > 200 })
	k.Stop()
	before := w.appended.Load()
	testwait.Until(t, "writer appending while the broker is down", func() bool { return w.appended.Load() >= before+500 || w.appended.Load() == int64(w.streams*w.perStr) })
	k.Start()
	if err := <-werr; err != nil {
		t.Fatal(err)
	}
	waitAcked(t, r, w.last.Load())
	if err := stop(); err != nil {
		t.Fatalf("Run: %v", err)
	}
	dups := checkStreams(t, k.ReadAll(t.Context(), t, "events"), w.streams, w.perStr)
	t.Logf("%d records published twice across the outage", dups)
}

// crashingPublisher publishes through a Publisher; after its first passing messages it still
// publishes but keeps the broker's answers from the relay, as a relay that dies after the
// broker took its messages and before it knew did. release then fails the withheld answers.
type crashingPublisher struct {
	*kafkabus.Publisher
	passing  atomic.Int64
	withheld atomic.Int64
	mu       sync.Mutex
	dones    []func(error)
}

func (p *crashingPublisher) Publish(ctx context.Context, msg *bridge.Message, done func(error)) error {
	if p.passing.Add(-1) >= 0 {
		return p.Publisher.Publish(ctx, msg, done)
	}
	return p.Publisher.Publish(ctx, msg, func(err error) {
		if err == nil {
			p.withheld.Add(1)
		}
		p.mu.Lock()
		defer p.mu.Unlock()
		p.dones = append(p.dones, done)
	})
}

func (p *crashingPublisher) release() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, done := range p.dones {
		done(errors.New("crashed"))
	}
	p.dones = nil
}

func TestRelayRestartExactlyOnceInEffect(t *testing.T) { eachStore(t, testRelayRestart) }

func testRelayRestart(t *testing.T, store annals.Store) {
	k := bustest.StartKafka(t, &bustest.KafkaOptions{Partitions: 4})
	w := &writer{store: store, streams: 10, perStr: 400, batch: 5}
	werr := make(chan error, 1)
	go func() { werr <- w.run(t.Context()) }()
	crashing := &crashingPublisher{Publisher: openPublisher(t, k, nil)}
	crashing.passing.Store(1500)
	_, stop1 := startRelay(t, k, store, "k", crashing)
	testwait.Until(t, "first relay publishing what it will not checkpoint", func() bool { return crashing.withheld.Load() > 300 })
	crashing.release()
	stop1() // its last Run ends in an error or not: what matters is its checkpoint
	r2, stop2 := startRelay(t, k, store, "k", nil)
	if err := <-werr; err != nil {
		t.Fatal(err)
	}
	waitAcked(t, r2, w.last.Load())
	if err := stop2(); err != nil {
		t.Fatalf("second Run: %v", err)
	}
	recs := k.ReadAll(t.Context(), t, "events")
	dups := checkStreams(t, recs, w.streams, w.perStr)
	if dups == 0 {
		t.Fatal("the second relay published nothing again: the test does not exercise Dedup")
	}
	// A consumer with kafkabus.Dedup sees every event once.
	d := kafkabus.NewDedup(0)
	fresh := 0
	for _, rec := range recs {
		if !d.Duplicate(rec) {
			fresh++
		}
	}
	if fresh != w.streams*w.perStr {
		t.Fatalf("Dedup let %d records through, want %d", fresh, w.streams*w.perStr)
	}
	t.Logf("%d records published again by the second relay, dropped by Dedup", dups)
}

func checkOnePartitionPerStream(t *testing.T, recs []*kgo.Record) {
	t.Helper()
	part := map[string]int32{}
	for _, r := range recs {
		s := string(r.Key)
		if p, ok := part[s]; ok && p != r.Partition {
			t.Fatalf("stream %s in partitions %d and %d", s, p, r.Partition)
		}
		part[s] = r.Partition
	}
}

func TestRelayStopsOnTooLargeEvent(t *testing.T) {
	k := bustest.StartKafka(t, &bustest.KafkaOptions{BrokerConfigs: map[string]string{"message.max.bytes": "10000"}})
	store := memstore.New(nil)
	t.Cleanup(func() { store.Close() })
	big := make([]byte, 20_000)
	rand.Read(big) // incompressible: the producer compresses batches
	data := fmt.Appendf(nil, `{"blob":"%x"}`, big)
	if _, err := store.Append(t.Context(), "order-1", annals.Any, annals.Event{Type: "Small", Data: []byte(`{}`)}); err != nil {
		t.Fatal(err)
	}
	res, err := store.Append(t.Context(), "order-2", annals.Any, annals.Event{Type: "Big", Data: data})
	if err != nil {
		t.Fatal(err)
	}
	p := openPublisher(t, k, nil)
	subject, err := bridge.ParseTemplate("events")
	if err != nil {
		t.Fatal(err)
	}
	r, err := relay.New(store, p, &relay.Options{Name: "k", Encoder: bridge.Encoder{Subject: subject, Bus: bridge.Kafka}})
	if err != nil {
		t.Fatal(err)
	}
	err = r.Run(t.Context())
	var perr *relay.PublishError
	if !errors.As(err, &perr) || !errors.Is(err, relay.ErrRefused) || !errors.Is(err, kerr.MessageTooLarge) {
		t.Fatalf("Run = %v, want a refusal of the large event matching kerr.MessageTooLarge", err)
	}
	if perr.Position != res.Position || perr.Stream != "order-2" {
		t.Errorf("refused event %s at %d, want order-2 at %d", perr.Stream, perr.Position, res.Position)
	}
}
