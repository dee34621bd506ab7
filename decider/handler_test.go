package decider_test

import (
	"encoding/json"
	"errors"
	"maps"
	"sync"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/annalsdb/annals"
	"github.com/annalsdb/annals/codec"
	"github.com/annalsdb/annals/decider"
)

func TestHandleAndLoad(t *testing.T) {
	forEachStore(t, func(t *testing.T, s annals.Store) {
		ctx := ctxT(t)
		h := newHandler(t, s, nil)
		r1, err := h.Handle(ctx, "cart-1", AddItem{"apple", 2}, nil)
		if err != nil {
			t.Fatal(err)
		}
		if !r1.Written || r1.Duplicate || r1.Revision != 0 || r1.Position == 0 || r1.Stream != "cart-1" {
			t.Errorf("first result: %+v", r1)
		}
		if diff := cmp.Diff([]cartEvent{ItemAdded{"apple", 2}}, r1.Events); diff != "" {
			t.Errorf("events (-want +got):\n%s", diff)
		}
		r2, err := h.Handle(ctx, "cart-1", AddMany{N: 3}, nil)
		if err != nil {
			t.Fatal(err)
		}
		if r2.Revision != 3 || r2.Position != r1.Position+3 || len(r2.Events) != 3 {
			t.Errorf("second result: %+v", r2)
		}
		st, err := h.Load(ctx, "cart-1", nil)
		if err != nil {
			t.Fatal(err)
		}
		want := decider.State[cart]{Value: fold(t, s, "cart-1"), Revision: 3, Position: r2.Position, Exists: true}
		if diff := cmp.Diff(want, st); diff != "" {
			t.Errorf("Load (-want +got):\n%s", diff)
		}
		if st.Value.Items["apple"] != 2 || st.Value.Events != 4 {
			t.Errorf("state %+v", st.Value)
		}
		missing, err := h.Load(ctx, "cart-none", nil)
		if err != nil || missing.Exists || missing.Revision != 0 || len(missing.Value.Items) != 0 {
			t.Errorf("Load of a missing stream: %+v, %v", missing, err)
		}
	})
}

func TestValidationDomainErrorsAndNoEvents(t *testing.T) {
	forEachStore(t, func(t *testing.T, s annals.Store) {
		ctx := ctxT(t)
		cs := newCountingStore(s)
		h := newHandler(t, cs, nil)

		_, err := h.Handle(ctx, "cart-1", AddItem{"apple", 0}, nil)
		if !errors.Is(err, decider.ErrInvalidCommand) {
			t.Fatalf("invalid command: got %v, want ErrInvalidCommand", err)
		}
		if n := cs.take()["cart-1"]; n != 0 || storedEvents(t, s, "cart-1") != nil {
			t.Errorf("an invalid command read %d events or wrote some", n)
		}

		// A domain error comes back unchanged and writes nothing.
		if _, err := h.Handle(ctx, "cart-1", AddItem{"apple", 1}, nil); err != nil {
			t.Fatal(err)
		}
		before := storedEvents(t, s, "cart-1")
		_, err = h.Handle(ctx, "cart-1", RemoveItem{"pear"}, nil)
		if !errors.Is(err, errNotInCart) || err.Error() != "remove pear: item not in cart" {
			t.Fatalf("domain error: got %v, want Decide's error unchanged", err)
		}
		if after := storedEvents(t, s, "cart-1"); len(after) != len(before) {
			t.Errorf("a domain error wrote %d events", len(after)-len(before))
		}

		// Deciding nothing appends nothing and says so.
		res, err := h.Handle(ctx, "cart-1", Nothing{}, nil)
		if err != nil {
			t.Fatal(err)
		}
		if res.Written || res.Duplicate || len(res.Events) != 0 || res.Revision != 0 || res.Position != before[0].Position {
			t.Errorf("no-event result: %+v (want revision 0, position %d, not written)", res, before[0].Position)
		}
		if after := storedEvents(t, s, "cart-1"); len(after) != len(before) {
			t.Errorf("a command deciding nothing wrote %d events", len(after)-len(before))
		}
		res, err = h.Handle(ctx, "cart-new", Nothing{}, nil)
		if err != nil || res.Written || res.Revision != 0 || res.Position != 0 {
			t.Errorf("no-event result on a new stream: %+v, %v", res, err)
		}
		if storedEvents(t, s, "cart-new") != nil {
			t.Error("a stream was created by a command that decided nothing")
		}
	})
}

