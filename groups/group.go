package groups

import (
	"context"
	"errors"
	"hash/maphash"
	"log/slog"
	"sync"
	"time"

	"github.com/annalsdb/annals"
	"github.com/annalsdb/annals/supervisor"
)

// group runs one creation of a consumer group: while it is active, a reader goroutine that
// follows the log and feeds the entries, and a loop goroutine that fires the timers (message
// timeouts, retry delays), parks events and writes the checkpoint. Without leases it is active
// from start to end; with leases a supervisor goroutine holds the group's lease and runs them
// while it holds it (see lease.go). All are owned by the group: end stops them and waits for
// them.
type group struct {
	m       *Manager
	name    string
	created uint64
	onAll   bool
	seed    maphash.Seed
	sup     *supervisor.Supervisor // nil without leases

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
		flush bool     // with ended: write the checkpoint as the group stops

		// active: the group reads and delivers here (always without leases; with them, while
		// this manager holds the group's lease). activations counts the times it became so;
		// lose, while active under a lease, ends the activation with its cause.
		active      bool
		activations uint64
		lose        context.CancelCauseFunc
		changed     chan struct{} // closed and replaced when active or the lease's state changes

		consumers []*consumer
		rr        int

		// The state of an activation: reset when the group becomes active, forgotten when it
		// stops being so.
		loaded  groupState // as loaded when the group became active
		shared  queue      // round robin: every queued entry; pinned: those with no consumer yet
		log     tracker
		replays tracker
		timers  timers
		keys    map[string]*keyLoad // pinned: in-flight entries per key
		parking []*entry

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

// newGroup returns a group for def; start runs it. Without leases it is active at once, from
// st, its stored state; with leases it stands by until it holds its lease, and loads its state
// then. The error is the supervisor's, for a lease name that cannot be.
func newGroup(m *Manager, def Definition, st groupState) (*group, error) {
	g := &group{
		m: m, name: def.Name, created: def.Created, onAll: def.Settings.Stream == annals.AllStream,
		seed: maphash.MakeSeed(),
		wake: make(chan struct{}, 1), room: make(chan struct{}, 1),
	}
	g.mu.def = def
	g.mu.set = def.Settings.WithDefaults()
	g.mu.changed = make(chan struct{})
	if m.leases == nil {
		g.activateLocked(st)
		return g, nil
	}
	sup, err := supervisor.New(supervisor.Options{
		Name: LeasePrefix + def.Name,
		Policy: supervisor.Policy{Keeper: m.leases, Holder: m.holder, TTL: m.ttl, OnChange: func(supervisor.Status) {
			g.mu.Lock()
			g.changedLocked()
			g.mu.Unlock()
		}},
	})
	if err != nil {
		return nil, err
	}
	g.sup = sup
	g.resetLocked()
	return g, nil
}

// activateLocked makes the group active from st, its stored state.
func (g *group) activateLocked(st groupState) {
	g.resetLocked()
	def := g.mu.def
	g.mu.loaded = st
	from := st.start(&def)
	g.mu.log.next = from
	g.mu.written = from
	g.mu.replays.next = st.replayed
	g.mu.writtenReplayed = st.replayed
	g.mu.cpExpected = st.cpExpected
	g.mu.parked = st.parkedPending
	g.mu.active = true
	g.mu.activations++
	g.changedLocked()
}

// changedLocked wakes those waiting for the group to become active.
func (g *group) changedLocked() {
	close(g.mu.changed)
	g.mu.changed = make(chan struct{})
}

// deactivateLocked stops delivering at once: the consumers' events in flight and not yet
// received are forgotten (acks of them get ErrNotInFlight). The rest of the activation's state
// stays until resetLocked, once the reader and the loop have stopped.
func (g *group) deactivateLocked() {
	if g.mu.active {
		g.mu.active = false
		g.changedLocked()
	}
	for _, c := range g.mu.consumers {
		clear(c.inflight)
		c.mailbox = nil
	}
}

// resetLocked forgets the state of an activation; the reader and the loop are not running.
func (g *group) resetLocked() {
	g.deactivateLocked()
	for _, c := range g.mu.consumers {
		c.queue.takeAll()
	}
	g.mu.loaded = groupState{}
	g.mu.shared = queue{}
	g.mu.log = tracker{}
	g.mu.replays = tracker{}
	g.mu.timers = nil
	g.mu.keys = make(map[string]*keyLoad)
	g.mu.parking = nil
	g.mu.replayTarget, g.mu.replayBudget = 0, 0
	g.mu.written, g.mu.writtenReplayed = 0, 0
	g.mu.cpExpected = annals.NoStream
	g.mu.dirty, g.mu.cpArmed = false, false
	g.mu.lastWrite = time.Time{}
}

// start runs the group's goroutines under parent; end stops them (its callers end every
// group they start, so that Close writes the checkpoints before the leases are released).
func (g *group) start(parent context.Context) {
	g.ctx, g.cancel = context.WithCancel(parent)
	if g.sup != nil {
		g.wg.Add(1)
		go func() { defer g.wg.Done(); g.supervise(g.ctx) }()
		return
	}
	g.wg.Add(2)
	go func() { defer g.wg.Done(); g.read(g.ctx) }()
	go func() { defer g.wg.Done(); g.loop(g.ctx) }()
}

// end stops the group's goroutines, waits for them, and ends its consumers with err. With
// flush it writes the parks pending and then the checkpoint as it stops (on Close; not when
// the group is deleted): under a lease, before the lease is released.
func (g *group) end(err error, flush bool) {
	g.mu.Lock()
	if g.mu.ended == nil {
		g.mu.ended = err
		g.mu.flush = flush
		g.changedLocked()
		for _, c := range g.mu.consumers {
			c.endLocked(err)
		}
		g.mu.consumers = nil
	}
	g.mu.Unlock()
	g.cancel()
	g.wg.Wait()
	if flush && g.sup == nil {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		g.parkPending(ctx)
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
		if !g.mu.active {
			g.mu.Unlock()
			return false
		}
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
	for g.mu.active && len(g.mu.timers) > 0 && !g.mu.timers[0].due.After(now) {
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
