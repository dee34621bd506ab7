package groupstest

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"

	"github.com/annalsdb/annals"
	"github.com/annalsdb/annals/groups"
	"github.com/annalsdb/annals/internal/testwait"
)

// collector runs consumers that ack what they receive, and records who got what.
type collector struct {
	mu   sync.Mutex
	got  map[annals.UUID][]int // event id → the consumers it was delivered to
	seqs map[int][]annals.RecordedEvent
	wg   sync.WaitGroup
}

func newCollector() *collector {
	return &collector{got: map[annals.UUID][]int{}, seqs: map[int][]annals.RecordedEvent{}}
}

// run starts consumer i, acking every message, until ctx ends or the consumer does.
func (col *collector) run(ctx context.Context, t *testing.T, i int, c groups.Consumer) {
	col.wg.Add(1)
	go func() {
		defer col.wg.Done()
		for {
			m, err := c.Receive(ctx)
			if err != nil {
				return
			}
			col.mu.Lock()
			col.got[m.Event.ID] = append(col.got[m.Event.ID], i)
			col.seqs[i] = append(col.seqs[i], m.Event)
			col.mu.Unlock()
			if err := c.Ack(ctx, m.Event.ID); err != nil && !errors.Is(err, groups.ErrConsumerClosed) && ctx.Err() == nil {
				t.Errorf("consumer %d: Ack: %v", i, err)
				return
			}
		}
	}()
}

func (col *collector) count() int {
	col.mu.Lock()
	defer col.mu.Unlock()
	return len(col.got)
}

// waitAll waits until every id was delivered.
func (col *collector) waitAll(t *testing.T, ids []annals.UUID) {
	t.Helper()
	testwait.UntilNil(t, "every event delivered", func() error {
		col.mu.Lock()
		defer col.mu.Unlock()
		for _, id := range ids {
			if len(col.got[id]) == 0 {
				return fmt.Errorf("%d of %d delivered; %s not yet", len(col.got), len(ids), id)
			}
		}
		return nil
	})
}

func testDeliverOnce(t *testing.T, env *Env) {
	svc := env.Service
	stream := uniq("once-")
	name := uniq("g")
	create(t, svc, name, fast(stream))
	ctx, cancel := context.WithCancel(context.Background())
	col := newCollector()
	defer func() { cancel(); col.wg.Wait() }()
	for i := range 3 {
		col.run(ctx, t, i, join(t, svc, name, &groups.JoinOptions{Window: 5}))
	}
	ids := appendN(t, env, stream, "Once", 300)
	col.waitAll(t, ids)
	waitSettled(t, svc, name, uint64(len(ids)))
	col.mu.Lock()
	defer col.mu.Unlock()
	for _, id := range ids {
		if n := len(col.got[id]); n != 1 {
			t.Errorf("event %s delivered %d times, want once", id, n)
		}
	}
	if len(col.got) != len(ids) {
		t.Errorf("%d events delivered, want %d", len(col.got), len(ids))
	}
	if i := info(t, svc, name); i.Retries != 0 || i.Delivered != uint64(len(ids)) {
		t.Errorf("Info: retries %d, delivered %d; want 0 and %d", i.Retries, i.Delivered, len(ids))
	}
}

func testRoundRobin(t *testing.T, env *Env) {
	svc := env.Service
	stream := uniq("rr-")
	name := uniq("g")
	create(t, svc, name, fast(stream))
	c1 := join(t, svc, name, &groups.JoinOptions{Window: 1})
	c2 := join(t, svc, name, &groups.JoinOptions{Window: 1})
	ids := appendN(t, env, stream, "RR", 4)
	// Each holds one event; neither gets a second before it acks.
	m1, m2 := receive(t, c1), receive(t, c2)
	if m1.Event.ID == m2.Event.ID {
		t.Fatalf("both consumers got %s", m1.Event.ID)
	}
	first := map[annals.UUID]bool{m1.Event.ID: true, m2.Event.ID: true}
	if !first[ids[0]] || !first[ids[1]] {
		t.Fatalf("got %s and %s, want the first two events", m1.Event.ID, m2.Event.ID)
	}
	ack(t, c1, m1.Event.ID)
	ack(t, c2, m2.Event.ID)
	n1, n2 := receive(t, c1), receive(t, c2)
	if n1.Event.ID == n2.Event.ID || n1.Event.ID == m1.Event.ID || n2.Event.ID == m2.Event.ID {
		t.Fatalf("second round: %s and %s", n1.Event.ID, n2.Event.ID)
	}
	ack(t, c1, n1.Event.ID)
	ack(t, c2, n2.Event.ID)
	i := info(t, svc, name)
	if len(i.Consumers) != 2 {
		t.Fatalf("Info lists %d consumers, want 2", len(i.Consumers))
	}
	for _, c := range i.Consumers {
		if c.Delivered != 2 || c.Acked != 2 || c.Window != 1 {
			t.Errorf("consumer %s: delivered %d acked %d window %d, want 2, 2, 1", c.ID, c.Delivered, c.Acked, c.Window)
		}
	}
}