func TestRetryOnConflict(t *testing.T) {
	forEachStore(t, func(t *testing.T, s annals.Store) {
		ctx := ctxT(t)
		rs := &racingStore{Store: s, stream: "cart-1"}
		h := newHandler(t, rs, &decider.Options[cartCmd]{MaxRetries: 2})

		// Two conflicts, then success on the third attempt, decided on the state with the
		// rivals' events.
		rs.left.Store(2)
		res, err := h.Handle(ctx, "cart-1", AddItem{"x", 1}, nil)
		if err != nil {
			t.Fatalf("Handle after 2 conflicts with MaxRetries 2: %v", err)
		}
		if got := rs.raced.Load(); got != 2 {
			t.Fatalf("raced %d appends, want 2", got)
		}
		if res.Revision != 2 {
			t.Errorf("result revision %d, want 2 (after two rival events)", res.Revision)
		}
		if got := fold(t, s, "cart-1"); got.Items["rival"] != 2 || got.Items["x"] != 1 || got.Events != 3 {
			t.Errorf("state after retries: %+v", got)
		}

		// Three conflicts with MaxRetries 2: the error names both the bound and the conflict.
		rs.left.Store(3)
		n := len(storedEvents(t, s, "cart-1"))
		_, err = h.Handle(ctx, "cart-1", AddItem{"mine", 1}, nil)
		if !errors.Is(err, decider.ErrTooManyConflicts) || !errors.Is(err, annals.ErrWrongExpectedVersion) {
			t.Fatalf("got %v, want ErrTooManyConflicts wrapping ErrWrongExpectedVersion", err)
		}
		ce, ok := errors.AsType[*decider.ConflictError](err)
		if !ok || ce.Attempts != 3 || ce.Stream != "cart-1" {
			t.Errorf("ConflictError: %+v", ce)
		}
		if _, ok := errors.AsType[*annals.WrongExpectedVersionError](err); !ok {
			t.Error("the last conflict's detail is not reachable")
		}
		if got := fold(t, s, "cart-1"); got.Items["mine"] != 0 || len(storedEvents(t, s, "cart-1")) != n+3 {
			t.Errorf("a command that gave up wrote something: %+v", got)
		}

		// No retry at all.
		h0 := newHandler(t, rs, &decider.Options[cartCmd]{MaxRetries: -1})
		rs.left.Store(1)
		if _, err := h0.Handle(ctx, "cart-1", AddItem{"mine", 1}, nil); !errors.Is(err, decider.ErrTooManyConflicts) {
			t.Errorf("MaxRetries -1: got %v, want ErrTooManyConflicts at the first conflict", err)
		}
	})
}

func TestMetadataCorrelation(t *testing.T) {
	forEachStore(t, func(t *testing.T, s annals.Store) {
		ctx := ctxT(t)
		h := newHandler(t, s, nil)
		if _, err := h.Handle(ctx, "cart-1", AddMany{N: 2}, nil); err != nil {
			t.Fatal(err)
		}
		evs := storedEvents(t, s, "cart-1")
		md0, _ := codec.ParseMetadata(evs[0].Metadata)
		md1, _ := codec.ParseMetadata(evs[1].Metadata)
		if _, err := annals.ParseUUID(md0.CorrelationID); err != nil || md0.CorrelationID != md1.CorrelationID || md0.SchemaVersion != 1 {
			t.Errorf("without options: want one fresh UUID correlation on both events: %+v %+v", md0, md1)
		}

		// A reaction to evs[1], with an extra field, carries its correlation and has it as cause.
		opts := decider.CausedBy(evs[1])
		opts.Extra = map[string]json.RawMessage{"tenant": json.RawMessage(`"acme"`)}
		if _, err := h.Handle(ctx, "cart-2", AddItem{"x", 1}, opts); err != nil {
			t.Fatal(err)
		}
		got, _ := codec.ParseMetadata(storedEvents(t, s, "cart-2")[0].Metadata)
		want := codec.Metadata{SchemaVersion: 1, CorrelationID: md0.CorrelationID, CausationID: evs[1].ID.String(),
			Extra: map[string]json.RawMessage{"tenant": json.RawMessage(`"acme"`)}}
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("reaction metadata (-want +got):\n%s", diff)
		}
	})
}

func TestIdempotencyKeys(t *testing.T) {
	forEachStore(t, func(t *testing.T, s annals.Store) {
		ctx := ctxT(t)
		h := newHandler(t, s, nil)
		key := &decider.CommandOptions{IdempotencyKey: "k-1"}
		first, err := h.Handle(ctx, "cart-1", AddMany{N: 2}, key)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := h.Handle(ctx, "cart-1", AddItem{"b", 1}, nil); err != nil {
			t.Fatal(err)
		}
		again, err := h.Handle(ctx, "cart-1", AddMany{N: 2}, key)
		if err != nil {
			t.Fatal(err)
		}
		want := first
		want.Written, want.Duplicate = false, true
		if diff := cmp.Diff(want, again); diff != "" {
			t.Errorf("duplicate result (-want +got):\n%s", diff)
		}
		if n := len(storedEvents(t, s, "cart-1")); n != 3 {
			t.Errorf("stream has %d events, want 3 (the duplicate wrote nothing)", n)
		}

		// A fresh handler over a reopened store (a new process) recognises the key from the log.
		s = restart(t, s)
		h2 := newHandler(t, s, nil)
		again2, err := h2.Handle(ctx, "cart-1", AddMany{N: 2}, key)
		if err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff(want, again2); diff != "" {
			t.Errorf("duplicate result after restart (-want +got):\n%s", diff)
		}
		if n := len(storedEvents(t, s, "cart-1")); n != 3 {
			t.Errorf("stream has %d events after a duplicate in a new process, want 3", n)
		}
	})
}

