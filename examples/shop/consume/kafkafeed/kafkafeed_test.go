package kafkafeed_test

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
	"github.com/annalsdb/annals/examples/shop/consume/kafkafeed"
	"github.com/annalsdb/annals/groups"
	"github.com/annalsdb/annals/internal/testwait"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
)

// TestFeedHandlesEveryEvent produces events as a relay does (keyed by stream, each twice, as a
// relay's restart publishes again) to an in-process Kafka, and runs two replicas of a service
// on the feed, one of which stops mid-way; some handlings fail for now, one for good. Every
// event is handled to success once (the one that fails for good, once, and dropped), in its
// stream's order, and nothing of the topic the service does not read reaches the handler.
func TestFeedHandlesEveryEvent(t *testing.T) {
	c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(4, "ev.order", "ev.other"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	brokers := c.ListenAddrs()
	prod, err := kgo.NewClient(kgo.SeedBrokers(brokers...))
	if err != nil {
		t.Fatal(err)
	}
	defer prod.Close()
	subject, err := bridge.ParseTemplate("ev.{category}")
	if err != nil {
		t.Fatal(err)
	}
	enc := bridge.Encoder{Subject: subject, Bus: bridge.Kafka}
	h := &handler{events: map[annals.UUID]*handled{}, last: map[string]uint64{}}
	ctx := t.Context()
	const n = 300
	publish := func(from, to int) {
		for i := from; i < to; i++ {
			ev := annals.RecordedEvent{ID: annals.NewUUID(), Stream: fmt.Sprintf("order-%d", i%17), Type: "OrderPlaced",
				Data: []byte(`{}`), Position: uint64(i + 1), Time: time.Now()}
			switch {
			case i%10 == 3:
				ev.Stream = fmt.Sprintf("other-%d", i) // a topic the service does not read
			case i == 50:
				ev.Type = "Bad"
			}
			h.expect(ev, i%10 != 3)
			m, err := enc.Encode(&ev)
			if err != nil {
				t.Fatal(err)
			}
			r := &kgo.Record{Topic: m.Subject, Key: m.Key, Value: m.Value}
			for _, hd := range m.Headers {
				r.Headers = append(r.Headers, kgo.RecordHeader{Key: hd.Key, Value: hd.Value})
			}
			for range 2 { // a relay's restart publishes again: the feed drops the second
				if err := prod.ProduceSync(ctx, r).FirstErr(); err != nil {
					t.Fatal(err)
				}
			}
		}
	}
	publish(0, n/2)

	feed := &kafkafeed.Feed{Brokers: brokers, Topics: []string{"ev.order"}}
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
	stopFirst() // a graceful stop: it commits what it handled and leaves the group
	publish(n/2, n)
	testwait.UntilNil(t, "every event handled", h.check)
}

// handled is what the handler saw of one event.
type handled struct {
	want      bool // the feed's topics hold it
	bad       bool // it fails for good
	attempts  int
	successes int
}

// handler fails the first attempt of every seventh event for now, and the event of type Bad
// for good; it checks each stream's order.
type handler struct {
	mu     sync.Mutex
	events map[annals.UUID]*handled
	last   map[string]uint64 // by stream: the position handled last
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
	ev := m.Event
	e := h.events[ev.ID]
	if e == nil || !e.want {
		h.errs = append(h.errs, fmt.Errorf("%s %s handled: not in the feed's topics", ev.Stream, ev.ID))
		return nil
	}
	e.attempts++
	switch {
	case ev.Type == "Bad":
		return consume.Permanent(errors.New("bad"))
	case ev.Position%7 == 0 && e.attempts == 1:
		return errors.New("not now")
	}
	if ev.Position < h.last[ev.Stream] {
		h.errs = append(h.errs, fmt.Errorf("%s: position %d handled after %d", ev.Stream, ev.Position, h.last[ev.Stream]))
	}
	h.last[ev.Stream] = ev.Position
	e.successes++
	return nil
}

// done counts the events handled to success.
func (h *handler) done() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	n := 0
	for _, e := range h.events {
		if e.successes > 0 {
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
		case e.attempts == 0 || (e.successes == 0 && !e.bad):
			missing++
		case e.bad && e.attempts > 1:
			errs = append(errs, fmt.Errorf("event %s failed for good %d times: want it dropped after one", id, e.attempts))
		case e.successes > 1:
			errs = append(errs, fmt.Errorf("event %s handled %d times: a duplicate not dropped", id, e.successes))
		}
	}
	if missing > 0 {
		errs = append(errs, fmt.Errorf("%d events not handled yet", missing))
	}
	return errors.Join(errs...)
}
