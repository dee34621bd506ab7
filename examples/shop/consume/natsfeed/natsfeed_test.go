package natsfeed_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/annalsdb/annals"
	"github.com/annalsdb/annals/bridge"
	"github.com/annalsdb/annals/examples/shop/consume"
	"github.com/annalsdb/annals/examples/shop/consume/natsfeed"
	"github.com/annalsdb/annals/groups"
	"github.com/annalsdb/annals/internal/testwait"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// TestFeedHandlesEveryEvent publishes events as a relay does to an in-process JetStream and
// runs two replicas of a service on the feed, one of which stops mid-way; some handlings fail
// for now, one for good. Every event the filter selects is handled to success (the one that
// fails for good, once), no other event reaches the handler, and the consumer ends with
// nothing pending.
func TestFeedHandlesEveryEvent(t *testing.T) {
	url := startNATS(t)
	nc, err := nats.Connect(url)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	ctx := t.Context()
	if _, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: "EV", Subjects: []string{"ev.>"}}); err != nil {
		t.Fatal(err)
	}
	subject, err := bridge.ParseTemplate("ev.{category}.{stream}")
	if err != nil {
		t.Fatal(err)
	}
	enc := bridge.Encoder{Subject: subject, Bus: bridge.NATS}
	h := &handler{events: map[annals.UUID]*handled{}}
	const n = 300
	publish := func(from, to int) {
		for i := from; i < to; i++ {
			ev := annals.RecordedEvent{ID: annals.NewUUID(), Stream: fmt.Sprintf("order-%d", i%17), Type: "OrderPlaced",
				Data: []byte(`{}`), Position: uint64(i + 1), Time: time.Now()}
			switch {
			case i%10 == 3:
				ev.Stream = fmt.Sprintf("other-%d", i) // a category the service does not take
			case i == 50:
				ev.Type = "Bad"
			}
			h.expect(ev, i%10 != 3) // before the handler may see it
			m, err := enc.Encode(&ev)
			if err != nil {
				t.Fatal(err)
			}
			msg := nats.NewMsg(m.Subject)
			msg.Data = m.Value
			for _, hd := range m.Headers {
				msg.Header.Add(hd.Key, string(hd.Value))
			}
			msg.Header.Set(jetstream.MsgIDHeader, m.ID.String())
			for range 2 { // a relay's restart publishes again: JetStream drops the second
				if _, err := js.PublishMsg(ctx, msg); err != nil {
					t.Fatal(err)
				}
			}
		}
	}
	publish(0, n/2)

	feed := &natsfeed.Feed{URL: url, Stream: "EV", Subjects: []string{"ev.order.>"}, AckWait: time.Second}
	opts := consume.Options{Group: "svc", Settings: groups.Settings{Filter: &annals.Filter{Categories: []string{"order"}}},
		Workers: 4, RetryDelay: 10 * time.Millisecond, Log: slog.New(slog.NewTextHandler(io.Discard, nil))}
	var wg sync.WaitGroup
	defer wg.Wait()
	first, stopFirst := context.WithCancel(ctx)
	defer stopFirst()
	all, stopAll := context.WithCancel(ctx)
	defer stopAll()
	for i, rctx := range []context.Context{first, all} {
		o := opts
		o.Consumer = fmt.Sprintf("svc-%d", i+1)
		wg.Go(func() {
			if err := feed.Run(rctx, o, h.handle); err != nil {
				t.Errorf("%s: %v", o.Consumer, err)
			}
		})
	}
	testwait.Until(t, "a third of the events handled", func() bool { return h.done() >= n/3 })
	stopFirst()
	publish(n/2, n)
	testwait.UntilNil(t, "every event handled", h.check)
	testwait.UntilNil(t, "nothing pending on the consumer", func() error {
		info, err := js.Consumer(ctx, "EV", "svc")
		if err != nil {
			return err
		}
		ci, err := info.Info(ctx)
		if err != nil {
			return err
		}
		if ci.NumPending != 0 || ci.NumAckPending != 0 {
			return fmt.Errorf("pending %d, ack pending %d", ci.NumPending, ci.NumAckPending)
		}
		return nil
	})
	if err := h.check(); err != nil {
		t.Fatal(err)
	}
}

// handled is what the handler saw of one event.
type handled struct {
	want     bool // the filter takes it
	bad      bool // it fails for good
	attempts int
	ok       bool
}

// handler fails the first attempt of every seventh event for now, and the event of type Bad
// for good.
type handler struct {
	mu     sync.Mutex
	events map[annals.UUID]*handled
	errs   []error
}

func (h *handler) expect(ev annals.RecordedEvent, want bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.events[ev.ID] = &handled{want: want, bad: ev.Type == "Bad"}
}

func (h *handler) handle(_ context.Context, m groups.Message) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	e := h.events[m.Event.ID]
	if e == nil || !e.want {
		h.errs = append(h.errs, fmt.Errorf("%s %s handled: not in the feed's filter", m.Event.Stream, m.Event.ID))
		return nil
	}
	e.attempts++
	switch {
	case m.Event.Type == "Bad":
		return consume.Permanent(errors.New("bad"))
	case m.Event.Position%7 == 0 && e.attempts == 1:
		return errors.New("not now")
	}
	e.ok = true
	return nil
}

// done counts the events handled to success.
func (h *handler) done() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	n := 0
	for _, e := range h.events {
		if e.ok {
			n++
		}
	}
	return n
}

// check says what is not as it should be yet.
func (h *handler) check() error {
	h.mu.Lock()
	defer h.mu.Unlock()
	errs := append([]error(nil), h.errs...)
	missing := 0
	for id, e := range h.events {
		switch {
		case !e.want:
		case e.attempts == 0 || (!e.ok && !e.bad):
			missing++
		case e.bad && e.attempts > 1:
			errs = append(errs, fmt.Errorf("event %s failed for good %d times: want it terminated after one", id, e.attempts))
		case e.attempts > 2:
			errs = append(errs, fmt.Errorf("event %s handled %d times: redelivered though acked", id, e.attempts))
		}
	}
	if missing > 0 {
		errs = append(errs, fmt.Errorf("%d events not handled yet", missing))
	}
	return errors.Join(errs...)
}

// startNATS starts a NATS server with JetStream in process, for the test, and returns its URL.
func startNATS(t *testing.T) string {
	s, err := server.NewServer(&server.Options{Host: "127.0.0.1", Port: server.RANDOM_PORT, JetStream: true,
		StoreDir: t.TempDir(), NoSigs: true, NoLog: true})
	if err != nil {
		t.Fatal(err)
	}
	s.Start()
	t.Cleanup(func() { s.Shutdown(); s.WaitForShutdown() })
	if !s.ReadyForConnections(10 * time.Second) {
		t.Fatal("nats: not ready")
	}
	return s.ClientURL()
}
