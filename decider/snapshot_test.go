package decider_test

import (
	"context"
	"errors"
	"maps"
	"sync"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/annalsdb/annals"
	"github.com/annalsdb/annals/codec"
	"github.com/annalsdb/annals/decider"
)

func TestSnapshotPlusTailEqualsFullFold(t *testing.T) {
	forEachStore(t, func(t *testing.T, s annals.Store) {
		ctx := ctxT(t)
		cs := newCountingStore(s)
		h := newHandler(t, cs, &decider.Options[cartCmd]{Snapshots: &decider.SnapshotPolicy{Every: 10, Version: "v1"}})
		for i := range 37 { // 37 single-event commands: snapshots at revisions 9, 19, 29
			if _, err := h.Handle(ctx, "cart-1", AddItem{string(rune('a' + i%5)), i + 1}, nil); err != nil {
				t.Fatal(err)
			}
		}
		snap, ok, err := decider.NewStreamSnapshots(s, nil).Load(ctx, "cart-1", decider.SnapshotQuery{})
		if err != nil || !ok || snap.Revision != 29 || snap.Version != "v1" {
			t.Fatalf("latest snapshot: %+v %v %v, want revision 29", snap, ok, err)
		}
		cs.take()
		fresh := newHandler(t, cs, &decider.Options[cartCmd]{Snapshots: &decider.SnapshotPolicy{Every: 10, Version: "v1"}})
		st, err := fresh.Load(ctx, "cart-1", nil)
		if err != nil {
			t.Fatal(err)
		}
		reads := cs.take()
		if reads["cart-1"] != 7 || reads["snapshot-cart-1"] != 1 {
			t.Errorf("Load read %v, want 1 snapshot and the 7 events after it", reads)
		}
		full := newHandler(t, s, nil)
		want, err := full.Load(ctx, "cart-1", nil)
		if err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff(want, st); diff != "" {
			t.Errorf("snapshot + tail vs full fold (-full +snapshot):\n%s", diff)
		}
		if want.Value.Events != 37 {
			t.Errorf("full fold folded %d events", want.Value.Events)
		}
	})
}

func TestSnapshotBySize(t *testing.T) {
	forEachStore(t, func(t *testing.T, s annals.Store) {
		ctx := ctxT(t)
		h := newHandler(t, s, &decider.Options[cartCmd]{Snapshots: &decider.SnapshotPolicy{MaxBytes: 1000, Version: "v1"}})
		size := 0
		for i := range 30 {
			res, err := h.Handle(ctx, "cart-1", AddItem{"apple", i + 1}, nil)
			if err != nil {
				t.Fatal(err)
			}
			ev := storedEvents(t, s, "cart-1")[res.Revision]
			size += len(ev.Data) + len(ev.Metadata)
		}
		snaps := storedEvents(t, s, "snapshot-cart-1")
		// Each snapshot follows at least 1000 bytes of events, and no 1000 bytes go without one.
		if min, max := size/1000-1, size/1000; len(snaps) < min || len(snaps) > max {
			t.Errorf("%d snapshots for %d bytes of events with MaxBytes 1000", len(snaps), size)
		}
	})
}

