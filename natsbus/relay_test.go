package natsbus_test

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"testing"
	"time"

	"github.com/annalsdb/annals"
	"github.com/annalsdb/annals/bridge"
	"github.com/annalsdb/annals/internal/bustest"
	"github.com/annalsdb/annals/internal/testwait"
	"github.com/annalsdb/annals/memstore"
	"github.com/annalsdb/annals/natsbus"
	"github.com/annalsdb/annals/relay"
	"github.com/annalsdb/annals/supervisor"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// natsEncoder is the encoder of the relays of these tests: DefaultSubject under prefix.
func natsEncoder(t testing.TB, prefix string) bridge.Encoder {
	t.Helper()
	subject, err := bridge.ParseTemplate(prefix + ".{category}.{stream}")
	if err != nil {
		t.Fatal(err)
	}
	return bridge.Encoder{Subject: subject, Bus: bridge.NATS}
}

// running is a relay running on its own goroutine.
type running struct {
	r      *relay.Relay
	cancel context.CancelFunc
	errc   chan error
}

// startRelay starts a relay named name from store to p; the test's end stops it.
func startRelay(t *testing.T, store relay.Store, p relay.Publisher, name, prefix string) *running {
	t.Helper()
	r, err := relay.New(store, p, &relay.Options{
		Name:               name,
		Encoder:            natsEncoder(t, prefix),
		CheckpointInterval: 20 * time.Millisecond,
		Policy:             supervisor.Policy{MinBackoff: 10 * time.Millisecond, MaxBackoff: 200 * time.Millisecond},
	})
	if err != nil {
		t.Fatalf("relay.New: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	run := &running{r: r, cancel: cancel, errc: make(chan error, 1)}
	go func() { run.errc <- r.Run(ctx) }()
	t.Cleanup(func() { run.stop(t) })
	return run
}

// stop cancels the relay and returns what Run returned (nil again after the first stop).
func (run *running) stop(t *testing.T) error {
	t.Helper()
	run.cancel()
	if run.errc == nil {
		return nil
	}
	err := testwait.Recv(t, "the relay's Run to return", run.errc)
	run.errc = nil
	return err
}

// writer appends n events, one or a few per append, to streams cart-0 … cart-(streams-1)
// chosen at random (seeded), on its own goroutine, at rate appends per second (0: as fast as
// it can); wait waits for it and returns the events in append order.
type writer struct {
	wg     sync.WaitGroup
	err    error
	events []annals.Event
	stream []string
}

func startWriter(t *testing.T, store annals.Appender, n, streams, rate int) *writer {
	t.Helper()
	seed := rand.Uint64()
	t.Logf("writer seed %d", seed)
	rng := rand.New(rand.NewPCG(seed, 0))
	w := &writer{}
	w.wg.Add(1)
	go func() {
		defer w.wg.Done()
		start := time.Now()
		for appends := int64(0); len(w.events) < n; appends++ {
			if rate > 0 {
				testwait.Pace(context.Background(), start, appends, rate)
			}
			stream := fmt.Sprintf("cart-%d", rng.IntN(streams))
			var batch []annals.Event
			for range min(1+rng.IntN(3), n-len(w.events)) {
				batch = append(batch, annals.Event{ID: annals.NewUUID(), Type: "Added", Data: fmt.Appendf(nil, `{"n":%d}`, len(w.events)+len(batch))})
			}
			if _, err := store.Append(context.Background(), stream, annals.Any, batch...); err != nil {
				w.err = err
				return
			}
			for _, ev := range batch {
				w.events = append(w.events, ev)
				w.stream = append(w.stream, stream)
			}
		}
	}()
	t.Cleanup(w.wg.Wait)
	return w
}

func (w *writer) wait(t *testing.T) {
	t.Helper()
	w.wg.Wait()
	if w.err != nil {
		t.Fatalf("writer: %v", w.err)
	}
}

// streamCount returns how many messages the JetStream stream holds.
func streamCount(t *testing.T, url, stream string) uint64 {
	t.Helper()
	nc, err := nats.Connect(url)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, _ := jetstream.New(nc)
	s, err := js.Stream(testwait.Context(t), stream)
	if err != nil {
		t.Fatal(err)
	}
	return s.CachedInfo().State.Msgs
}

// checkDelivered waits until the JetStream stream holds as many messages as w appended and
// checks that each event is there exactly once, and in order within its stream.
func checkDelivered(t *testing.T, url, stream string, w *writer) {
	t.Helper()
	w.wait(t)
	testwait.Until(t, fmt.Sprintf("%d messages in %s", len(w.events), stream), func() bool {
		return streamCount(t, url, stream) >= uint64(len(w.events))
	})
	msgs := bustest.NATSMessages(t, url, stream)
	want := make(map[annals.UUID]string, len(w.events))
	for i, ev := range w.events {
		want[ev.ID] = w.stream[i]
	}
	seen := make(map[annals.UUID]bool, len(msgs))
	last := map[string]uint64{}
	for _, m := range msgs {
		bm := bridge.Message{Subject: m.Subject, Value: m.Data}
		for k, vs := range m.Header {
			for _, v := range vs {
				bm.Headers = append(bm.Headers, bridge.Header{Key: k, Value: []byte(v)})
			}
		}
		ev, err := bridge.Recorded(&bm)
		if err != nil {
			t.Fatalf("message %d: %v", m.Sequence, err)
		}
		if m.Header.Get(jetstream.MsgIDHeader) != ev.ID.String() {
			t.Errorf("message %d: Nats-Msg-Id %q, want the event id %s", m.Sequence, m.Header.Get(jetstream.MsgIDHeader), ev.ID)
		}
		if seen[ev.ID] {
			t.Errorf("message %d: event %s stored twice", m.Sequence, ev.ID)
		}
		seen[ev.ID] = true
		if s, ok := want[ev.ID]; !ok || s != ev.Stream {
			t.Errorf("message %d: event %s of %s was not appended there", m.Sequence, ev.ID, ev.Stream)
		}
		if r, ok := last[ev.Stream]; ok && ev.Revision != r+1 {
			t.Errorf("message %d: %s revision %d after %d: out of order or a gap", m.Sequence, ev.Stream, ev.Revision, r)
		}
		last[ev.Stream] = ev.Revision
	}
	if len(seen) != len(want) {
		t.Errorf("%d events in the stream, want %d", len(seen), len(want))
	}
}

func TestRelay(t *testing.T) {
	n := bustest.StartNATS(t)
	store := memstore.New(nil)
	p := openPublisher(t, n.URL(), natsbus.PublisherOptions{})
	w := startWriter(t, store, 2_000, 20, 0)
	startRelay(t, store, p, "nats", "events")
	checkDelivered(t, n.URL(), "EVENTS", w)
}

// TestRelayRestart stops the relay in the middle and starts another on the same store: the
// tail it published again after its checkpoint is dropped by JetStream.
func TestRelayRestart(t *testing.T) {
	n := bustest.StartNATS(t)
	store := memstore.New(nil)
	p := openPublisher(t, n.URL(), natsbus.PublisherOptions{})
	w := startWriter(t, store, 3_000, 20, 0)
	first := startRelay(t, store, p, "nats", "events")
	testwait.Until(t, "a third published", func() bool { return streamCount(t, n.URL(), "EVENTS") >= 1_000 })
	if err := first.stop(t); err != nil {
		t.Fatalf("first relay: %v", err)
	}
	startRelay(t, store, p, "nats", "events")
	checkDelivered(t, n.URL(), "EVENTS", w)
}

// TestRelayOutage stops the NATS server three times while a writer appends and the relay
// publishes, and starts it again: nothing is lost, nothing stored twice, order holds.
func TestRelayOutage(t *testing.T) {
	n := bustest.StartNATS(t)
	store := memstore.New(nil)
	p := openPublisher(t, n.URL(), natsbus.PublisherOptions{})
	w := startWriter(t, store, 4_000, 20, 2_000)
	run := startRelay(t, store, p, "nats", "events")
	for i := range uint64(3) {
		testwait.Until(t, "more published", func() bool { return streamCount(t, n.URL(), "EVENTS") >= 500*(i+1) })
		n.Stop()
		testwait.Until(t, "the relay to see the outage", func() bool { return run.r.Status().Errors > i })
		n.Start()
	}
	checkDelivered(t, n.URL(), "EVENTS", w)
}

// TestRelayPermanent: an event over the server's max payload stops the relay with an error
// naming it, after publishing what came before.
func TestRelayPermanent(t *testing.T) {
	n := bustest.StartNATSOptions(t, bustest.NATSOptions{MaxPayload: 4096})
	store := memstore.New(nil)
	ctx := testwait.Context(t)
	if _, err := store.Append(ctx, "cart-1", annals.Any, annals.Event{Type: "Small", Data: []byte(`{}`)}); err != nil {
		t.Fatal(err)
	}
	big := annals.Event{Type: "Big", Data: fmt.Appendf(nil, `{"x":%q}`, make([]byte, 8192))}
	if _, err := store.Append(ctx, "cart-1", annals.Any, big); err != nil {
		t.Fatal(err)
	}
	p := openPublisher(t, n.URL(), natsbus.PublisherOptions{})
	run := startRelay(t, store, p, "nats", "events")
	err := testwait.Recv(t, "the relay to stop", run.errc)
	run.errc = nil
	if !errors.Is(err, nats.ErrMaxPayload) {
		t.Errorf("Run: %v, want nats.ErrMaxPayload", err)
	}
	if got := streamCount(t, n.URL(), "EVENTS"); got != 1 {
		t.Errorf("stream holds %d messages, want the 1 before the big one", got)
	}
}

// TestMachineRelay runs the basic relay test against the machine's own JetStream.
func TestMachineRelay(t *testing.T) {
	url, stream, prefix := machineStream(t)
	store := memstore.New(nil)
	p := openPublisher(t, url, natsbus.PublisherOptions{Stream: natsbus.StreamOptions{Name: stream, Subjects: []string{prefix + ".>"}}})
	w := startWriter(t, store, 1_000, 10, 0)
	startRelay(t, store, p, "nats", prefix)
	checkDelivered(t, url, stream, w)
}
