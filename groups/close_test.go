package groups_test

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"sync"
	"testing"

	"github.com/annalsdb/annals"
	"github.com/annalsdb/annals/groups"
	"github.com/annalsdb/annals/internal/testwait"
	"github.com/annalsdb/annals/memstore"
)

// stallParks is a store whose first append to a parked stream waits for its context to end
// and fails with its error, as a slow store does when the group is stopped in a park.
type stallParks struct {
	*memstore.Store
	mu      sync.Mutex
	stalled bool
	entered chan struct{} // closed when the stalled append waits
}

func (s *stallParks) AppendSystem(ctx context.Context, stream string, expected annals.ExpectedRevision, events ...annals.Event) (annals.AppendResult, error) {
	if strings.HasPrefix(stream, groups.ParkedStream("")) {
		s.mu.Lock()
		stall := !s.stalled
		s.stalled = true
		s.mu.Unlock()
		if stall {
			close(s.entered)
			<-ctx.Done()
			return annals.AppendResult{}, ctx.Err()
		}
	}
	return s.Store.AppendSystem(ctx, stream, expected, events...)
}

// TestCloseWritesParks checks that Close writes the parks not written yet before the final
// checkpoint: events nacked with Park just before Close are in the parked stream after a
// reopen, and the log does not deliver them again. The first case closes while the loop is
// stopped in the park's append; the second closes at once after the nack.
func TestCloseWritesParks(t *testing.T) {
	for _, stall := range []bool{true, false} {
		name := "AtOnce"
		if stall {
			name = "StoppedInAppend"
		}
		t.Run(name, func(t *testing.T) { testCloseWritesParks(t, stall) })
	}
}

func testCloseWritesParks(t *testing.T, stall bool) {
	ctx := context.Background()
	mem := memstore.New(nil)
	t.Cleanup(func() { mem.Close() })
	var store groups.Store = mem
	st := &stallParks{Store: mem, entered: make(chan struct{}), stalled: !stall}
	if stall {
		store = st
	}
	m, err := groups.Open(ctx, store, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := m.Create(ctx, "g", groups.Settings{Stream: "s"}); err != nil {
		t.Fatal(err)
	}
	c, err := m.Join(ctx, "g", nil)
	if err != nil {
		t.Fatal(err)
	}
	evs := []annals.Event{{ID: annals.NewUUID(), Type: "E", Data: []byte(`{}`)}, {ID: annals.NewUUID(), Type: "E", Data: []byte(`{}`)}}
	if _, err := mem.Append(ctx, "s", annals.NoStream, evs...); err != nil {
		t.Fatal(err)
	}
	rctx, cancel := context.WithTimeout(ctx, testwait.Timeout(t))
	defer cancel()
	for range evs {
		msg, err := c.Receive(rctx)
		if err != nil {
			t.Fatal(err)
		}
		if err := c.Nack(ctx, groups.Nack{Action: groups.Park, Reason: "at close"}, msg.Event.ID); err != nil {
			t.Fatal(err)
		}
	}
	if stall {
		<-st.entered
	}
	if err := m.Close(); err != nil {
		t.Fatal(err)
	}

	// The parked stream holds each event once.
	parked := map[annals.UUID]int{}
	copies := 0
	for e, err := range mem.ReadStream(ctx, groups.ParkedStream("g"), nil) {
		if errors.Is(err, annals.ErrStreamNotFound) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		var orig struct{ ID annals.UUID }
		if err := json.Unmarshal(e.Metadata, &orig); err != nil {
			t.Fatal(err)
		}
		parked[orig.ID]++
		copies++
	}
	for _, ev := range evs {
		if parked[ev.ID] != 1 || copies != len(evs) {
			t.Fatalf("the parked stream holds %d copies, %d of event %s; want one of each of %d", copies, parked[ev.ID], ev.ID, len(evs))
		}
	}

	// After a reopen the log does not deliver them again: the first message is a new event.
	m2, err := groups.Open(ctx, mem, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m2.Close() })
	if i, err := m2.Info(ctx, "g"); err != nil || i.Parked != uint64(len(evs)) {
		t.Fatalf("Info after the reopen: parked %d, %v; want %d", i.Parked, err, len(evs))
	}
	c2, err := m2.Join(ctx, "g", nil)
	if err != nil {
		t.Fatal(err)
	}
	next := annals.NewUUID()
	if _, err := mem.Append(ctx, "s", annals.Any, annals.Event{ID: next, Type: "E", Data: []byte(`{}`)}); err != nil {
		t.Fatal(err)
	}
	msg, err := c2.Receive(rctx)
	if err != nil {
		t.Fatal(err)
	}
	if msg.Event.ID != next {
		t.Fatalf("after the reopen the group delivered %s (revision %d) first, want the new event: a parked event came again from the log", msg.Event.ID, msg.Event.Revision)
	}
	if err := c2.Ack(ctx, next); err != nil {
		t.Fatal(err)
	}
	// And a replay gives them back.
	if n, err := m2.ReplayParked(ctx, "g", 0); err != nil || n != len(evs) {
		t.Fatalf("ReplayParked = %d, %v; want %d", n, err, len(evs))
	}
	for range evs {
		msg, err := c2.Receive(rctx)
		if err != nil {
			t.Fatal(err)
		}
		if !msg.Parked {
			t.Fatalf("after ReplayParked got %s not parked", msg.Event.ID)
		}
		if err := c2.Ack(ctx, msg.Event.ID); err != nil {
			t.Fatal(err)
		}
	}
}
