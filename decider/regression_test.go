package decider_test

import (
	"context"
	"errors"
	"fmt"
	"iter"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/annalsdb/annals"
	"github.com/annalsdb/annals/codec"
	"github.com/annalsdb/annals/decider"
	"github.com/annalsdb/annals/internal/testwait"
	"github.com/annalsdb/annals/memstore"
)

// peek returns the state h decides on for stream: its cached state when it has one.
func peek(t *testing.T, h *decider.Handler[cart, cartCmd, cartEvent], stream string) cart {
	t.Helper()
	var c cart
	if _, err := h.Handle(ctxT(t), stream, Peek{Into: &c}, nil); err != nil {
		t.Fatal(err)
	}
	return c
}

func appendRaw(t *testing.T, s annals.Store, stream string, skus ...string) annals.AppendResult {
	t.Helper()
	evs := make([]annals.Event, len(skus))
	for i, sku := range skus {
		evs[i] = annals.Event{Type: "ItemAdded", Data: []byte(`{"sku":"` + sku + `","qty":1}`)}
	}
	res, err := s.Append(context.Background(), stream, annals.Any, evs...)
	if err != nil {
		t.Fatal(err)
	}
	return res
}

// boundedCtx bounds a call that could hang: it then fails with a deadline instead of hanging
// the test.
func boundedCtx(t *testing.T) context.Context {
	return testwait.Context(t)
}

// A stream whose events its metadata hides folds as empty; the append expecting NoStream
// conflicts with the hidden last revision, which never arrives on a subscription. The handler
// must move past it instead of waiting for it.
func TestHiddenEventsDoNotHang(t *testing.T) {
	for _, tc := range []struct {
		name string
		meta annals.StreamMetadata
	}{
		{"truncateBefore past the end", annals.StreamMetadata{TruncateBefore: 3}},
		{"maxAge expired", annals.StreamMetadata{MaxAge: time.Millisecond}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			forEachStore(t, func(t *testing.T, s annals.Store) {
				for _, cacheSize := range []int{0, 4} {
					stream := fmt.Sprintf("cart-%d", cacheSize)
					appendRaw(t, s, stream, "a", "b", "c") // revisions 0..2
					if _, err := s.SetMetadata(context.Background(), stream, annals.Any, tc.meta); err != nil {
						t.Fatal(err)
					}
					waitHidden(t, s, stream)
					h := newHandler(t, s, &decider.Options[cartCmd]{CacheSize: cacheSize})
					res, err := h.Handle(boundedCtx(t), stream, AddItem{"x", 1}, nil)
					if err != nil {
						t.Fatalf("cache %d: Handle on a stream with hidden events: %v", cacheSize, err)
					}
					if !res.Written || res.Revision != 3 {
						t.Fatalf("cache %d: result %+v, want written at revision 3", cacheSize, res)
					}
					// The next command (from the cached state, when cached) goes on from there.
					res, err = h.Handle(boundedCtx(t), stream, AddItem{"y", 1}, nil)
					if err != nil || res.Revision != 4 {
						t.Fatalf("cache %d: second command: %+v, %v; want revision 4", cacheSize, res, err)
					}
					if len(storedEventsAll(t, s, stream)) != 5 {
						t.Fatalf("cache %d: the log holds %d events of %s, want 5", cacheSize, len(storedEventsAll(t, s, stream)), stream)
					}
				}
			})
		})
	}
}

// waitHidden waits until reads of stream return none of its events.
func waitHidden(t *testing.T, s annals.Store, stream string) {
	t.Helper()
	testwait.Until(t, "the events of "+stream+" to be hidden", func() bool {
		return len(storedEvents(t, s, stream)) == 0
	})
}

// storedEventsAll returns every event of stream in the log, hidden or not.
func storedEventsAll(t *testing.T, s annals.Store, stream string) []annals.RecordedEvent {
	t.Helper()
	var out []annals.RecordedEvent
	for ev, err := range s.ReadAll(context.Background(), nil) {
		if err != nil {
			t.Fatal(err)
		}
		if ev.Stream == stream {
			out = append(out, ev)
		}
	}
	return out
}

// deletingStore soft-deletes the stream right after the next conflict on it, before the
// handler reads it again.
type deletingStore struct {
	annals.Store
	armed atomic.Bool
}

func (d *deletingStore) Append(ctx context.Context, stream string, expected annals.ExpectedRevision, events ...annals.Event) (annals.AppendResult, error) {
	res, err := d.Store.Append(ctx, stream, expected, events...)
	if errors.Is(err, annals.ErrWrongExpectedVersion) && d.armed.CompareAndSwap(true, false) {
		if _, derr := d.Store.Delete(ctx, stream, annals.Any); derr != nil {
			return res, derr
		}
	}
	return res, err
}

