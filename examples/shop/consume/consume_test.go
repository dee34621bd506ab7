package consume_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"testing"

	"github.com/annalsdb/annals"
	"github.com/annalsdb/annals/examples/shop/consume"
	"github.com/annalsdb/annals/groups"
	"github.com/annalsdb/annals/internal/testwait"
)

// TestRunSettles checks what Run does with each outcome of the handler: nil acks, an error
// nacks for a retry, a permanent error parks; and that a stop lets a handling under way finish
// and acks it before the consumer leaves.
func TestRunSettles(t *testing.T) {
	svc := &fakeService{c: &fakeConsumer{msgs: make(chan groups.Message, 10), settled: map[annals.UUID]string{}}}
	ids := make([]annals.UUID, 4)
	for i := range ids {
		ids[i] = annals.NewUUID()
		svc.c.msgs <- groups.Message{Event: annals.RecordedEvent{ID: ids[i], Stream: "s", Type: fmt.Sprint(i)}}
	}
	release := make(chan struct{})
	handle := func(ctx context.Context, m groups.Message) error {
		switch m.Event.Type {
		case "1":
			return errors.New("not now")
		case "2":
			return consume.Permanent(errors.New("never"))
		case "3":
			<-release // under way when Run is stopped
			return ctx.Err()
		}
		return nil
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- consume.Run(ctx, svc, consume.Options{Group: "g", Settings: groups.Settings{Stream: "s"}, Workers: 4,
			Log: slog.New(slog.NewTextHandler(io.Discard, nil))}, handle)
	}()
	testwait.Until(t, "three events settled", func() bool { return svc.c.count() == 3 })
	cancel()
	close(release)
	if err := testwait.Recv(t, "Run to return", done); err != nil {
		t.Fatalf("Run: %v", err)
	}
	want := map[annals.UUID]string{ids[0]: "ack", ids[1]: "retry", ids[2]: "park", ids[3]: "ack"}
	for id, w := range want {
		if got := svc.c.settled[id]; got != w {
			t.Errorf("event %s: %q, want %q", id, got, w)
		}
	}
	if !svc.c.closed || svc.created != 1 {
		t.Errorf("consumer closed %v, group created %d times: want true, 1", svc.c.closed, svc.created)
	}
}

type fakeService struct {
	groups.Service
	created int
	c       *fakeConsumer
}

func (s *fakeService) Create(ctx context.Context, name string, settings groups.Settings) (groups.Definition, error) {
	s.created++
	return groups.Definition{Name: name, Settings: settings}, nil
}

func (s *fakeService) Info(ctx context.Context, name string) (groups.Info, error) {
	if s.created == 0 {
		return groups.Info{}, groups.ErrGroupNotFound
	}
	return groups.Info{}, nil
}

func (s *fakeService) Join(ctx context.Context, name string, opts *groups.JoinOptions) (groups.Consumer, error) {
	return s.c, nil
}

type fakeConsumer struct {
	msgs    chan groups.Message
	mu      sync.Mutex
	settled map[annals.UUID]string
	closed  bool
}

func (c *fakeConsumer) Receive(ctx context.Context) (groups.Message, error) {
	select {
	case m := <-c.msgs:
		return m, nil
	case <-ctx.Done():
		return groups.Message{}, ctx.Err()
	}
}

func (c *fakeConsumer) settle(how string, ids []annals.UUID) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, id := range ids {
		c.settled[id] = how
	}
	return nil
}

func (c *fakeConsumer) count() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.settled)
}

func (c *fakeConsumer) Ack(ctx context.Context, ids ...annals.UUID) error {
	return c.settle("ack", ids)
}
func (c *fakeConsumer) Nack(ctx context.Context, n groups.Nack, ids ...annals.UUID) error {
	return c.settle(string(n.Action), ids)
}
func (c *fakeConsumer) Close() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.closed = true
	return nil
}