// The state shape changes between versions: v1 counted items, v2 counts cents (qty × 100)
// in the same JSON field. A v1 snapshot read as v2 would be wrong; the version keeps it out.
func TestSnapshotVersionChangeDiscards(t *testing.T) {
	forEachStore(t, func(t *testing.T, s annals.Store) {
		ctx := ctxT(t)
		h1 := newHandler(t, s, &decider.Options[cartCmd]{Snapshots: &decider.SnapshotPolicy{Every: 2, Version: "cart-v1"}})
		for range 4 {
			if _, err := h1.Handle(ctx, "cart-1", AddItem{"a", 1}, nil); err != nil {
				t.Fatal(err)
			}
		}
		cents := cartDecider
		cents.Evolve = func(st cart, e cartEvent) cart {
			if a, ok := e.(ItemAdded); ok {
				a.Qty *= 100
				e = a
			}
			return evolveCart(st, e)
		}
		newV2 := func(version string) *decider.Handler[cart, cartCmd, cartEvent] {
			h, err := decider.NewHandler(s, newRegistry(t), cents, &decider.Options[cartCmd]{
				Snapshots: &decider.SnapshotPolicy{Every: 2, Version: version},
				OnError:   func(err error) { t.Errorf("report: %v", err) },
			})
			if err != nil {
				t.Fatal(err)
			}
			return h
		}
		// The control: with the old version string the v1 snapshot is (wrongly) used.
		mis, err := newV2("cart-v1").Load(ctx, "cart-1", nil)
		if err != nil {
			t.Fatal(err)
		}
		if mis.Value.Items["a"] != 4 {
			t.Fatalf("control: the v1 snapshot was not used (items %v); the test below proves nothing", mis.Value.Items)
		}
		h2 := newV2("cart-v2")
		st, err := h2.Load(ctx, "cart-1", nil)
		if err != nil || st.Value.Items["a"] != 400 || st.Revision != 3 {
			t.Fatalf("v2 Load: %+v, %v; want 400 cents at revision 3 (v1 snapshot discarded)", st, err)
		}
		// The next commands write a v2 snapshot, which later loads use.
		for range 2 {
			if _, err := h2.Handle(ctx, "cart-1", AddItem{"a", 1}, nil); err != nil {
				t.Fatal(err)
			}
		}
		snap, ok, err := decider.NewStreamSnapshots(s, nil).Load(ctx, "cart-1", decider.SnapshotQuery{})
		if err != nil || !ok || snap.Version != "cart-v2" {
			t.Fatalf("latest snapshot %+v, %v, %v; want a cart-v2 one", snap, ok, err)
		}
		st, err = newV2("cart-v2").Load(ctx, "cart-1", nil)
		if err != nil || st.Value.Items["a"] != 600 {
			t.Errorf("v2 Load from a v2 snapshot: %+v, %v; want 600", st, err)
		}
	})
}

type failingSnapshots struct{ decider.SnapshotStore }

func (failingSnapshots) Save(context.Context, decider.Snapshot) error {
	return errors.New("snapshot disk full")
}

func TestSnapshotSaveFailureDoesNotFailCommand(t *testing.T) {
	forEachStore(t, func(t *testing.T, s annals.Store) {
		ctx := ctxT(t)
		var mu sync.Mutex
		var reports []error
		h := newHandler(t, s, &decider.Options[cartCmd]{
			Snapshots: &decider.SnapshotPolicy{Every: 1, Version: "v1", Store: failingSnapshots{decider.NewStreamSnapshots(s, nil)}},
			OnError: func(err error) {
				mu.Lock()
				reports = append(reports, err)
				mu.Unlock()
			},
		})
		for range 3 {
			if _, err := h.Handle(ctx, "cart-1", AddItem{"a", 1}, nil); err != nil {
				t.Fatalf("a failed snapshot failed the command: %v", err)
			}
		}
		mu.Lock()
		defer mu.Unlock()
		if len(reports) != 3 || reports[0].Error() != `decider: snapshot of "cart-1" at revision 0: snapshot disk full` {
			t.Errorf("reports %v, want one per command", reports)
		}
		if n := len(storedEvents(t, s, "cart-1")); n != 3 {
			t.Errorf("%d events written", n)
		}
	})
}

