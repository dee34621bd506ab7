package groups

import (
	"context"
	"errors"
	"hash/maphash"
	"log/slog"
	"sync"
	"time"

	"github.com/annalsdb/annals"
)

// group runs one creation of a consumer group: a reader goroutine that follows the log and
// feeds the entries, and a loop goroutine that fires the timers (message timeouts, retry
// delays), parks events and writes the checkpoint. Both are owned by the group: stop ends them
// and waits for them.
type group struct {
	m       *Manager
	name    string
	created uint64
	onAll   bool
	seed    maphash.Seed
	loaded  groupState // as loaded when the group started

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup
	wake   chan struct{} // wakes the loop (capacity 1)
	room   chan struct{} // wakes the reader when the buffer has room (capacity 1)

	// replayMu serializes ReplayParked calls; never held with mu... but mu is taken inside.
	replayMu sync.Mutex

	mu struct {
		sync.Mutex
		def   Definition
		set   Settings // def.Settings with defaults
		ended error    // why the group stopped; nil while it runs

		consumers []*consumer
		rr        int
		shared    queue // round robin: every queued entry; pinned: those with no consumer yet
		log       tracker
		replays   tracker
		timers    timers
		keys      map[string]*keyLoad // pinned: in-flight entries per key
		parking   []*entry

		// replays: the parked stream is read up to replayTarget for replayBudget more events
		replayTarget uint64
		replayBudget int

		// checkpoint writing
		written         uint64 // checkpoint last written (or loaded)
		writtenReplayed uint64
		cpExpected      annals.ExpectedRevision
		dirty           bool // a log entry was settled since the last write
		cpArmed         bool // the loop knows a checkpoint is to be written
		lastWrite       time.Time

		parked                                          uint64 // parked and not handed back
		delivered, acked, retries, parkedTotal, skipped uint64
	}
}

// keyLoad counts the entries of one pinned key in flight, and to whom.
type keyLoad struct {
	cons *consumer
	n    int
}

// newGroup returns a group for def with its stored state; start runs it.
func newGroup(m *Manager, def Definition, st groupState) *group {
	g := &group{
		m: m, name: def.Name, created: def.Created, onAll: def.Settings.Stream == annals.AllStream,
		seed: maphash.MakeSeed(),
		wake: make(chan struct{}, 1), room: make(chan struct{}, 1),
	}
	g.mu.def = def
	g.mu.set = def.Settings.WithDefaults()
	g.mu.keys = make(map[string]*keyLoad)
	g.loaded = st
	from := st.start(&def)
	g.mu.log.next = from
	g.mu.written = from
	g.mu.replays.next = st.replayed
	g.mu.writtenReplayed = st.replayed
	g.mu.cpExpected = st.cpExpected
	g.mu.parked = st.parkedPending
	return g
}

// start runs the group's goroutines under parent.
func (g *group) start(parent context.Context) {
	g.ctx, g.cancel = context.WithCancel(parent)
	g.wg.Add(2)
	go func() { defer g.wg.Done(); g.read(g.ctx) }()
	go func() { defer g.wg.Done(); g.loop(g.ctx) }()
}

// end stops the group's goroutines, waits for them, and ends its consumers with err. With
// flush it then writes the parks pending and the checkpoint (on Close; not when the group is
// deleted).
func (g *group) end(err error, flush bool) {
	g.mu.Lock()
	if g.mu.ended == nil {
		g.mu.ended = err
		for _, c := range g.mu.consumers {
			c.endLocked(err)
		}
		g.mu.consumers = nil
	}
	g.mu.Unlock()
	g.cancel()
	g.wg.Wait()
	if flush {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		// The parks the loop did not write (or was stopped in) first: the checkpoint may
		// then pass them. A repeated park is recognised by the ids of its copies.
		g.mu.Lock()
		parks := g.mu.parking
		g.mu.parking = nil
		g.mu.Unlock()
		if len(parks) > 0 {
			if err := g.park(ctx, parks); err != nil {
				g.logger().Warn("group: parking events at close failed; they are delivered again", "err", err)
			}
		}
		g.flush(ctx, true)
	}
}

func (g *group) logger() *slog.Logger { return g.m.log.With("group", g.name) }

// signal does a non-blocking send on ch, a channel of capacity 1.
func signal(ch chan struct{}) {
	select {
	case ch <- struct{}{}:
	default:
	}
}

