package natsbus_test

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/annalsdb/annals"
	"github.com/annalsdb/annals/bridge"
	"github.com/annalsdb/annals/internal/bustest"
	"github.com/annalsdb/annals/internal/testwait"
	"github.com/annalsdb/annals/natsbus"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// publishN publishes n messages to subject through p, numbered from 0 in their value, and
// waits for their acks; it returns their ids.
func publishN(t *testing.T, p *natsbus.Publisher, subject string, n int) []annals.UUID {
	t.Helper()
	var r results
	ids := make([]annals.UUID, n)
	for i := range n {
		ids[i] = annals.NewUUID()
		if err := p.Publish(testwait.Context(t), message(subject, ids[i], fmt.Sprint(i)), r.done(i)); err != nil {
			t.Fatalf("Publish %d: %v", i, err)
		}
	}
	for i, err := range r.wait(t, n) {
		if err != nil {
			t.Fatalf("publish %d: %v", i, err)
		}
	}
	return ids
}

// fetchN fetches until it has n messages.
func fetchN(t *testing.T, s *natsbus.Source, n int) []bridge.Incoming {
	t.Helper()
	var got []bridge.Incoming
	for len(got) < n {
		batch, err := s.Fetch(testwait.Context(t), 7)
		if err != nil {
			t.Fatalf("Fetch after %d messages: %v", len(got), err)
		}
		if len(batch) == 0 || len(batch) > 7 {
			t.Fatalf("Fetch returned %d messages, want 1 to 7", len(batch))
		}
		got = append(got, batch...)
	}
	return got
}

func TestSource(t *testing.T) {
	n := bustest.StartNATS(t)
	p := openPublisher(t, n.URL(), natsbus.PublisherOptions{})
	ids := publishN(t, p, "events.cart.cart-1", 30)
	publishN(t, p, "events.other.x", 5)

	s, err := natsbus.OpenSource(testwait.Context(t), natsbus.SourceOptions{URL: n.URL(), Stream: "EVENTS", FilterSubjects: []string{"events.cart.>"}})
	if err != nil {
		t.Fatalf("OpenSource: %v", err)
	}
	defer s.Close()
	for _, tc := range []struct {
		name   string
		resume uint64
		ok     bool
	}{{"from the start", 0, false}, {"after offset 12", 12, true}, {"after the last", 30, true}} {
		t.Run(tc.name, func(t *testing.T) {
			err := s.Start(testwait.Context(t), func(_ context.Context, source string) (uint64, bool, error) {
				if source != "nats:EVENTS" {
					t.Errorf("resume(%q), want nats:EVENTS", source)
				}
				return tc.resume, tc.ok, nil
			})
			if err != nil {
				t.Fatalf("Start: %v", err)
			}
			want := 30 - int(tc.resume)
			if want == 0 {
				ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
				defer cancel()
				if got, err := s.Fetch(ctx, 10); err == nil {
					t.Errorf("Fetch past the last: %d messages, want none", len(got))
				}
				return
			}
			got := fetchN(t, s, want)
			if len(got) != want {
				t.Fatalf("got %d messages, want %d", len(got), want)
			}
			for i, m := range got {
				seq := tc.resume + uint64(i) + 1
				if m.Source != "nats:EVENTS" || m.Offset != seq || m.ID != ids[seq-1] || m.Subject != "events.cart.cart-1" ||
					string(m.Value) != fmt.Sprint(seq-1) {
					t.Errorf("message %d = %+v, want offset %d, id %s", i, m, seq, ids[seq-1])
				}
				if v, ok := header(&m.Message, bridge.HeaderStream); !ok || v != "cart-1" {
					t.Errorf("message %d: header %s = %q, want cart-1", i, bridge.HeaderStream, v)
				}
			}
		})
	}
	if err := s.Stop(); err != nil {
		t.Errorf("Stop: %v", err)
	}
}

// header returns the first header named key.
func header(m *bridge.Message, key string) (string, bool) {
	for _, h := range m.Headers {
		if h.Key == key {
			return string(h.Value), true
		}
	}
	return "", false
}

// TestSourceOutage: the source goes on after the server is stopped and started again, from
// where it was.
func TestSourceOutage(t *testing.T) {
	n := bustest.StartNATS(t)
	p := openPublisher(t, n.URL(), natsbus.PublisherOptions{})
	ids := publishN(t, p, "events.cart.cart-1", 10)
	s, err := natsbus.OpenSource(testwait.Context(t), natsbus.SourceOptions{URL: n.URL(), Stream: "EVENTS"})
	if err != nil {
		t.Fatalf("OpenSource: %v", err)
	}
	defer s.Close()
	if err := s.Start(testwait.Context(t), func(context.Context, string) (uint64, bool, error) { return 0, false, nil }); err != nil {
		t.Fatalf("Start: %v", err)
	}
	got := fetchN(t, s, 10)
	n.Stop()
	n.Start()
	testwait.UntilNil(t, "publishing after the outage", func() error {
		var r results
		if err := p.Publish(testwait.Context(t), message("events.cart.cart-1", annals.NewUUID(), "after"), r.done(0)); err != nil {
			return err
		}
		return r.wait(t, 1)[0]
	})
	ids = append(ids, annals.UUID{}) // the message after the outage (the failed tries are not stored)
	got = append(got, fetchN(t, s, 1)...)
	for i, m := range got {
		if m.Offset != uint64(i+1) || (i < 10 && m.ID != ids[i]) {
			t.Errorf("message %d: offset %d id %s, want offset %d", i, m.Offset, m.ID, i+1)
		}
	}
	if string(got[10].Value) != "after" {
		t.Errorf("message after the outage: %q, want after", got[10].Value)
	}
}

// TestSourceStreamDeleted: Fetch returns an error when the stream is deleted under it.
func TestSourceStreamDeleted(t *testing.T) {
	n := bustest.StartNATS(t)
	p := openPublisher(t, n.URL(), natsbus.PublisherOptions{})
	publishN(t, p, "events.cart.cart-1", 3)
	s, err := natsbus.OpenSource(testwait.Context(t), natsbus.SourceOptions{URL: n.URL(), Stream: "EVENTS"})
	if err != nil {
		t.Fatalf("OpenSource: %v", err)
	}
	defer s.Close()
	if err := s.Start(testwait.Context(t), func(context.Context, string) (uint64, bool, error) { return 0, false, nil }); err != nil {
		t.Fatalf("Start: %v", err)
	}
	fetchN(t, s, 3)
	nc, err := nats.Connect(n.URL())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, _ := jetstream.New(nc)
	if err := js.DeleteStream(testwait.Context(t), "EVENTS"); err != nil {
		t.Fatal(err)
	}
	got, err := s.Fetch(testwait.Context(t), 10)
	if !errors.Is(err, jetstream.ErrStreamNotFound) {
		t.Errorf("Fetch after the stream's deletion: %d messages, %v, want ErrStreamNotFound", len(got), err)
	}
}
