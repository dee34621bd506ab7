package groups_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/annalsdb/annals"
	"github.com/annalsdb/annals/groups"
	"github.com/annalsdb/annals/internal/testwait"
	"github.com/annalsdb/annals/memstore"
)

// TestRun checks that Run acks what the handler handled, retries with a delay what failed,
// parks what failed for good, and returns when the group is deleted and when ctx ends.
func TestRun(t *testing.T) {
	ctx := context.Background()
	store := memstore.New(nil)
	defer store.Close()
	m, err := groups.Open(ctx, store, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	if _, err := m.Create(ctx, "g", groups.Settings{Stream: "s"}); err != nil {
		t.Fatal(err)
	}
	evs := []annals.Event{
		{Type: "Ok", Data: []byte(`{}`)}, {Type: "Flaky", Data: []byte(`{}`)}, {Type: "Bad", Data: []byte(`{}`)},
	}
	if _, err := store.Append(ctx, "s", annals.NoStream, evs...); err != nil {
		t.Fatal(err)
	}
	c, err := m.Join(ctx, "g", nil)
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	calls := map[string][]groups.Message{}
	handle := func(ctx context.Context, msg groups.Message) error {
		mu.Lock()
		calls[msg.Event.Type] = append(calls[msg.Event.Type], msg)
		n := len(calls[msg.Event.Type])
		mu.Unlock()
		switch {
		case msg.Event.Type == "Flaky" && n == 1:
			return errors.New("try later")
		case msg.Event.Type == "Bad":
			return fmt.Errorf("bad event: %w", groups.ErrPermanent)
		}
		return nil
	}
	done := make(chan error, 1)
	go func() { done <- groups.Run(ctx, c, handle, &groups.RunOptions{RetryDelay: 20 * time.Millisecond}) }()
	testwait.UntilNil(t, "the events handled", func() error {
		i, err := m.Info(ctx, "g")
		if err != nil {
			return err
		}
		if i.Acked != 2 || i.Parked != 1 || i.Retries != 1 || i.InFlight != 0 {
			return fmt.Errorf("acked %d parked %d retries %d in flight %d", i.Acked, i.Parked, i.Retries, i.InFlight)
		}
		return nil
	})
	mu.Lock()
	if f := calls["Flaky"]; len(f) != 2 || f[1].Retries != 1 {
		t.Errorf("Flaky handled %d times, want twice, the second a retry", len(f))
	}
	if len(calls["Bad"]) != 1 || len(calls["Ok"]) != 1 {
		t.Errorf("Bad handled %d times, Ok %d: want once each", len(calls["Bad"]), len(calls["Ok"]))
	}
	mu.Unlock()
	if err := m.Delete(ctx, "g"); err != nil {
		t.Fatal(err)
	}
	if err := testwait.Recv(t, "Run to return", done); !errors.Is(err, groups.ErrGroupDeleted) {
		t.Fatalf("Run after Delete returned %v, want ErrGroupDeleted", err)
	}

	// Run returns nil when its context ends.
	if _, err := m.Create(ctx, "h", groups.Settings{Stream: "s"}); err != nil {
		t.Fatal(err)
	}
	c2, err := m.Join(ctx, "h", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer c2.Close()
	rctx, cancel := context.WithCancel(ctx)
	go func() { done <- groups.Run(rctx, c2, func(context.Context, groups.Message) error { return nil }, nil) }()
	cancel()
	if err := testwait.Recv(t, "Run to return", done); err != nil {
		t.Fatalf("Run after its context ended returned %v, want nil", err)
	}
}
