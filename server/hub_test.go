package server

import (
	"context"
	"errors"
	"fmt"
	"io"
	"iter"
	"log/slog"
	"math/rand/v2"
	"os"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/annalsdb/annals"
	"github.com/annalsdb/annals/internal/teststores"
	"github.com/annalsdb/annals/internal/testwait"
	"github.com/annalsdb/annals/memstore"
)

// countingStore counts the subscriptions of $all running on the store, now and at most.
type countingStore struct {
	annals.Store
	running, peak atomic.Int64
}

func (c *countingStore) SubscribeAll(ctx context.Context, opts *annals.SubscribeOptions) iter.Seq2[annals.RecordedEvent, error] {
	return func(yield func(annals.RecordedEvent, error) bool) {
		n := c.running.Add(1)
		defer c.running.Add(-1)
		for p := c.peak.Load(); n > p && !c.peak.CompareAndSwap(p, n); p = c.peak.Load() {
		}
		c.Store.SubscribeAll(ctx, opts)(yield)
	}
}

// hubSub is a subscription of $all run through Server.follow, as Subscribe and SSE run theirs.
type hubSub struct {
	s      *Server
	peer   string // names it in Stats
	from   uint64
	filter *annals.Filter
	ctx    context.Context // the subscription's, as the server gives it
	cancel context.CancelFunc
	done   chan struct{}
	err    error // set when done is closed

	mu struct {
		sync.Mutex
		got []annals.RecordedEvent
		// stalled, when not nil, holds back every send until it is closed.
		stalled chan struct{}
		// blocked is closed when a send waits on stalled.
		blocked chan struct{}
	}
}

// subscribe starts a subscription of $all from from (or from the end) with filter.
func subscribe(t *testing.T, s *Server, from uint64, filter *annals.Filter) *hubSub {
	t.Helper()
	ctx, cancel := context.WithCancel(t.Context())
	sctx, done, err := s.beginSubscription(ctx)
	if err != nil {
		t.Fatal(err)
	}
	peer := fmt.Sprintf("sub-%d", subCount.Add(1))
	tg := target{all: true, from: from, filter: filter, protocol: "test", peer: peer}
	if from, err = s.prepare(sctx, tg); err != nil {
		t.Fatal(err)
	}
	h := &hubSub{s: s, peer: peer, from: from, filter: filter, ctx: sctx, cancel: cancel, done: make(chan struct{})}
	go func() {
		defer close(h.done)
		defer done()
		h.err = s.follow(sctx, tg, from, h.send, nil)
	}()
	t.Cleanup(func() {
		cancel()
		<-h.done
	})
	return h
}

var subCount atomic.Int64

