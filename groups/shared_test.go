package groups_test

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
	"github.com/annalsdb/annals/internal/testwait"
	"github.com/annalsdb/annals/memstore"
)

func open(t *testing.T, store groups.Store) *groups.Manager {
	t.Helper()
	m, err := groups.Open(context.Background(), store, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Close() })
	return m
}

// TestTwoManagers checks that a group created, updated or deleted through one manager is so
// in another on the same store, and that concurrent creates of one name make one group.
func TestTwoManagers(t *testing.T) {
	ctx := context.Background()
	store := memstore.New(nil)
	t.Cleanup(func() { store.Close() })
	m1, m2 := open(t, store), open(t, store)

	def, err := m1.Create(ctx, "g", groups.Settings{Stream: "s"})
	if err != nil {
		t.Fatal(err)
	}
	testwait.UntilNil(t, "the group in the other manager", func() error {
		_, err := m2.Info(ctx, "g")
		return err
	})
	if _, err := m2.Update(ctx, "g", groups.Settings{Stream: "s", MaxRetries: 5}); err != nil {
		t.Fatal(err)
	}
	testwait.UntilNil(t, "the update in the first manager", func() error {
		i, err := m1.Info(ctx, "g")
		if err == nil && i.Settings.MaxRetries != 5 {
			err = fmt.Errorf("maxRetries %d", i.Settings.MaxRetries)
		}
		return err
	})
	c, err := m2.Join(ctx, "g", nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := m1.Delete(ctx, "g"); err != nil {
		t.Fatal(err)
	}
	rctx, cancel := context.WithTimeout(ctx, testwait.Timeout(t))
	defer cancel()
	if _, err := c.Receive(rctx); !errors.Is(err, groups.ErrGroupDeleted) {
		t.Fatalf("Receive on the other manager after Delete: %v, want ErrGroupDeleted", err)
	}

	// Concurrent creates of one name: one wins, the other is told it exists.
	var wg sync.WaitGroup
	errs := make([]error, 2)
	for i, m := range []*groups.Manager{m1, m2} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, errs[i] = m.Create(ctx, "race", groups.Settings{Stream: "s"})
		}()
	}
	wg.Wait()
	if (errs[0] == nil) == (errs[1] == nil) {
		t.Fatalf("concurrent creates returned %v and %v, want one success and one ErrGroupExists", errs[0], errs[1])
	}
	for _, err := range errs {
		if err != nil && !errors.Is(err, groups.ErrGroupExists) {
			t.Fatalf("the losing create returned %v, want ErrGroupExists", err)
		}
	}
	i1, err := m1.Info(ctx, "race")
	if err != nil {
		t.Fatal(err)
	}
	testwait.UntilNil(t, "both managers on the same creation", func() error {
		i2, err := m2.Info(ctx, "race")
		if err == nil && i2.Created != i1.Created {
			err = fmt.Errorf("created %d and %d", i1.Created, i2.Created)
		}
		return err
	})
	if def.Created == i1.Created {
		t.Fatalf("the new group has the creation of the deleted one")
	}
}

// TestBufferBound checks that a group reads no further than its buffer while nothing is
// settled, and delivers everything once consumers come.
func TestBufferBound(t *testing.T) {
	ctx := context.Background()
	store := memstore.New(nil)
	t.Cleanup(func() { store.Close() })
	m := open(t, store)
	if _, err := m.Create(ctx, "g", groups.Settings{Stream: "s", Buffer: 10}); err != nil {
		t.Fatal(err)
	}
	evs := make([]annals.Event, 100)
	for i := range evs {
		evs[i] = annals.Event{Type: "E", Data: []byte(`{}`)}
	}
	if _, err := store.Append(ctx, "s", annals.NoStream, evs...); err != nil {
		t.Fatal(err)
	}
	testwait.Until(t, "the buffer full", func() bool {
		i, _ := m.Info(ctx, "g")
		return i.Buffered == 10
	})
	if i, _ := m.Info(ctx, "g"); i.Buffered != 10 || i.Lag != 100 {
		t.Fatalf("buffered %d lag %d, want 10 and 100", i.Buffered, i.Lag)
	}
	c, err := m.Join(ctx, "g", &groups.JoinOptions{Window: 3})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	for want := range uint64(100) {
		rctx, cancel := context.WithTimeout(ctx, testwait.Timeout(t))
		msg, err := c.Receive(rctx)
		cancel()
		if err != nil {
			t.Fatal(err)
		}
		if msg.Event.Revision != want {
			t.Fatalf("got revision %d, want %d", msg.Event.Revision, want)
		}
		if err := c.Ack(ctx, msg.Event.ID); err != nil {
			t.Fatal(err)
		}
	}
	testwait.UntilNil(t, "lag 0", func() error {
		i, err := m.Info(ctx, "g")
		if err == nil && (i.Lag != 0 || i.Checkpoint != 100) {
			err = fmt.Errorf("lag %d checkpoint %d", i.Lag, i.Checkpoint)
		}
		return err
	})
}

