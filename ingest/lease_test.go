package ingest

import (
	"context"
	"errors"
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	"github.com/annalsdb/annals"
	"github.com/annalsdb/annals/internal/testwait"
	"github.com/annalsdb/annals/memstore"
	"github.com/annalsdb/annals/supervisor"
)

// TestLease: two ingests of one name over one bus, with the store's lease: one works, the
// other stands by, and takes over when the first stops; every message is appended once.
func TestLease(t *testing.T) {
	eachStore(t, func(t *testing.T, store annals.Store) {
		rng := rand.New(rand.NewPCG(1, 2))
		bus := newTestBus()
		var w workload
		fill(bus, rng, &w, 2, 200, 0.05)
		policy := supervisor.Policy{TTL: 300 * time.Millisecond, MinBackoff: time.Millisecond, MaxBackoff: 5 * time.Millisecond}
		var ins [2]*Ingest
		var stops [2]func() error
		for i := range ins {
			src := &testSource{bus: bus, kafka: true, store: store, name: "orders", rng: rand.New(rand.NewPCG(uint64(i), 3)), redeliver: 0.05}
			p := policy
			p.Holder = []string{"a", "b"}[i]
			ins[i] = newIngest(t, store, src, Options{Batch: 7, Policy: p})
			stops[i] = run(t, ins[i])
		}
		var active int
		testwait.Until(t, "one ingest runs, the other stands by", func() bool {
			a, b := ins[0].Status(), ins[1].Status()
			switch {
			case a.State == "running" && b.State == "standing-by":
				active = 0
			case b.State == "running" && a.State == "standing-by":
				active = 1
			default:
				return false
			}
			return true
		})
		testwait.Until(t, "the active ingest appends every message", func() bool { return w.caughtUp(ins[active]) })
		other := ins[1-active]
		if st := other.Status(); st.Appended != 0 || st.Holder != ins[active].Status().Holder {
			t.Errorf("standing by: %+v", st)
		}
		if err := stops[active](); err != nil {
			t.Fatal(err)
		}
		fill(bus, rng, &w, 2, 100, 0.05)
		testwait.Until(t, "the other ingest takes over and appends the new messages", func() bool { return w.caughtUp(other) })
		if err := stops[1-active](); err != nil {
			t.Fatal(err)
		}
		w.check(t, store)
	})
}

// TestTombstonedStream: an append refused for good stops Run with an error naming the
// message.
func TestTombstonedStream(t *testing.T) {
	store := memstore.New(nil)
	defer store.Close()
	if _, err := store.Tombstone(context.Background(), "order-1", annals.Any); err != nil {
		t.Fatal(err)
	}
	bus := newTestBus()
	bus.add("test:orders/0", message("order-2", annals.NewUUID(), 0))
	bus.add("test:orders/0", message("order-1", annals.NewUUID(), 1))
	src := &testSource{bus: bus, kafka: true, store: store, name: "orders", rng: rand.New(rand.NewPCG(1, 1))}
	in := newIngest(t, store, src, Options{Policy: fastRetries})
	err := in.Run(context.Background())
	if !errors.Is(err, annals.ErrStreamDeleted) || !strings.Contains(err.Error(), "test:orders/0 offsets 1 to 1") {
		t.Fatalf("Run: %v; want stream deleted naming test:orders/0 offset 1", err)
	}
}