// A soft delete between a conflict and the read after it resets the state; the revision the
// conflict named will never be read, and the handler must re-create the stream.
func TestConflictThenSoftDelete(t *testing.T) {
	forEachStore(t, func(t *testing.T, s annals.Store) {
		ds := &deletingStore{Store: s}
		h := newHandler(t, ds, &decider.Options[cartCmd]{CacheSize: 4})
		if _, err := h.Handle(ctxT(t), "cart-1", AddItem{"a", 1}, nil); err != nil {
			t.Fatal(err)
		}
		appendRaw(t, s, "cart-1", "rival") // the cached state is now stale
		ds.armed.Store(true)
		res, err := h.Handle(boundedCtx(t), "cart-1", AddItem{"b", 1}, nil)
		if err != nil {
			t.Fatalf("Handle after a conflict and a soft delete: %v", err)
		}
		if !res.Written || res.Revision != 2 {
			t.Errorf("result %+v, want written at revision 2 (re-created)", res)
		}
		want := fold(t, s, "cart-1")
		if diff := cmp.Diff(map[string]int{"b": 1}, want.Items); diff != "" {
			t.Errorf("stream after re-creation (-want +got):\n%s", diff)
		}
		if diff := cmp.Diff(want, peek(t, h, "cart-1")); diff != "" {
			t.Errorf("cached state (-fold +cached):\n%s", diff)
		}
	})
}

// inflightStore makes the next append to its stream conflict with a revision that is not
// readable yet, as a store that refuses an append because of one it is still making durable:
// the rival event becomes readable only after the handler's next read of the stream (which
// therefore misses it).
type inflightStore struct {
	annals.Store
	stream  string
	armed   atomic.Bool
	pending atomic.Bool
}

func (f *inflightStore) Append(ctx context.Context, stream string, expected annals.ExpectedRevision, events ...annals.Event) (annals.AppendResult, error) {
	if stream == f.stream && f.armed.CompareAndSwap(true, false) {
		if r, ok := expected.Revision(); ok {
			f.pending.Store(true)
			return annals.AppendResult{}, &annals.WrongExpectedVersionError{Stream: stream, Expected: expected, Actual: annals.Exact(r + 1)}
		}
	}
	return f.Store.Append(ctx, stream, expected, events...)
}

func (f *inflightStore) ReadStream(ctx context.Context, stream string, opts *annals.ReadOptions) iter.Seq2[annals.RecordedEvent, error] {
	if stream != f.stream || !f.pending.CompareAndSwap(true, false) {
		return f.Store.ReadStream(ctx, stream, opts)
	}
	return func(yield func(annals.RecordedEvent, error) bool) {
		defer func() {
			if _, err := f.Store.Append(ctx, stream, annals.Any, annals.Event{Type: "ItemAdded", Data: []byte(`{"sku":"rival","qty":1}`)}); err != nil {
				panic(err)
			}
		}()
		for ev, err := range f.Store.ReadStream(ctx, stream, opts) {
			if !yield(ev, err) {
				return
			}
		}
	}
}

// A conflict with an event not yet readable is not a hidden event: the handler must wait for
// it and decide on it, not move past it (that would lose the rival's update). Count records
// how many events its decision saw.
func TestConflictWaitsForEventNotYetReadable(t *testing.T) {
	for _, meta := range []*annals.StreamMetadata{nil, {MaxAge: time.Hour}} {
		forEachStore(t, func(t *testing.T, s annals.Store) {
			if meta != nil {
				if _, err := s.SetMetadata(context.Background(), "cart-1", annals.Any, *meta); err != nil {
					t.Fatal(err)
				}
			}
			fs := &inflightStore{Store: s, stream: "cart-1"}
			h := newHandler(t, fs, nil)
			if _, err := h.Handle(ctxT(t), "cart-1", AddItem{"a", 1}, nil); err != nil {
				t.Fatal(err)
			}
			fs.armed.Store(true)
			res, err := h.Handle(boundedCtx(t), "cart-1", Count{}, nil)
			if err != nil {
				t.Fatalf("metadata %+v: %v", meta, err)
			}
			if res.Revision != 2 {
				t.Errorf("metadata %+v: result %+v, want revision 2", meta, res)
			}
			want := map[string]int{"a": 1, "rival": 1, "seen-2": 1}
			if got := fold(t, s, "cart-1"); !cmp.Equal(got.Items, want) {
				t.Errorf("metadata %+v: items %v, want %v (seen-1: decided without the rival)", meta, got.Items, want)
			}
		})
	}
}