// read follows the log from the group's next key and feeds the entries, resubscribing after a
// failure, until ctx is done.
func (g *group) read(ctx context.Context) {
	backoff := 50 * time.Millisecond
	for ctx.Err() == nil {
		g.mu.Lock()
		from := g.mu.log.next
		set := g.mu.set
		g.mu.Unlock()
		var seq func(func(annals.RecordedEvent, error) bool)
		if g.onAll {
			seq = g.m.store.SubscribeAll(ctx, &annals.SubscribeOptions{From: from, Filter: set.Filter})
		} else {
			seq = g.m.store.SubscribeStream(ctx, set.Stream, &annals.SubscribeOptions{From: from})
		}
		var failed error
		for e, err := range seq {
			if err != nil {
				failed = err
				break
			}
			if !g.admit(ctx, e) {
				return
			}
			backoff = 50 * time.Millisecond
		}
		if ctx.Err() != nil {
			return
		}
		if errors.Is(failed, annals.ErrClosed) {
			g.logger().Warn("group: the store is closed; the group stops reading", "err", failed)
			return
		}
		if failed != nil && !errors.Is(failed, context.Canceled) {
			g.logger().Warn("group: following the log failed; retrying", "err", failed, "after", backoff)
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, 5*time.Second)
	}
}

// admit adds an event read from the log, waiting for room in the buffer. It returns false
// when ctx is done first.
func (g *group) admit(ctx context.Context, ev annals.RecordedEvent) bool {
	key := ev.Revision
	if g.onAll {
		key = ev.Position
	}
	for {
		g.mu.Lock()
		if key < g.mu.log.next {
			g.mu.Unlock() // read again after a resubscription
			return true
		}
		if g.onAll && isGroupStream(ev.Stream) {
			if g.mu.log.unsettled() == 0 {
				g.mu.log.next = key + 1
			} else {
				// Not delivered, and settled at once.
				e := &entry{key: key, state: stSettled, heapIdx: -1}
				g.mu.log.add(e)
				g.mu.log.settle()
			}
			g.mu.Unlock()
			return true
		}
		if g.mu.log.unsettled() < g.mu.set.Buffer {
			e := &entry{ev: ev, key: key, heapIdx: -1}
			e.pin = g.pinOf(&g.mu.set, &ev)
			g.mu.log.add(e)
			g.enqueueLocked(e)
			g.mu.Unlock()
			return true
		}
		g.mu.Unlock()
		select {
		case <-ctx.Done():
			return false
		case <-g.room:
		}
	}
}

// loop fires the timers, parks events and writes the checkpoint until ctx is done.
func (g *group) loop(ctx context.Context) {
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	var parkRetry, feedRetry time.Time
	for ctx.Err() == nil {
		now := time.Now()
		g.mu.Lock()
		g.fireLocked(now)
		var parks []*entry
		if !now.Before(parkRetry) {
			parks = g.mu.parking
			g.mu.parking = nil
		}
		next := time.Time{}
		if len(g.mu.timers) > 0 {
			next = g.mu.timers[0].due
		}
		cpDue, cpNeeded := g.checkpointDueLocked()
		g.mu.cpArmed = cpNeeded
		if cpNeeded && (next.IsZero() || cpDue.Before(next)) {
			next = cpDue
		}
		if len(g.mu.parking) > 0 && (next.IsZero() || parkRetry.Before(next)) {
			next = parkRetry
		}
		feed := g.feedNeededLocked()
		if feed && now.Before(feedRetry) {
			feed = false
			if next.IsZero() || feedRetry.Before(next) {
				next = feedRetry
			}
		}
		g.mu.Unlock()

		if len(parks) > 0 {
			if err := g.park(ctx, parks); err != nil {
				if ctx.Err() != nil {
					return
				}
				g.logger().Warn("group: parking events failed; retrying", "err", err)
				parkRetry = time.Now().Add(time.Second)
			}
			continue
		}
		if feed {
			if err := g.feed(ctx); err != nil {
				if ctx.Err() != nil {
					return
				}
				g.logger().Warn("group: reading parked events to replay failed; retrying", "err", err)
				feedRetry = time.Now().Add(time.Second)
			}
			continue
		}
		if cpNeeded && !now.Before(cpDue) {
			if !g.flush(ctx, false) && ctx.Err() == nil {
				// Try again after an interval.
				g.mu.Lock()
				g.mu.lastWrite = time.Now()
				g.mu.Unlock()
			}
			continue
		}
		wait := time.Hour
		if !next.IsZero() {
			wait = max(time.Until(next), 0)
		}
		timer.Reset(wait)
		select {
		case <-ctx.Done():
			return
		case <-g.wake:
		case <-timer.C:
		}
		if !timer.Stop() {
			select {
			case <-timer.C:
			default:
			}
		}
	}
}

// fireLocked handles the timers due at now: an event in flight past its message timeout goes
// back (a retry), a delayed one is queued again.
func (g *group) fireLocked(now time.Time) {
	for len(g.mu.timers) > 0 && !g.mu.timers[0].due.After(now) {
		e := g.mu.timers[0]
		g.mu.timers.remove(e)
		switch e.state {
		case stInFlight:
			c := e.cons
			g.takeBackLocked(e)
			g.retryLocked(e, 0, "message timeout")
			g.dispatchConsumerLocked(c)
		case stDelayed:
			e.state = stQueued
			g.enqueueLocked(e)
		}
	}
}