func TestIdempotencyConcurrentSameKey(t *testing.T) {
	forEachStore(t, func(t *testing.T, s annals.Store) {
		ctx := ctxT(t)
		h := newHandler(t, s, &decider.Options[cartCmd]{CacheSize: 4, MaxRetries: 50})
		var wg sync.WaitGroup
		results := make([]decider.Result[cartEvent], 6)
		errs := make([]error, len(results))
		for i := range results {
			wg.Go(func() {
				results[i], errs[i] = h.Handle(ctx, "cart-1", AddItem{"a", 1}, &decider.CommandOptions{IdempotencyKey: "once"})
			})
		}
		wg.Wait()
		written := 0
		for i, r := range results {
			if errs[i] != nil {
				t.Fatal(errs[i])
			}
			if r.Written {
				written++
			} else if !r.Duplicate {
				t.Errorf("result %d neither written nor duplicate: %+v", i, r)
			}
			if r.Revision != 0 {
				t.Errorf("result %d revision %d, want 0", i, r.Revision)
			}
		}
		if written != 1 || len(storedEvents(t, s, "cart-1")) != 1 {
			t.Errorf("%d commands written, %d events stored; want exactly one", written, len(storedEvents(t, s, "cart-1")))
		}
	})
}

func TestIdempotencyWindowAndSnapshots(t *testing.T) {
	forEachStore(t, func(t *testing.T, s annals.Store) {
		ctx := ctxT(t)
		opts := func() *decider.Options[cartCmd] {
			return &decider.Options[cartCmd]{IdempotencyWindow: 2, Snapshots: &decider.SnapshotPolicy{Every: 1, Version: "v1"}}
		}
		h := newHandler(t, s, opts())
		for _, k := range []string{"a", "b", "c"} {
			if _, err := h.Handle(ctx, "cart-1", AddItem{k, 1}, &decider.CommandOptions{IdempotencyKey: k}); err != nil {
				t.Fatal(err)
			}
		}
		// The snapshot (after every command) carries the last two keys.
		snap, ok, err := decider.NewStreamSnapshots(s, nil).Load(ctx, "cart-1", decider.SnapshotQuery{})
		if err != nil || !ok {
			t.Fatalf("no snapshot: %v", err)
		}
		if diff := cmp.Diff([]decider.IdempotencyRecord{
			{Key: "b", First: 1, Last: 1, Position: snapKeyPos(t, s, 1)},
			{Key: "c", First: 2, Last: 2, Position: snapKeyPos(t, s, 2)},
		}, snap.Keys); diff != "" {
			t.Errorf("snapshot keys (-want +got):\n%s", diff)
		}
		// A fresh handler in a new process loads the snapshot (no events after it): "c" is a
		// duplicate, "a" has left the window and is handled again.
		s = restart(t, s)
		h2 := newHandler(t, s, opts())
		res, err := h2.Handle(ctx, "cart-1", AddItem{"c", 1}, &decider.CommandOptions{IdempotencyKey: "c"})
		if err != nil || !res.Duplicate || res.Revision != 2 {
			t.Errorf("key c after restart and snapshot: %+v, %v; want a duplicate of revision 2", res, err)
		}
		res, err = h2.Handle(ctx, "cart-1", AddItem{"a", 1}, &decider.CommandOptions{IdempotencyKey: "a"})
		if err != nil || !res.Written || res.Revision != 3 {
			t.Errorf("key a out of the window: %+v, %v; want written at revision 3", res, err)
		}
		if got := fold(t, s, "cart-1").Items; !cmp.Equal(got, map[string]int{"a": 2, "b": 1, "c": 1}) {
			t.Errorf("items %v", got)
		}
	})
}

func snapKeyPos(t *testing.T, s annals.Store, rev uint64) uint64 {
	t.Helper()
	return storedEvents(t, s, "cart-1")[rev].Position
}

