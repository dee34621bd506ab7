package client_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/annalsdb/annals"
	"github.com/annalsdb/annals/groups"
	"github.com/annalsdb/annals/memstore"
)

// TestGroupsPackedAcks has many goroutines ack at once on one consumer over the network, so
// that their acks go to the server packed in shared messages: each event is acked twice
// (one of the two must settle it and the other get ErrNotInFlight, as in process), and ids
// never delivered are acked beside them. Each call must get the answer of its own ids: nil,
// or ErrNotInFlight naming its id and no other.
func TestGroupsPackedAcks(t *testing.T) {
	const n = 200
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	r := newRestartable(t, memstore.New(nil), nil)
	c := dial(t, r.url, nil)
	for i := range n {
		if _, err := c.Append(ctx, fmt.Sprintf("pack-%d", i), annals.NoStream, annals.Event{Type: "e", Data: []byte(`{}`)}); err != nil {
			t.Fatal(err)
		}
	}
	svc := c.Groups()
	if _, err := svc.Create(ctx, "pack", groups.Settings{Stream: annals.AllStream, Filter: &annals.Filter{Categories: []string{"pack"}}}); err != nil {
		t.Fatal(err)
	}
	cons, err := svc.Join(ctx, "pack", &groups.JoinOptions{Window: n})
	if err != nil {
		t.Fatal(err)
	}
	defer cons.Close()
	ids := make([]annals.UUID, n)
	for i := range ids {
		m, err := cons.Receive(ctx)
		if err != nil {
			t.Fatal(err)
		}
		ids[i] = m.Event.ID
	}

	start := make(chan struct{})
	type result struct {
		id  annals.UUID
		err error
	}
	results := make(chan result, 3*n)
	var wg sync.WaitGroup
	ack := func(id annals.UUID) {
		wg.Go(func() {
			<-start
			results <- result{id, cons.Ack(ctx, id)}
		})
	}
	bogus := make(map[annals.UUID]bool, n)
	for _, id := range ids {
		ack(id)
		ack(id)
		b := annals.NewUUID()
		bogus[b] = true
		ack(b)
	}
	close(start)
	wg.Wait()
	close(results)

	settled := make(map[annals.UUID]int)
	notInFlight := make(map[annals.UUID]int)
	for r := range results {
		switch {
		case r.err == nil:
			settled[r.id]++
		case errors.Is(r.err, groups.ErrNotInFlight):
			if msg := r.err.Error(); !strings.HasSuffix(msg, ": "+r.id.String()) || strings.Contains(msg, ", ") {
				t.Errorf("ack of %s: the error names other ids: %v", r.id, r.err)
			}
			notInFlight[r.id]++
		default:
			t.Errorf("ack of %s: %v", r.id, r.err)
		}
	}
	for _, id := range ids {
		if settled[id] != 1 || notInFlight[id] != 1 {
			t.Errorf("event %s acked twice at once: %d settled, %d not in flight; want 1 and 1", id, settled[id], notInFlight[id])
		}
	}
	for id := range bogus {
		if settled[id] != 0 || notInFlight[id] != 1 {
			t.Errorf("id %s never delivered: %d settled, %d not in flight; want 0 and 1", id, settled[id], notInFlight[id])
		}
	}
	info, err := svc.Info(ctx, "pack")
	if err != nil {
		t.Fatal(err)
	}
	if info.Acked != n {
		t.Errorf("the group counts %d acked, want %d", info.Acked, n)
	}
}
