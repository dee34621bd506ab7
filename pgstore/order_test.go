package pgstore_test

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/annalsdb/annals"
	"github.com/annalsdb/annals/pgstore"
	"github.com/jackc/pgx/v5"
)

// orderSeeds returns the seeds TestAllGapFreeUnderConcurrentWriters runs: ANNALS_SEED alone
// when set (to replay a failure), else ANNALS_ORDER_SEEDS seeds (default 8) from the clock.
func orderSeeds(t *testing.T) []int64 {
	if v := os.Getenv("ANNALS_SEED"); v != "" {
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil {
			t.Fatalf("ANNALS_SEED=%q: want an integer", v)
		}
		return []int64{n}
	}
	count := 8
	if v := os.Getenv("ANNALS_ORDER_SEEDS"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 {
			t.Fatalf("ANNALS_ORDER_SEEDS=%q: want a count", v)
		}
		count = n
	}
	base := time.Now().UnixNano()
	seeds := make([]int64, count)
	for i := range seeds {
		seeds[i] = base + int64(i)
	}
	return seeds
}

// TestAllGapFreeUnderConcurrentWriters is the proof of the ordering design: many writers
// append at once through the store, others append inside transactions of their own that they
// hold open for a while and then commit or roll back, one more holds the log's head row
// locked; meanwhile subscriptions of every kind run, some started before the writers and some
// while they write. Every subscription must deliver every committed event it matches exactly
// once, in position order, and the log must hold exactly the committed events at positions 1…N.
//
// Each seed's run logs its seed; ANNALS_SEED=<seed> replays that seed's choices (the
// interleaving is the scheduler's), ANNALS_ORDER_SEEDS=<n> runs n seeds.
func TestAllGapFreeUnderConcurrentWriters(t *testing.T) {
	for _, seed := range orderSeeds(t) {
		t.Run(strconv.FormatInt(seed, 10), func(t *testing.T) { testOrder(t, seed) })
	}
}

// sub is one subscription of the ordering test.
type sub struct {
	name   string
	opts   *annals.SubscribeOptions
	stream string // for a stream subscription
	match  func(e annals.RecordedEvent) bool

	cancel context.CancelFunc
	done   chan struct{}
	mu     struct {
		sync.Mutex
		events  []annals.RecordedEvent
		err     error
		changed chan struct{}
	}
}

func (c *sub) start(t *testing.T, s *pgstore.Store) {
	ctx, cancel := context.WithCancel(t.Context())
	c.cancel, c.done = cancel, make(chan struct{})
	c.mu.changed = make(chan struct{})
	seq := s.SubscribeAll(ctx, c.opts)
	if c.stream != "" {
		seq = s.SubscribeStream(ctx, c.stream, c.opts)
	}
	go func() {
		defer close(c.done)
		for e, err := range seq {
			c.mu.Lock()
			if err != nil {
				c.mu.err = err
			} else {
				c.mu.events = append(c.mu.events, e)
			}
			close(c.mu.changed)
			c.mu.changed = make(chan struct{})
			c.mu.Unlock()
			if err != nil {
				return
			}
		}
	}()
	t.Cleanup(c.stop)
}

func (c *sub) stop() {
	c.cancel()
	<-c.done
}

// waitFor waits until the subscription delivered n events or failed, for at most d.
func (c *sub) waitFor(n int, d time.Duration) ([]annals.RecordedEvent, error) {
	timer := time.NewTimer(d)
	defer timer.Stop()
	for {
		c.mu.Lock()
		evs, err, changed := slices.Clone(c.mu.events), c.mu.err, c.mu.changed
		c.mu.Unlock()
		if len(evs) >= n || err != nil {
			return evs, err
		}
		select {
		case <-changed:
		case <-timer.C:
			return evs, fmt.Errorf("delivered %d events within %v, want %d", len(evs), d, n)
		}
	}
}