// TestUpdateStrategy checks that a change of strategy applies to the running group.
func TestUpdateStrategy(t *testing.T) {
	ctx := context.Background()
	store := memstore.New(nil)
	t.Cleanup(func() { store.Close() })
	m := open(t, store)
	s := groups.Settings{Stream: annals.AllStream, Filter: &annals.Filter{Categories: []string{"acct"}}, CheckpointInterval: 10 * time.Millisecond}
	if _, err := m.Create(ctx, "g", s); err != nil {
		t.Fatal(err)
	}
	var cs []groups.Consumer
	for range 2 {
		c, err := m.Join(ctx, "g", &groups.JoinOptions{Window: 100})
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		cs = append(cs, c)
	}
	s.Strategy = groups.PinnedByStream
	if _, err := m.Update(ctx, "g", s); err != nil {
		t.Fatal(err)
	}
	for i := range 40 {
		if _, err := store.Append(ctx, fmt.Sprintf("acct-%d", i%4), annals.Any, annals.Event{Type: "E", Data: []byte(`{}`)}); err != nil {
			t.Fatal(err)
		}
	}
	owner := map[string]int{}
	got := 0
	deadline := time.Now().Add(testwait.Timeout(t))
	for got < 40 {
		if time.Now().After(deadline) {
			t.Fatalf("%d of 40 events delivered within %v", got, testwait.Timeout(t))
		}
		for i, c := range cs {
			rctx, cancel := context.WithTimeout(ctx, 20*time.Millisecond)
			msg, err := c.Receive(rctx)
			cancel()
			if err != nil {
				continue
			}
			got++
			if o, ok := owner[msg.Event.Stream]; ok && o != i {
				t.Fatalf("stream %s went to both consumers after the update to pinned", msg.Event.Stream)
			}
			owner[msg.Event.Stream] = i
		}
	}
}

// TestParkTooLarge checks that events too large to park with their record are parked one by
// one, without their data when they must, and replayed whole from the log.
func TestParkTooLarge(t *testing.T) {
	ctx := context.Background()
	store := memstore.New(&memstore.Options{Limits: annals.Limits{MaxEventSize: 600, MaxAppendSize: 1000}})
	t.Cleanup(func() { store.Close() })
	m := open(t, store)
	if _, err := m.Create(ctx, "g", groups.Settings{Stream: "s"}); err != nil {
		t.Fatal(err)
	}
	big := fmt.Appendf(nil, `{"pad":%q}`, strings.Repeat("x", 500))
	small := []byte(`{}`)
	evs := []annals.Event{{Type: "Big", Data: big}, {Type: "Small", Data: small}, {Type: "Small", Data: small}, {Type: "Small", Data: small}}
	for _, e := range evs {
		if _, err := store.Append(ctx, "s", annals.Any, e); err != nil {
			t.Fatal(err)
		}
	}
	c, err := m.Join(ctx, "g", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	var ids []annals.UUID
	for range evs {
		rctx, cancel := context.WithTimeout(ctx, testwait.Timeout(t))
		msg, err := c.Receive(rctx)
		cancel()
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, msg.Event.ID)
	}
	// All four at once: too large for one append of the parked stream.
	if err := c.Nack(ctx, groups.Nack{Action: groups.Park, Reason: strings.Repeat("r", 100)}, ids...); err != nil {
		t.Fatal(err)
	}
	testwait.UntilNil(t, "four parked", func() error {
		i, err := m.Info(ctx, "g")
		if err == nil && i.Parked != 4 {
			err = fmt.Errorf("parked %d", i.Parked)
		}
		return err
	})
	omitted := 0
	for p, err := range store.ReadStream(ctx, groups.ParkedStream("g"), nil) {
		if err != nil {
			t.Fatal(err)
		}
		if len(p.Data) == 0 {
			omitted++
		}
	}
	if omitted != 1 {
		t.Fatalf("%d parked copies without data, want 1 (the big event)", omitted)
	}
	if n, err := m.ReplayParked(ctx, "g", 0); err != nil || n != 4 {
		t.Fatalf("ReplayParked = %d, %v", n, err)
	}
	for i := range evs {
		rctx, cancel := context.WithTimeout(ctx, testwait.Timeout(t))
		msg, err := c.Receive(rctx)
		cancel()
		if err != nil {
			t.Fatal(err)
		}
		if msg.Event.ID != ids[i] || !msg.Parked || string(msg.Event.Data) != string(evs[i].Data) {
			t.Fatalf("replay %d: %s parked %v data %d bytes, want %s with its %d bytes", i, msg.Event.ID, msg.Parked, len(msg.Event.Data), ids[i], len(evs[i].Data))
		}
	}
}