// status returns h's entry in the server's Stats, the zero value before it is listed.
func (h *hubSub) status(t *testing.T) SubscriptionStatus {
	t.Helper()
	st, err := h.s.Stats(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	for _, ss := range st.Subscriptions {
		if ss.Peer == h.peer {
			return ss
		}
	}
	return SubscriptionStatus{} // not started yet
}

func (h *hubSub) send(batch []annals.RecordedEvent) error {
	h.mu.Lock()
	stalled, blocked := h.mu.stalled, h.mu.blocked
	if stalled != nil && blocked != nil {
		close(blocked)
		h.mu.blocked = nil
	}
	h.mu.Unlock()
	if stalled != nil {
		select {
		case <-stalled:
		case <-h.ctx.Done(): // as a write to a connection that went away
			return h.ctx.Err()
		}
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	h.mu.got = append(h.mu.got, batch...)
	return nil
}

// stall holds back the subscription's sends until release is called (once or more) or the
// subscription ends; blocked is closed once a send waits.
func (h *hubSub) stall() (blocked <-chan struct{}, release func()) {
	h.mu.Lock()
	defer h.mu.Unlock()
	stalled, b := make(chan struct{}), make(chan struct{})
	h.mu.stalled, h.mu.blocked = stalled, b
	return b, sync.OnceFunc(func() {
		h.mu.Lock()
		h.mu.stalled, h.mu.blocked = nil, nil
		h.mu.Unlock()
		close(stalled)
	})
}

func (h *hubSub) events() []annals.RecordedEvent {
	h.mu.Lock()
	defer h.mu.Unlock()
	return slices.Clone(h.mu.got)
}

// want returns what a subscription from h.from with h.filter must deliver of the log as it
// is now: a plain read of the store.
func (h *hubSub) want(t *testing.T, store annals.Store) []annals.RecordedEvent {
	t.Helper()
	var out []annals.RecordedEvent
	for e, err := range store.ReadAll(t.Context(), &annals.ReadOptions{From: h.from, Filter: h.filter}) {
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, e)
	}
	return out
}

// checkPrefix returns the first difference between got and want, or nil when want starts
// with got.
func checkPrefix(got, want []annals.RecordedEvent) error {
	if len(got) > len(want) {
		return fmt.Errorf("got %d events, want %d: %d more than the log holds", len(got), len(want), len(got)-len(want))
	}
	for i := range got {
		if got[i].ID != want[i].ID || got[i].Position != want[i].Position {
			return fmt.Errorf("event %d: got position %d (%s), want %d (%s)", i, got[i].Position, got[i].ID, want[i].Position, want[i].ID)
		}
	}
	return nil
}

// caughtUp waits until h has delivered exactly what a read of the store gives.
func (h *hubSub) caughtUp(t *testing.T, store annals.Store, what string) {
	t.Helper()
	want := h.want(t, store)
	testwait.UntilNil(t, what, func() error {
		got := h.events()
		if err := checkPrefix(got, want); err != nil {
			return err
		}
		if len(got) < len(want) {
			return fmt.Errorf("%d of %d events", len(got), len(want))
		}
		return nil
	})
}

// newHubServer returns a server over store whose hub keeps the last ring events.
func newHubServer(t *testing.T, store annals.Store, ring int) *Server {
	s := New(store, &Options{Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	s.hub.size = ring
	t.Cleanup(func() { s.Close() })
	return s
}

// appendSome appends n single events to the streams and types chosen by pick.
func appendSome(t *testing.T, store annals.Store, n int, pick func(i int) (stream, typ string)) {
	t.Helper()
	for i := range n {
		stream, typ := pick(i)
		if _, err := store.Append(t.Context(), stream, annals.Any, annals.Event{Type: typ, Data: []byte(`{}`)}); err != nil {
			t.Fatal(err)
		}
	}
}

func alternate(i int) (string, string) {
	return []string{"a-1", "b-1", "a-2"}[i%3], []string{"T1", "T2"}[i%2]
}

// TestHubFanout runs subscriptions of $all from the start, from the middle and from the end,
// filtered and not, over one hub, while one of them stalls in its send long enough to fall
// behind the ring: every one delivers exactly what a read of the store gives, in order, with
// no gap and no duplicate; the stalled one goes back to storage and attaches again; the store
// runs one subscription of $all for all of them, and none once they have ended.
func TestHubFanout(t *testing.T) {
	teststores.Each(t, func(t *testing.T, st annals.Store) {
		store := &countingStore{Store: st}
		const ring = 8
		s := newHubServer(t, store, ring)
		appendSome(t, store, 20, alternate)

		subs := []*hubSub{
			subscribe(t, s, 0, nil),
			subscribe(t, s, 7, nil),
			subscribe(t, s, annals.End, nil),
			subscribe(t, s, 0, &annals.Filter{Categories: []string{"a"}}),
			subscribe(t, s, 3, &annals.Filter{EventTypes: []string{"T2"}}),
			subscribe(t, s, annals.End, &annals.Filter{StreamPrefixes: []string{"b-"}}),
		}
		slow := subscribe(t, s, annals.End, nil)
		subs = append(subs, slow)
		for i, h := range subs {
			h.caughtUp(t, store, fmt.Sprintf("subscription %d caught up", i))
		}
		testwait.Until(t, "every subscription attached", func() bool { return s.hub.attached.Load() == int64(len(subs)) })

		blocked, release := slow.stall()
		appendSome(t, store, 1, alternate)
		testwait.Recv(t, "the slow subscription's send", blocked)
		appendSome(t, store, 3*ring+maxBatchEvents/64, alternate)
		for i, h := range subs[:len(subs)-1] {
			h.caughtUp(t, store, fmt.Sprintf("subscription %d caught up while one stalls", i))
		}
		if ss := slow.status(t); ss.Fallbacks != 0 || !ss.Attached {
			t.Errorf("the stalled subscription before it moves: got %d fallbacks, attached %v; want 0, true", ss.Fallbacks, ss.Attached)
		}
		release()
		slow.caughtUp(t, store, "the slow subscription caught up")
		testwait.Until(t, "the slow subscription attached again", func() bool { return slow.status(t).Attached })
		if ss := slow.status(t); ss.Fallbacks == 0 {
			t.Errorf("the stalled subscription did not fall back to storage: %+v", ss)
		}
		appendSome(t, store, 5, alternate)
		for i, h := range subs {
			h.caughtUp(t, store, fmt.Sprintf("subscription %d caught up at the end", i))
		}
		if n := store.peak.Load(); n != 1 {
			t.Errorf("store subscriptions of $all at once: got at most %d, want 1", n)
		}
		for _, h := range subs {
			h.cancel()
			<-h.done
			if !errors.Is(h.err, context.Canceled) {
				t.Errorf("ended subscription: got %v, want context.Canceled", h.err)
			}
		}
		if n := store.running.Load(); n != 0 {
			t.Errorf("store subscriptions of $all after the last subscriber left: got %d, want 0", n)
		}
		if n := s.hub.attached.Load(); n != 0 {
			t.Errorf("attached after the last subscriber left: got %d, want 0", n)
		}
		if st, err := s.Stats(t.Context()); err != nil || st.SubscriptionCount != 0 {
			t.Errorf("running subscriptions after the last left: got %d (%v), want 0", st.SubscriptionCount, err)
		}
	})
}

// TestHubClose checks that Server.Close ends the subscriptions of $all, attached, catching up
// or stalled in a send, with ErrShuttingDown, and stops the hub.
func TestHubClose(t *testing.T) {
	store := &countingStore{Store: memstore.New(nil)}
	s := newHubServer(t, store, 4)
	appendSome(t, store, 10, alternate)
	attached := subscribe(t, s, annals.End, nil)
	stalled := subscribe(t, s, 0, nil)
	blocked, release := stalled.stall()
	defer release()
	appendSome(t, store, 1, alternate) // one more event for the stalled one to send, wherever it is
	testwait.Until(t, "the first subscription attached", func() bool { return attached.status(t).Attached })
	testwait.Recv(t, "the stalled send", blocked)
	closed := make(chan error, 1)
	go func() { closed <- s.Close() }()
	if err := testwait.Recv(t, "Close", closed); err != nil {
		t.Fatal(err)
	}
	for _, h := range []*hubSub{attached, stalled} {
		<-h.done
		if !errors.Is(h.err, ErrShuttingDown) {
			t.Errorf("got %v, want ErrShuttingDown", h.err)
		}
	}
	if n := store.running.Load(); n != 0 {
		t.Errorf("store subscriptions of $all after Close: got %d, want 0", n)
	}
}

// TestHubRandom mixes appends of one to a few events to a few streams and types, new
// subscriptions of $all (from the start, a position or the end; filtered or not), ends of
// subscriptions, and subscribers that stall in their sends and move again, over a small ring.
// Each ended subscription must have delivered a prefix of what a plain read of the store
// gives from its start, and each running one all of it once released. ANNALS_SEED=<seed>
// replays a run.
func TestHubRandom(t *testing.T) {
	seed := uint64(time.Now().UnixNano())
	if v := os.Getenv("ANNALS_SEED"); v != "" {
		var err error
		if seed, err = strconv.ParseUint(v, 10, 64); err != nil {
			t.Fatalf("ANNALS_SEED=%q: %v", v, err)
		}
	}
	t.Logf("seed %d (ANNALS_SEED=%d replays it)", seed, seed)
	filters := []*annals.Filter{nil, nil, {Categories: []string{"a"}}, {EventTypes: []string{"T2"}}, {StreamPrefixes: []string{"b-"}}}
	streams := []string{"a-1", "a-2", "b-1", "c-1"}
	teststores.Each(t, func(t *testing.T, st annals.Store) {
		r := rand.New(rand.NewPCG(seed, seed))
		store := &countingStore{Store: st}
		s := newHubServer(t, store, 2+r.IntN(30))
		var subs []*hubSub
		releases := map[*hubSub]func(){}
		head := uint64(0)
		for range 200 {
			switch x := r.IntN(20); {
			case x < 10:
				evs := make([]annals.Event, 1+r.IntN(5))
				for i := range evs {
					evs[i] = annals.Event{Type: []string{"T1", "T2"}[r.IntN(2)], Data: []byte(`{}`)}
				}
				res, err := store.Append(t.Context(), streams[r.IntN(len(streams))], annals.Any, evs...)
				if err != nil {
					t.Fatal(err)
				}
				head = res.Position
			case x < 14 || len(subs) == 0:
				from := []uint64{0, annals.End, r.Uint64N(head + 3)}[r.IntN(3)]
				subs = append(subs, subscribe(t, s, from, filters[r.IntN(len(filters))]))
			case x < 16:
				i := r.IntN(len(subs))
				h := subs[i]
				subs = slices.Delete(subs, i, i+1)
				h.cancel()
				if release := releases[h]; release != nil {
					release()
					delete(releases, h)
				}
				<-h.done
				if err := checkPrefix(h.events(), h.want(t, store)); err != nil {
					t.Fatalf("ended subscription from %d, filter %+v: %v", h.from, h.filter, err)
				}
			case x < 18 && len(releases) < 2:
				h := subs[r.IntN(len(subs))]
				if releases[h] == nil {
					_, releases[h] = h.stall()
				}
			default:
				for h, release := range releases {
					release()
					delete(releases, h)
					break
				}
			}
		}
		for h, release := range releases {
			release()
			delete(releases, h)
		}
		for _, h := range subs {
			h.caughtUp(t, store, fmt.Sprintf("subscription from %d, filter %+v, caught up", h.from, h.filter))
		}
		if n := store.peak.Load(); n != 1 {
			t.Errorf("store subscriptions of $all at once: got at most %d, want 1", n)
		}
		t.Logf("%d subscriptions running at the end, %d fallbacks", len(subs), s.hub.fallbacks.Load())
	})
}
