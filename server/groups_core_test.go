package server

import (
	"errors"
	"os"
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
