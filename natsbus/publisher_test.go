package natsbus_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/annalsdb/annals"
	"github.com/annalsdb/annals/bridge"
	"github.com/annalsdb/annals/ingest"
	"github.com/annalsdb/annals/internal/bustest"
	"github.com/annalsdb/annals/internal/testwait"
	"github.com/annalsdb/annals/natsbus"
	"github.com/annalsdb/annals/relay"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// openPublisher opens a publisher on the stream "EVENTS" (subjects "events.>") of the server
// at url, closed at the test's end.
func openPublisher(t *testing.T, url string, opts natsbus.PublisherOptions) *natsbus.Publisher {
	t.Helper()
	opts.URL = url
	if opts.Stream.Name == "" {
		opts.Stream = natsbus.StreamOptions{Name: "EVENTS", Subjects: []string{"events.>"}}
	}
	p, err := natsbus.OpenPublisher(testwait.Context(t), opts)
	if err != nil {
		t.Fatalf("OpenPublisher: %v", err)
	}
	t.Cleanup(func() {
		if err := p.Close(context.Background()); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return p
}

// results collects the outcomes of publishes.
type results struct {
	mu   sync.Mutex
	errs map[int]error
}

func (r *results) done(i int) func(error) {
	return func(err error) {
		r.mu.Lock()
		defer r.mu.Unlock()
		if r.errs == nil {
			r.errs = map[int]error{}
		}
		if _, ok := r.errs[i]; ok {
			panic(fmt.Sprintf("done of publish %d called twice", i))
		}
		r.errs[i] = err
	}
}

// wait waits for n outcomes and returns them by publish.
func (r *results) wait(t *testing.T, n int) map[int]error {
	t.Helper()
	testwait.Until(t, fmt.Sprintf("%d acks", n), func() bool {
		r.mu.Lock()
		defer r.mu.Unlock()
		return len(r.errs) >= n
	})
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make(map[int]error, len(r.errs))
	for k, v := range r.errs {
		out[k] = v
	}
	return out
}

func message(subject string, id annals.UUID, value string) *bridge.Message {
	return &bridge.Message{
		Subject: subject,
		Headers: []bridge.Header{{Key: bridge.HeaderType, Value: []byte("Added")}, {Key: bridge.HeaderStream, Value: []byte("cart-1")}},
		Value:   []byte(value),
		ID:      id,
	}
}

func TestPublisherHeadersAndDuplicates(t *testing.T) {
	n := bustest.StartNATS(t)
	p := openPublisher(t, n.URL(), natsbus.PublisherOptions{})
	if got, want := p.String(), "nats "+n.URL()+" stream EVENTS"; got != want {
		t.Errorf("String() = %q, want %q", got, want)
	}
	ids := []annals.UUID{annals.NewUUID(), annals.NewUUID()}
	var r results
	ctx := testwait.Context(t)
	// The second is published twice: JetStream stores it once.
	for i, m := range []*bridge.Message{
		message("events.cart.cart-1", ids[0], `{"n":0}`),
		message("events.cart.cart-1", ids[1], `{"n":1}`),
		message("events.cart.cart-1", ids[1], `{"n":1}`),
	} {
		if err := p.Publish(ctx, m, r.done(i)); err != nil {
			t.Fatalf("Publish %d: %v", i, err)
		}
	}
	for i, err := range r.wait(t, 3) {
		if err != nil {
			t.Errorf("publish %d: %v", i, err)
		}
	}
	got := bustest.NATSMessages(t, n.URL(), "EVENTS")
	if len(got) != 2 {
		t.Fatalf("stream holds %d messages, want 2 (the duplicate dropped): %+v", len(got), got)
	}
	for i, m := range got {
		if m.Subject != "events.cart.cart-1" || m.Header.Get(jetstream.MsgIDHeader) != ids[i].String() ||
			m.Header.Get(bridge.HeaderType) != "Added" || m.Header.Get(bridge.HeaderStream) != "cart-1" ||
			string(m.Data) != fmt.Sprintf(`{"n":%d}`, i) {
			t.Errorf("message %d = %+v, want id %s, type Added, stream cart-1", i, m, ids[i])
		}
	}
}

func TestPublisherPermanent(t *testing.T) {
	n := bustest.StartNATSOptions(t, bustest.NATSOptions{MaxPayload: 1024})
	p := openPublisher(t, n.URL(), natsbus.PublisherOptions{})
	var r results
	ctx := testwait.Context(t)
	big := message("events.cart.cart-1", annals.NewUUID(), strings.Repeat("x", 2048))
	if err := p.Publish(ctx, big, r.done(0)); err != nil {
		t.Fatalf("Publish: %v", err)
	}
	if err := p.Publish(ctx, message("other.cart", annals.NewUUID(), "{}"), r.done(1)); err != nil {
		t.Fatalf("Publish: %v", err)
	}
	errs := r.wait(t, 2)
	if err := errs[0]; !errors.Is(err, nats.ErrMaxPayload) || !p.Permanent(err) {
		t.Errorf("over max payload: %v (permanent %v), want nats.ErrMaxPayload, permanent", err, p.Permanent(err))
	}
	if err := errs[1]; err == nil || !p.Permanent(err) || !strings.Contains(err.Error(), "not bound by stream EVENTS") {
		t.Errorf("unbound subject: %v (permanent %v), want a permanent error naming the stream", err, p.Permanent(err))
	}
	for _, err := range []error{nats.ErrDisconnected, jetstream.ErrNoStreamResponse, jetstream.ErrAsyncPublishTimeout, nats.ErrReconnectBufExceeded} {
		if p.Permanent(fmt.Errorf("natsbus: publish: %w", err)) {
			t.Errorf("Permanent(%v) = true, want false", err)
		}
	}
}

func TestOpenPublisherMissingStream(t *testing.T) {
	n := bustest.StartNATS(t)
	_, err := natsbus.OpenPublisher(testwait.Context(t), natsbus.PublisherOptions{URL: n.URL(), Stream: natsbus.StreamOptions{Name: "NOPE"}})
	if !errors.Is(err, jetstream.ErrStreamNotFound) || !strings.Contains(err.Error(), "nats stream add NOPE") {
		t.Errorf("OpenPublisher of a missing stream: %v, want ErrStreamNotFound saying how to create it", err)
	}
	_, err = natsbus.OpenPublisher(testwait.Context(t), natsbus.PublisherOptions{URL: "nats://127.0.0.1:1", Stream: natsbus.StreamOptions{Name: "NOPE"}})
	if err == nil || !strings.Contains(err.Error(), "connect to NATS at nats://127.0.0.1:1") {
		t.Errorf("OpenPublisher of no server: %v, want a connect error", err)
	}
}

// TestPublisherBlocksAndClose: a publisher with MaxPending publishes awaiting an ack blocks
// in Publish until its context ends; Close gives up on the acks when its context ends and
// every done is called.
func TestPublisherBlocksAndClose(t *testing.T) {
	n := bustest.StartNATS(t)
	p, err := natsbus.OpenPublisher(testwait.Context(t), natsbus.PublisherOptions{
		URL: n.URL(), MaxPending: 2,
		Stream: natsbus.StreamOptions{Name: "EVENTS", Subjects: []string{"events.>"}},
	})
	if err != nil {
		t.Fatalf("OpenPublisher: %v", err)
	}
	// Delete the stream and answer its subjects with a subscriber that never acks: the
	// publishes wait for acks that do not come.
	nc, err := nats.Connect(n.URL())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, _ := jetstream.New(nc)
	if err := js.DeleteStream(testwait.Context(t), "EVENTS"); err != nil {
		t.Fatal(err)
	}
	if _, err := nc.Subscribe("events.>", func(*nats.Msg) {}); err != nil {
		t.Fatal(err)
	}
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
	var r results
	for i := range 2 {
		if err := p.Publish(testwait.Context(t), message("events.a.a", annals.NewUUID(), "{}"), r.done(i)); err != nil {
			t.Fatalf("Publish %d: %v", i, err)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	if err := p.Publish(ctx, message("events.a.a", annals.NewUUID(), "{}"), r.done(2)); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Publish past MaxPending: %v, want context.DeadlineExceeded", err)
	}
	cctx, ccancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer ccancel()
	if err := p.Close(cctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Close: %v, want context.DeadlineExceeded", err)
	}
	errs := r.wait(t, 2)
	if len(errs) != 2 || !errors.Is(errs[0], natsbus.ErrClosed) || !errors.Is(errs[1], natsbus.ErrClosed) {
		t.Errorf("outcomes after Close: %v, want ErrClosed for publishes 0 and 1 (2 never published)", errs)
	}
	if err := p.Publish(testwait.Context(t), message("events.a.a", annals.NewUUID(), "{}"), r.done(3)); err != nil {
		t.Errorf("Publish after Close: %v", err)
	}
	if err := r.wait(t, 3)[3]; !errors.Is(err, natsbus.ErrClosed) || !p.Permanent(err) {
		t.Errorf("Publish after Close: done(%v), want ErrClosed, permanent", err)
	}
}

// TestPublisherOutage: while the server is down, publishes fail with transient errors (or
// wait); after it comes back, they succeed, and the stream keeps what it held.
func TestPublisherOutage(t *testing.T) {
	n := bustest.StartNATS(t)
	p := openPublisher(t, n.URL(), natsbus.PublisherOptions{AckTimeout: 2 * time.Second})
	ctx := testwait.Context(t)
	var r results
	if err := p.Publish(ctx, message("events.a.a", annals.NewUUID(), "before"), r.done(0)); err != nil {
		t.Fatal(err)
	}
	if err := r.wait(t, 1)[0]; err != nil {
		t.Fatalf("publish before the outage: %v", err)
	}
	n.Stop()
	if err := p.Publish(ctx, message("events.a.a", annals.NewUUID(), "during"), r.done(1)); err != nil {
		t.Fatal(err)
	}
	if err := r.wait(t, 2)[1]; err == nil || p.Permanent(err) {
		t.Errorf("publish during the outage: %v, want a transient error", err)
	}
	n.Start()
	testwait.UntilNil(t, "a publish after the outage", func() error {
		var r results
		if err := p.Publish(ctx, message("events.a.a", annals.NewUUID(), "after"), r.done(0)); err != nil {
			return err
		}
		err := r.wait(t, 1)[0]
		if err != nil && p.Permanent(err) {
			t.Fatalf("publish after the outage: permanent error %v", err)
		}
		return err
	})
	got := bustest.NATSMessages(t, n.URL(), "EVENTS")
	if len(got) < 2 || !bytes.Equal(got[0].Data, []byte("before")) || !bytes.Equal(got[len(got)-1].Data, []byte("after")) {
		t.Errorf("stream after the outage: %+v, want before … after", got)
	}
}

// The types implement the interfaces of the relay and the ingest.
var (
	_ relay.Publisher = (*natsbus.Publisher)(nil)
	_ ingest.Source   = (*natsbus.Source)(nil)
)

// TestPublisherAckTimeout: a publish whose ack does not come within AckTimeout fails with a
// transient error.
func TestPublisherAckTimeout(t *testing.T) {
	n := bustest.StartNATS(t)
	p := openPublisher(t, n.URL(), natsbus.PublisherOptions{AckTimeout: 50 * time.Millisecond})
	nc, err := nats.Connect(n.URL())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, _ := jetstream.New(nc)
	if err := js.DeleteStream(testwait.Context(t), "EVENTS"); err != nil {
		t.Fatal(err)
	}
	if _, err := nc.Subscribe("events.>", func(*nats.Msg) {}); err != nil {
		t.Fatal(err)
	}
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
	var r results
	if err := p.Publish(testwait.Context(t), message("events.a.a", annals.NewUUID(), "{}"), r.done(0)); err != nil {
		t.Fatal(err)
	}
	if err := r.wait(t, 1)[0]; !errors.Is(err, jetstream.ErrAsyncPublishTimeout) || p.Permanent(err) {
		t.Errorf("publish without an ack: %v (permanent %v), want a transient ErrAsyncPublishTimeout", err, p.Permanent(err))
	}
}

// TestPublisherConn: a publisher on the caller's connection leaves it open.
func TestPublisherConn(t *testing.T) {
	n := bustest.StartNATS(t)
	nc, err := nats.Connect(n.URL(), nats.ReconnectBufSize(-1))
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	p, err := natsbus.OpenPublisher(testwait.Context(t), natsbus.PublisherOptions{Conn: nc, Stream: natsbus.StreamOptions{Name: "EVENTS", Subjects: []string{"events.>"}}})
	if err != nil {
		t.Fatalf("OpenPublisher: %v", err)
	}
	publishN(t, p, "events.a.a", 3)
	if err := p.Close(testwait.Context(t)); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if nc.IsClosed() {
		t.Error("Close closed the caller's connection")
	}
	if got := streamCount(t, n.URL(), "EVENTS"); got != 3 {
		t.Errorf("stream holds %d messages, want 3", got)
	}
}

// TestPublisherExpectStream: a subject that another stream took over since the publisher
// opened is refused for good (Nats-Expected-Stream), not stored there.
func TestPublisherExpectStream(t *testing.T) {
	n := bustest.StartNATS(t)
	p := openPublisher(t, n.URL(), natsbus.PublisherOptions{})
	nc, err := nats.Connect(n.URL())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, _ := jetstream.New(nc)
	ctx := testwait.Context(t)
	if _, err := js.UpdateStream(ctx, jetstream.StreamConfig{Name: "EVENTS", Subjects: []string{"old.>"}}); err != nil {
		t.Fatal(err)
	}
	if _, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: "OTHER", Subjects: []string{"events.>"}}); err != nil {
		t.Fatal(err)
	}
	var r results
	if err := p.Publish(ctx, message("events.a.a", annals.NewUUID(), "{}"), r.done(0)); err != nil {
		t.Fatal(err)
	}
	if err := r.wait(t, 1)[0]; err == nil || !p.Permanent(err) {
		t.Errorf("publish to a subject of another stream: %v (permanent %v), want a permanent error", err, p.Permanent(err))
	}
	if got := streamCount(t, n.URL(), "OTHER"); got != 0 {
		t.Errorf("the other stream holds %d messages, want 0", got)
	}
}
