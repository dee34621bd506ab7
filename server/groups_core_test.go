package server

import (
	"errors"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/annalsdb/annals"
	"github.com/annalsdb/annals/groups"
	annalsv1 "github.com/annalsdb/annals/internal/gen/annals/v1"
	"github.com/annalsdb/annals/internal/testwait"
	"github.com/annalsdb/annals/memstore"
)

// TestServeConsumeSendBound drives serveConsume through functions, as a transport does, with
// a client that never reads: once the joined answer is sent, every send blocks until the
// stream's writes are aborted. The watchdog aborts the send past ConsumeSendTimeout, the
// stream ends with the send's error, and the consumer leaves its group.
func TestServeConsumeSendBound(t *testing.T) {
	st := memstore.New(nil)
	defer st.Close()
	s := New(st, &Options{ConsumeSendTimeout: 100 * time.Millisecond})
	defer s.Close()
	svc, err := s.Groups(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := svc.Create(t.Context(), "g", groups.Settings{Stream: "order-1", MessageTimeout: time.Hour}); err != nil {
		t.Fatal(err)
	}
	if _, err := st.Append(t.Context(), "order-1", annals.Any, annals.Event{Type: "E"}); err != nil {
		t.Fatal(err)
	}
	interrupted, aborted := make(chan struct{}), make(chan struct{})
	var once1, once2 sync.Once
	sc := streamControl{
		interrupt:   func() { once1.Do(func() { close(interrupted) }) },
		abortWrites: func() { once2.Do(func() { close(aborted) }) },
		wait:        true,
	}
	joined := false
	recv := func() (*annalsv1.ConsumeRequest, error) {
		if !joined {
			joined = true
			return &annalsv1.ConsumeRequest{Kind: &annalsv1.ConsumeRequest_Join{Join: &annalsv1.ConsumeJoin{Group: "g"}}}, nil
		}
		<-interrupted
		return nil, os.ErrDeadlineExceeded
	}
	blocked := errors.New("send aborted")
	send := func(m *annalsv1.ConsumeResponse) error {
		if m.GetJoined() != nil {
			return nil
		}
		<-aborted
		return blocked
	}
	done := make(chan error, 1)
	go func() { done <- s.serveConsume(t.Context(), "Consume", recv, send, sc) }()
	if err := testwait.Recv(t, "the stream to end", done); !errors.Is(err, blocked) {
		t.Errorf("serveConsume: got %v, want the aborted send's error", err)
	}
	info, err := svc.Info(t.Context(), "g")
	if err != nil {
		t.Fatal(err)
	}
	if len(info.Consumers) != 0 {
		t.Errorf("after the stream ended: %d consumers, want 0", len(info.Consumers))
	}
}

// TestGroupsMetrics: a scrape reports the groups' figures, per group and per consumer name.
func TestGroupsMetrics(t *testing.T) {
	st := memstore.New(nil)
	defer st.Close()
	s := New(st, nil)
	defer s.Close()
	m := NewMetrics(nil)
	m.Watch(s)
	svc, err := s.Groups(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := svc.Create(t.Context(), "g", groups.Settings{Stream: "order-1", MessageTimeout: time.Hour}); err != nil {
		t.Fatal(err)
	}
	if _, err := st.Append(t.Context(), "order-1", annals.Any, annals.Event{Type: "E"}, annals.Event{Type: "E"}); err != nil {
		t.Fatal(err)
	}
	var cs []groups.Consumer
	for range 2 {
		// A window of one event each: the first consumer cannot take both.
		c, err := svc.Join(t.Context(), "g", &groups.JoinOptions{Name: "billing", Window: 1})
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		cs = append(cs, c)
	}
	msg, err := cs[0].Receive(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if err := cs[0].Ack(t.Context(), msg.Event.ID); err != nil {
		t.Fatal(err)
	}
	if _, err := cs[1].Receive(t.Context()); err != nil {
		t.Fatal(err)
	}
	body := scrape(t, m)
	for _, want := range []string{
		"annals_groups 1",
		`annals_group_consumers{group="g"} 2`,
		`annals_group_in_flight{group="g"} 1`,
		`annals_group_acked_total{group="g"} 1`,
		`annals_group_delivered_total{group="g"} 2`,
		`annals_group_lag{group="g"}`,
		`annals_group_parked{group="g"} 0`,
		`annals_group_buffered{group="g"} 0`,
		`annals_group_retries_total{group="g"} 0`,
		`annals_group_parked_total{group="g"} 0`,
		`annals_group_consumer_in_flight{consumer="billing",group="g"} 1`,
		`annals_group_consumer_delivered_total{consumer="billing",group="g"} 2`,
		`annals_group_consumer_acked_total{consumer="billing",group="g"} 1`,
		"annals_group_consume_streams 0",
	} {
		if !strings.Contains(body, want) {
			t.Errorf("no %q in the metrics:\n%s", want, grepLines(body, "annals_group"))
		}
	}
}

// grepLines returns the lines of s that contain word.
func grepLines(s, word string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, word) && !strings.HasPrefix(l, "#") {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}