func TestTemporalLoad(t *testing.T) {
	forEachStore(t, func(t *testing.T, s annals.Store) {
		ctx := ctxT(t)
		opts := &decider.Options[cartCmd]{Snapshots: &decider.SnapshotPolicy{Every: 3, Version: "v1"}}
		h := newHandler(t, s, opts)
		for i := range 12 {
			var c cartCmd = AddItem{string(rune('a' + i%3)), i + 1}
			if i%4 == 3 {
				c = RemoveItem{string(rune('a' + (i-1)%3))}
			}
			if _, err := h.Handle(ctx, "cart-1", c, nil); err != nil {
				t.Fatal(err)
			}
		}
		evs := storedEvents(t, s, "cart-1")
		reg := newRegistry(t)
		oracle := func(keep func(annals.RecordedEvent) bool) (cart, uint64, bool) {
			st, rev, any := newCart(), uint64(0), false
			for _, ev := range evs {
				if !keep(ev) {
					continue
				}
				e, _, err := codec.Decode[cartEvent](reg, ev)
				if err != nil {
					t.Fatal(err)
				}
				st, rev, any = evolveCart(st, e), ev.Revision, true
			}
			return st, rev, any
		}
		cs := newCountingStore(s)
		ht := newHandler(t, cs, opts)
		for until := uint64(1); until <= uint64(len(evs))+1; until++ {
			want, rev, _ := oracle(func(ev annals.RecordedEvent) bool { return ev.Revision < until })
			cs.take()
			got, err := ht.Load(ctx, "cart-1", &decider.LoadOptions{Until: until})
			if err != nil {
				t.Fatal(err)
			}
			if !cmp.Equal(want, got.Value) || got.Revision != rev {
				t.Errorf("Until %d: got %+v at %d, want %+v at %d", until, got.Value, got.Revision, want, rev)
			}
			// Snapshots before the point are used (every 3 events: at revisions 2, 5, 8, 11).
			if n := cs.take()["cart-1"]; until >= 3 && n > 3 {
				t.Errorf("Until %d: read %d events, want at most 3 after a snapshot", until, n)
			}
		}
		for _, ev := range evs {
			want, rev, _ := oracle(func(e annals.RecordedEvent) bool { return !e.Time.After(ev.Time) })
			got, err := ht.Load(ctx, "cart-1", &decider.LoadOptions{AsOf: ev.Time})
			if err != nil {
				t.Fatal(err)
			}
			if !cmp.Equal(want, got.Value) || got.Revision != rev || !got.Exists {
				t.Errorf("AsOf revision %d's time: got %+v at %d, want %+v at %d", ev.Revision, got.Value, got.Revision, want, rev)
			}
		}
		before, err := ht.Load(ctx, "cart-1", &decider.LoadOptions{AsOf: evs[0].Time.Add(-1)})
		if err != nil || before.Exists || len(before.Value.Items) != 0 {
			t.Errorf("AsOf before the first event: %+v, %v", before, err)
		}
	})
}

func TestStateCache(t *testing.T) {
	forEachStore(t, func(t *testing.T, s annals.Store) {
		ctx := ctxT(t)
		cs := newCountingStore(s)
		cached := newHandler(t, cs, &decider.Options[cartCmd]{CacheSize: 2})
		other := newHandler(t, s, nil)
		if _, err := cached.Handle(ctx, "cart-1", AddItem{"a", 1}, nil); err != nil {
			t.Fatal(err)
		}
		cs.take()
		// A hot stream: no read before the append.
		if _, err := cached.Handle(ctx, "cart-1", AddItem{"a", 1}, nil); err != nil {
			t.Fatal(err)
		}
		if n := cs.take()["cart-1"]; n != 0 {
			t.Errorf("a cached command read %d events", n)
		}
		// Another handler writes: the cache is stale; the command conflicts, catches up (reading
		// only the new event) and decides again.
		if _, err := other.Handle(ctx, "cart-1", AddItem{"b", 5}, nil); err != nil {
			t.Fatal(err)
		}
		res, err := cached.Handle(ctx, "cart-1", RemoveItem{"b"}, nil)
		if err != nil {
			t.Fatalf("remove b through a stale cache: %v", err)
		}
		if n := cs.take()["cart-1"]; n != 1 || res.Revision != 3 {
			t.Errorf("stale cache: read %d events (want 1), revision %d (want 3)", n, res.Revision)
		}
		// Evicted (capacity 2): a fresh read.
		for _, st := range []string{"cart-2", "cart-3"} {
			if _, err := cached.Handle(ctx, st, AddItem{"a", 1}, nil); err != nil {
				t.Fatal(err)
			}
		}
		cs.take()
		if _, err := cached.Handle(ctx, "cart-1", AddItem{"a", 1}, nil); err != nil {
			t.Fatal(err)
		}
		if n := cs.take()["cart-1"]; n != 4 {
			t.Errorf("after eviction read %d events, want the 4 of the stream", n)
		}
		if got, want := fold(t, s, "cart-1").Items, map[string]int{"a": 3}; !maps.Equal(got, want) {
			t.Errorf("items %v, want %v", got, want)
		}
	})
}