func testOrder(t *testing.T, seed int64) {
	t.Logf("ANNALS_SEED=%d replays this run's choices", seed)
	rng := rand.New(rand.NewPCG(uint64(seed), 0x6f72646572))
	url := testDatabase(t)
	s := openStore(t, &pgstore.Options{MaxConns: 16})
	ctx := t.Context()
	schema := pgx.Identifier{s.Schema()}.Sanitize()

	streams := []string{"ord-1", "ord-2", "ord-3", "acct-1", "acct-2", "acct-3", "misc"}
	newEvents := func(rng *rand.Rand, n int) []annals.Event {
		evs := make([]annals.Event, n)
		for i := range evs {
			evs[i] = annals.Event{ID: annals.NewUUID(), Type: []string{"A", "B", "C"}[rng.IntN(3)], Data: []byte(`{}`)}
		}
		return evs
	}
	var committed sync.Map // event ID → true, for every append known to have committed
	record := func(evs []annals.Event) {
		for _, e := range evs {
			committed.Store(e.ID, true)
		}
	}
	for range 20 {
		evs := newEvents(rng, 1+rng.IntN(3))
		if _, err := s.Append(ctx, streams[rng.IntN(len(streams))], annals.Any, evs...); err != nil {
			t.Fatal(err)
		}
		record(evs)
	}

	all := func(annals.RecordedEvent) bool { return true }
	subs := []*sub{
		{name: "all", match: all},
		{name: "all-from-10", opts: &annals.SubscribeOptions{From: 10}, match: func(e annals.RecordedEvent) bool { return e.Position >= 10 }},
		{name: "category-ord", opts: &annals.SubscribeOptions{Filter: &annals.Filter{Categories: []string{"ord"}}},
			match: func(e annals.RecordedEvent) bool { return annals.Category(e.Stream) == "ord" }},
		{name: "type-B", opts: &annals.SubscribeOptions{Filter: &annals.Filter{EventTypes: []string{"B"}}},
			match: func(e annals.RecordedEvent) bool { return e.Type == "B" }},
		{name: "prefix-acct-2", opts: &annals.SubscribeOptions{Filter: &annals.Filter{StreamPrefixes: []string{"acct-2"}}},
			match: func(e annals.RecordedEvent) bool { return e.Stream == "acct-2" }},
		{name: "stream-ord-1", stream: "ord-1", match: func(e annals.RecordedEvent) bool { return e.Stream == "ord-1" }},
		{name: "all-late", match: all},
		{name: "category-acct-late", opts: &annals.SubscribeOptions{Filter: &annals.Filter{Categories: []string{"acct"}}},
			match: func(e annals.RecordedEvent) bool { return annals.Category(e.Stream) == "acct" }},
	}
	early := len(subs) - 2
	for _, c := range subs[:early] {
		c.start(t, s)
	}

	writers, holders := 6+rng.IntN(6), 2+rng.IntN(3)
	var wg sync.WaitGroup
	errs := make(chan error, writers+holders+1)
	for w := range writers {
		wrng := rand.New(rand.NewPCG(rng.Uint64(), uint64(w)))
		appends := 15 + wrng.IntN(25)
		wg.Go(func() {
			for range appends {
				stream := streams[wrng.IntN(len(streams))]
				evs := newEvents(wrng, 1+wrng.IntN(4))
				expected := annals.Any
				if wrng.IntN(4) == 0 { // an exact expectation races with the others: some lose
					for e, err := range s.ReadStream(ctx, stream, &annals.ReadOptions{Backwards: true, From: annals.End, Limit: 1}) {
						if err == nil {
							expected = annals.Exact(e.Revision)
						}
					}
				}
				if _, err := s.Append(ctx, stream, expected, evs...); err != nil {
					if !errors.Is(err, annals.ErrWrongExpectedVersion) {
						errs <- fmt.Errorf("writer %d: %w", w, err)
						return
					}
					continue
				}
				record(evs)
			}
		})
	}
	for h := range holders {
		hrng := rand.New(rand.NewPCG(rng.Uint64(), uint64(100+h)))
		rounds := 4 + hrng.IntN(6)
		wg.Go(func() {
			conn, err := pgx.Connect(ctx, url)
			if err != nil {
				errs <- err
				return
			}
			defer conn.Close(context.Background())
			for range rounds {
				tx, err := conn.Begin(ctx)
				if err != nil {
					errs <- err
					return
				}
				evs := newEvents(hrng, 1+hrng.IntN(5))
				if hrng.IntN(5) == 0 {
					// Hold the head row without appending, as a stuck appender would.
					_, err = tx.Exec(ctx, "SELECT position FROM "+schema+".log_head FOR UPDATE")
					evs = nil
				} else {
					_, err = s.AppendTx(ctx, tx, streams[hrng.IntN(len(streams))], annals.Any, evs...)
				}
				if err != nil {
					tx.Rollback(ctx)
					errs <- fmt.Errorf("holder %d: %w", h, err)
					return
				}
				// Hold the transaction open while the others try to append: this is the
				// workload (an in-flight transaction), not a wait for a condition.
				time.Sleep(time.Duration(hrng.IntN(3000)) * time.Microsecond)
				if hrng.IntN(3) == 0 || evs == nil {
					err = tx.Rollback(ctx)
				} else if err = tx.Commit(ctx); err == nil {
					record(evs)
				}
				if err != nil {
					errs <- fmt.Errorf("holder %d: %w", h, err)
					return
				}
			}
		})
	}
	for _, c := range subs[early:] {
		c.start(t, s)
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}

	var final []annals.RecordedEvent
	for e, err := range s.ReadAll(ctx, nil) {
		if err != nil {
			t.Fatal(err)
		}
		final = append(final, e)
	}
	n := 0
	committed.Range(func(any, any) bool { n++; return true })
	if len(final) != n {
		t.Errorf("the log holds %d events, want the %d committed ones", len(final), n)
	}
	gap := false
	for i, e := range final {
		if e.Position != uint64(i+1) && !gap {
			t.Errorf("log position %d at index %d: want 1…%d without gaps", e.Position, i, len(final))
			gap = true
		}
		if _, ok := committed.Load(e.ID); !ok {
			t.Errorf("position %d holds event %v, which no committed append wrote", e.Position, e.ID)
		}
	}

	deadline := time.Now().Add(20 * time.Second)
	for _, c := range subs {
		var want []annals.RecordedEvent
		for _, e := range final {
			if c.match(e) {
				want = append(want, e)
			}
		}
		_, err := c.waitFor(len(want), time.Until(deadline))
		c.stop()
		if err != nil {
			t.Errorf("%s: %v", c.name, err)
		}
		got, _ := c.waitFor(0, 0) // everything delivered until the stop
		if len(got) != len(want) {
			t.Errorf("%s: delivered %d events, want %d", c.name, len(got), len(want))
		}
		for i := range min(len(got), len(want)) {
			if got[i].ID != want[i].ID || got[i].Position != want[i].Position {
				t.Errorf("%s: event %d is %v at position %d, want %v at position %d (a gap, a duplicate or out of order)",
					c.name, i, got[i].ID, got[i].Position, want[i].ID, want[i].Position)
				break
			}
		}
	}
}