func TestNewHandlerErrors(t *testing.T) {
	s := annals.Store(nil)
	reg := newRegistry(t)
	for name, f := range map[string]func() error{
		"nil store": func() error { _, err := decider.NewHandler(s, reg, cartDecider, nil); return err },
		"nil evolve": func() error {
			d := cartDecider
			d.Evolve = nil
			_, err := decider.NewHandler[cart, cartCmd, cartEvent](newCountingStore(nil), reg, d, nil)
			return err
		},
		"no version": func() error {
			_, err := decider.NewHandler(newCountingStore(nil), reg, cartDecider, &decider.Options[cartCmd]{Snapshots: &decider.SnapshotPolicy{Every: 1}})
			return err
		},
		"no trigger": func() error {
			_, err := decider.NewHandler(newCountingStore(nil), reg, cartDecider, &decider.Options[cartCmd]{Snapshots: &decider.SnapshotPolicy{Version: "v"}})
			return err
		},
	} {
		if err := f(); !errors.Is(err, annals.ErrInvalidArgument) {
			t.Errorf("%s: got %v, want ErrInvalidArgument", name, err)
		}
	}
}

func TestUnknownTypes(t *testing.T) {
	forEachStore(t, func(t *testing.T, s annals.Store) {
		ctx := ctxT(t)
		if _, err := s.Append(ctx, "cart-1", annals.NoStream,
			annals.Event{Type: "ItemAdded", Data: []byte(`{"sku":"a","qty":1}`)},
			annals.Event{Type: "GiftWrapped", Data: []byte(`{}`)},
			annals.Event{Type: "ItemAdded", Data: []byte(`{"sku":"a","qty":1}`)},
		); err != nil {
			t.Fatal(err)
		}
		strict := newHandler(t, s, nil)
		if _, err := strict.Load(ctx, "cart-1", nil); !errors.Is(err, codec.ErrUnknownType) {
			t.Errorf("Load: got %v, want ErrUnknownType", err)
		}
		if _, err := strict.Handle(ctx, "cart-1", AddItem{"a", 1}, nil); !errors.Is(err, codec.ErrUnknownType) {
			t.Errorf("Handle: got %v, want ErrUnknownType", err)
		}
		var mu sync.Mutex
		var skipped []string
		lenient := newHandler(t, s, &decider.Options[cartCmd]{SkipUnknownTypes: true, OnError: func(err error) {
			if ute, ok := errors.AsType[*codec.UnknownTypeError](err); ok {
				mu.Lock()
				skipped = append(skipped, ute.Type)
				mu.Unlock()
				return
			}
			t.Errorf("unexpected report %v", err)
		}})
		st, err := lenient.Load(ctx, "cart-1", nil)
		if err != nil || st.Value.Items["a"] != 2 || st.Revision != 2 {
			t.Errorf("lenient Load: %+v, %v", st, err)
		}
		res, err := lenient.Handle(ctx, "cart-1", AddItem{"a", 1}, nil)
		if err != nil || res.Revision != 3 {
			t.Errorf("lenient Handle: %+v, %v", res, err)
		}
		mu.Lock()
		defer mu.Unlock()
		if !cmp.Equal(skipped, []string{"GiftWrapped", "GiftWrapped"}) {
			t.Errorf("skipped %v, want GiftWrapped reported by each load", skipped)
		}
	})
}

func TestHistory(t *testing.T) {
	forEachStore(t, func(t *testing.T, s annals.Store) {
		ctx := ctxT(t)
		h := newHandler(t, s, &decider.Options[cartCmd]{Snapshots: &decider.SnapshotPolicy{Every: 2, Version: "v1"}})
		for _, c := range []cartCmd{AddItem{"a", 1}, AddItem{"b", 2}, RemoveItem{"a"}, Checkout{}} {
			if _, err := h.Handle(ctx, "cart-1", c, &decider.CommandOptions{CorrelationID: "corr"}); err != nil {
				t.Fatal(err)
			}
		}
		var got []map[string]int
		var types []string
		for step, err := range h.History(ctx, "cart-1") {
			if err != nil {
				t.Fatal(err)
			}
			got = append(got, maps.Clone(step.State.Items))
			types = append(types, step.Event.Type)
			if step.Metadata.CorrelationID != "corr" {
				t.Errorf("step %d metadata %+v", step.Event.Revision, step.Metadata)
			}
		}
		want := []map[string]int{{"a": 1}, {"a": 1, "b": 2}, {"b": 2}, {"b": 2}}
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("history states (-want +got):\n%s", diff)
		}
		if !cmp.Equal(types, []string{"ItemAdded", "ItemAdded", "ItemRemoved", "CheckedOut"}) {
			t.Errorf("history types %v", types)
		}
		var missing []error
		for _, err := range h.History(ctx, "cart-none") {
			missing = append(missing, err)
		}
		if len(missing) != 1 || !errors.Is(missing[0], annals.ErrStreamNotFound) {
			t.Errorf("History of a missing stream yields %v, want one ErrStreamNotFound", missing)
		}
		// Stopping early is fine.
		for range h.History(ctx, "cart-1") {
			break
		}
	})
}