// checkPinned checks that each stream's events went to one consumer, in revision order.
func checkPinned(t *testing.T, col *collector) {
	t.Helper()
	col.mu.Lock()
	defer col.mu.Unlock()
	owner := map[string]int{}
	last := map[string]uint64{}
	for i, evs := range col.seqs {
		for _, e := range evs {
			if o, ok := owner[e.Stream]; ok && o != i {
				t.Errorf("stream %s went to consumers %d and %d", e.Stream, o, i)
			}
			owner[e.Stream] = i
			if r, ok := last[e.Stream]; ok && e.Revision <= r {
				t.Errorf("stream %s: revision %d after %d", e.Stream, e.Revision, r)
			}
			last[e.Stream] = e.Revision
		}
	}
}

func testPinnedByStream(t *testing.T, env *Env) {
	svc := env.Service
	prefix := uniq("pin") + "-"
	name := uniq("g")
	s := fast(annals.AllStream)
	s.Filter = &annals.Filter{StreamPrefixes: []string{prefix}}
	s.Strategy = groups.PinnedByStream
	create(t, svc, name, s)
	ctx, cancel := context.WithCancel(context.Background())
	col := newCollector()
	defer func() { cancel(); col.wg.Wait() }()
	for i := range 3 {
		col.run(ctx, t, i, join(t, svc, name, &groups.JoinOptions{Window: 2}))
	}
	var ids []annals.UUID
	for round := range 10 {
		for k := range 8 {
			ids = append(ids, appendN(t, env, fmt.Sprintf("%s%d", prefix, k), fmt.Sprint("R", round), 1)...)
		}
	}
	col.waitAll(t, ids)
	checkPinned(t, col)
	col.mu.Lock()
	spread := len(col.seqs)
	col.mu.Unlock()
	if spread < 2 {
		t.Errorf("8 streams went to %d of 3 consumers, want them spread", spread)
	}
}

func testPinnedRebalance(t *testing.T, env *Env) {
	svc := env.Service
	prefix := uniq("reb") + "-"
	name := uniq("g")
	s := fast(annals.AllStream)
	s.Filter = &annals.Filter{StreamPrefixes: []string{prefix}}
	s.Strategy = groups.PinnedByStream
	create(t, svc, name, s)
	ctx, cancel := context.WithCancel(context.Background())
	col := newCollector()
	defer func() { cancel(); col.wg.Wait() }()
	cs := make([]groups.Consumer, 3)
	for i := range cs {
		cs[i] = join(t, svc, name, nil)
		col.run(ctx, t, i, cs[i])
	}
	var ids []annals.UUID
	for k := range 12 {
		ids = append(ids, appendN(t, env, fmt.Sprintf("%s%d", prefix, k), "Before", 3)...)
	}
	col.waitAll(t, ids)
	waitSettled(t, svc, name, uint64(len(ids)))
	col.mu.Lock()
	owner := map[string]int{}
	for i, evs := range col.seqs {
		for _, e := range evs {
			owner[e.Stream] = i
		}
	}
	col.mu.Unlock()
	// The consumer with the most streams leaves; its streams move, the others stay.
	counts := map[int]int{}
	for _, o := range owner {
		counts[o]++
	}
	leaving := 0
	for i, n := range counts {
		if n > counts[leaving] {
			leaving = i
		}
	}
	if err := cs[leaving].Close(); err != nil {
		t.Fatal(err)
	}
	var after []annals.UUID
	for k := range 12 {
		after = append(after, appendN(t, env, fmt.Sprintf("%s%d", prefix, k), "After", 2)...)
	}
	col.waitAll(t, after)
	col.mu.Lock()
	defer col.mu.Unlock()
	for _, id := range after {
		if got := col.got[id]; len(got) != 1 || got[0] == leaving {
			t.Fatalf("event %s after the leave went to %v (consumer %d left)", id, got, leaving)
		}
	}
	for i, evs := range col.seqs {
		for _, e := range evs {
			if e.Type == "After" && owner[e.Stream] != leaving && owner[e.Stream] != i {
				t.Errorf("stream %s moved from consumer %d to %d though its consumer stayed", e.Stream, owner[e.Stream], i)
			}
		}
	}
}

func testPinnedByKey(t *testing.T, env *Env) {
	svc := env.Service
	stream := uniq("key-")
	name := uniq("g")
	s := fast(stream)
	s.Strategy = groups.PinnedByKey
	s.PinKey = "tenant"
	create(t, svc, name, s)
	ctx, cancel := context.WithCancel(context.Background())
	col := newCollector()
	defer func() { cancel(); col.wg.Wait() }()
	for i := range 3 {
		col.run(ctx, t, i, join(t, svc, name, &groups.JoinOptions{Window: 1}))
	}
	var ids []annals.UUID
	for n := range 60 {
		id := annals.NewUUID()
		ids = append(ids, id)
		meta := fmt.Appendf(nil, `{"tenant":"t%d","n":%d}`, n%5, n)
		if _, err := env.Store.Append(context.Background(), stream, annals.Any, annals.Event{ID: id, Type: "K", Data: []byte(`{}`), Metadata: meta}); err != nil {
			t.Fatal(err)
		}
	}
	col.waitAll(t, ids)
	col.mu.Lock()
	defer col.mu.Unlock()
	owner := map[string]int{}
	for i, evs := range col.seqs {
		var last uint64
		for j, e := range evs {
			tenant := fmt.Sprintf("t%d", e.Revision%5)
			if o, ok := owner[tenant]; ok && o != i {
				t.Errorf("key %s went to consumers %d and %d", tenant, o, i)
			}
			owner[tenant] = i
			if j > 0 && e.Revision <= last {
				t.Errorf("consumer %d: revision %d after %d", i, e.Revision, last)
			}
			last = e.Revision
		}
	}
}