// The state a handler keeps (cache, snapshots) must be the fold of the stored events, also
// where encoding and decoding are not the identity: here Decide returns a *ItemAdded, stored
// as an ItemAdded, which evolveCart folds otherwise.
func TestStateFoldedFromStoredEvents(t *testing.T) {
	forEachStore(t, func(t *testing.T, s annals.Store) {
		ctx := ctxT(t)
		h := newHandler(t, s, &decider.Options[cartCmd]{CacheSize: 4, Snapshots: &decider.SnapshotPolicy{Every: 1, Version: "v1"}})
		for _, c := range []cartCmd{AddItem{"a", 1}, AddPointer{"p"}, AddPointer{"p"}} {
			if _, err := h.Handle(ctx, "cart-1", c, nil); err != nil {
				t.Fatal(err)
			}
		}
		want := fold(t, s, "cart-1")
		if want.Items["p"] != 2 {
			t.Fatalf("fold %+v, want p:2", want)
		}
		if diff := cmp.Diff(want, peek(t, h, "cart-1")); diff != "" {
			t.Errorf("cached state (-fold +cached):\n%s", diff)
		}
		snap, ok, err := decider.NewStreamSnapshots(s, nil).Load(ctx, "cart-1", decider.SnapshotQuery{})
		if err != nil || !ok {
			t.Fatalf("no snapshot: %v", err)
		}
		var got cart
		if err := codec.JSON.Unmarshal(snap.State, &got); err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("snapshot (-fold +snapshot):\n%s", diff)
		}

		// An event that does not decode back as a cartEvent is not written at all.
		n := len(storedEvents(t, s, "cart-1"))
		if _, err := h.Handle(ctx, "cart-1", Wrap{}, nil); !errors.Is(err, codec.ErrUnknownType) {
			t.Errorf("Wrap: got %v, want ErrUnknownType", err)
		}
		if got := len(storedEvents(t, s, "cart-1")); got != n {
			t.Errorf("Wrap wrote %d events", got-n)
		}
		if _, err := newHandler(t, s, nil).Load(ctx, "cart-1", nil); err != nil {
			t.Errorf("Load after Wrap: %v", err)
		}
	})
}

// A stale cached state conflicts once; that conflict says only that the cache was stale, and
// must not use up a retry.
func TestStaleCacheCostsNoRetry(t *testing.T) {
	forEachStore(t, func(t *testing.T, s annals.Store) {
		rs := &racingStore{Store: s, stream: "cart-1"}
		h := newHandler(t, rs, &decider.Options[cartCmd]{MaxRetries: -1, CacheSize: 4})
		if _, err := h.Handle(ctxT(t), "cart-1", AddItem{"a", 1}, nil); err != nil {
			t.Fatal(err)
		}
		appendRaw(t, s, "cart-1", "other") // no writer races the next command
		res, err := h.Handle(ctxT(t), "cart-1", AddItem{"b", 1}, nil)
		if err != nil || res.Revision != 2 {
			t.Fatalf("stale cache, no race, MaxRetries -1: %+v, %v; want written at revision 2", res, err)
		}
		// A writer racing the stale state's retry is a real conflict: no retry left.
		appendRaw(t, s, "cart-1", "other")
		rs.left.Store(2)
		_, err = h.Handle(ctxT(t), "cart-1", AddItem{"c", 1}, nil)
		ce, ok := errors.AsType[*decider.ConflictError](err)
		if !ok || ce.Attempts != 2 {
			t.Fatalf("stale cache then a race: got %v, want a ConflictError after 2 attempts", err)
		}
	})
}

// blockingSnapshots is a SnapshotStore whose Save hangs until its context ends.
type blockingSnapshots struct{}

var errNoDeadline = errors.New("snapshot save without a deadline: a hung save would never end")

func (blockingSnapshots) Save(ctx context.Context, _ decider.Snapshot) error {
	if _, ok := ctx.Deadline(); !ok {
		return errNoDeadline
	}
	<-ctx.Done()
	return ctx.Err()
}

func (blockingSnapshots) Load(context.Context, string, decider.SnapshotQuery) (decider.Snapshot, bool, error) {
	return decider.Snapshot{}, false, nil
}

// A snapshot save that hangs is bounded by SaveTimeout, even though it is not cancelled with
// the command's context; the command has been written and succeeds.
func TestSnapshotSaveIsBounded(t *testing.T) {
	s := memstore.New(nil)
	t.Cleanup(func() { s.Close() })
	var mu sync.Mutex
	var reports []error
	h := newHandler(t, s, &decider.Options[cartCmd]{
		Snapshots: &decider.SnapshotPolicy{Every: 1, Version: "v1", Store: blockingSnapshots{}, SaveTimeout: 20 * time.Millisecond},
		OnError: func(err error) {
			mu.Lock()
			reports = append(reports, err)
			mu.Unlock()
		},
	})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() {
		_, err := h.Handle(ctx, "cart-1", AddItem{"a", 1}, nil)
		done <- err
	}()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Handle: %v (the command was written)", err)
		}
	case <-time.After(10 * time.Second):
		cancel()
		t.Fatal("Handle still waits for a hung snapshot save")
	}
	mu.Lock()
	defer mu.Unlock()
	if len(reports) != 1 || !errors.Is(reports[0], context.DeadlineExceeded) {
		t.Fatalf("reports %v, want one save that ran out of time", reports)
	}
}
