package process_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"iter"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/annalsdb/annals"
	"github.com/annalsdb/annals/internal/teststores"
	"github.com/annalsdb/annals/internal/testwait"
	"github.com/annalsdb/annals/memstore"
	"github.com/annalsdb/annals/process"
	"github.com/annalsdb/annals/supervisor"
)

// countingStore counts the events that reads and subscriptions return: those of one
// category (the journals), and the others.
type countingStore struct {
	annals.Store
	category    string
	read, other atomic.Int64
}

func (s *countingStore) count(seq iter.Seq2[annals.RecordedEvent, error]) iter.Seq2[annals.RecordedEvent, error] {
	return func(yield func(annals.RecordedEvent, error) bool) {
		for ev, err := range seq {
			switch {
			case err != nil:
			case annals.Category(ev.Stream) == s.category:
				s.read.Add(1)
			default:
				s.other.Add(1)
			}
			if !yield(ev, err) {
				return
			}
		}
	}
}

func (s *countingStore) ReadAll(ctx context.Context, opts *annals.ReadOptions) iter.Seq2[annals.RecordedEvent, error] {
	return s.count(s.Store.ReadAll(ctx, opts))
}

func (s *countingStore) SubscribeAll(ctx context.Context, opts *annals.SubscribeOptions) iter.Seq2[annals.RecordedEvent, error] {
	return s.count(s.Store.SubscribeAll(ctx, opts))
}

func (s *countingStore) ReadStream(ctx context.Context, stream string, opts *annals.ReadOptions) iter.Seq2[annals.RecordedEvent, error] {
	return s.count(s.Store.ReadStream(ctx, stream, opts))
}

// journalSteps returns how many events the manager's journals hold.
func journalSteps(t *testing.T, s annals.Store) int {
	t.Helper()
	n := 0
	for _, err := range s.ReadAll(context.Background(), &annals.ReadOptions{Filter: &annals.Filter{Categories: []string{"orderflow"}}}) {
		if err != nil {
			t.Fatal(err)
		}
		n++
	}
	return n
}

// TestRestartReadsFromCheckpoint: a runner that checkpoints every 10 inputs handles 64 orders
// (128 journal steps); a runner started after it reads fewer journal events than a
// checkpoint's worth, not the whole journal, and still knows every pending deadline: when the
// clock moves an hour on, each order is cancelled, once.
func TestRestartReadsFromCheckpoint(t *testing.T) {
	teststores.Each(t, func(t *testing.T, s annals.Store) {
		const orders, every = 64, 10
		h := &handlers{store: s, seen: map[string]bool{}}
		clock := newFakeClock(time.Now().Add(time.Minute))
		opts := &process.RunnerOptions{Clock: clock, CheckpointEvery: every}
		r, err := process.NewRunner(s, orderManager(time.Hour), h.send, opts)
		if err != nil {
			t.Fatal(err)
		}
		stop := start(t, r)
		for i := range orders {
			append1(t, s, fmt.Sprintf("order-%d", i), "Placed", fmt.Sprintf(`{"SKU":"sku%d"}`, i))
		}
		testwait.Until(t, "every payment deadline", func() bool { return len(r.Status().Pending) == orders })
		testwait.Until(t, "the runner to catch up", func() bool { return r.Status().Position >= lastPosition(t, s) })
		if err := stop(); !errors.Is(err, context.Canceled) {
			t.Fatalf("Run: %v", err)
		}
		steps := journalSteps(t, s)
		if steps != 2*orders {
			t.Fatalf("journals: %d steps, want %d", steps, 2*orders)
		}
		meta, _, err := s.GetMetadata(context.Background(), process.CheckpointStreamPrefix+"orderflow")
		if err != nil || meta.MaxCount != 1 {
			t.Errorf("checkpoint stream metadata: %+v, %v; want maxCount 1", meta, err)
		}

		counting := &countingStore{Store: s, category: "orderflow"}
		r2, err := process.NewRunner(counting, orderManager(time.Hour), h.send, opts)
		if err != nil {
			t.Fatal(err)
		}
		start(t, r2)
		testwait.Until(t, "the restarted runner to catch up", func() bool {
			return r2.Status().Position >= lastPosition(t, s) && len(r2.Status().Pending) == orders
		})
		read, other := counting.read.Load(), counting.other.Load()
		t.Logf("a restart read %d of the %d journal events, and %d other events", read, steps, other)
		if read >= every {
			t.Errorf("a restart read %d journal events, want fewer than %d (the journals hold %d)", read, every, steps)
		}
		if other >= 2*every {
			t.Errorf("a restart read %d events of the log, want fewer than %d", other, 2*every)
		}
		clock.Advance(time.Hour)
		testwait.Until(t, "every order cancelled", func() bool { return len(r2.Status().Pending) == 0 })
		for i := range orders {
			if got := types(t, s, fmt.Sprintf("order-%d", i)); !slices.Equal(got, []string{"Placed", "Cancelled"}) {
				t.Errorf("order-%d: %q, want Placed, Cancelled", i, got)
			}
		}
	})
}

// TestCheckpointsOfTwoRunners runs two runners of one manager that both work (no lease) and
// checkpoint every few inputs, while orders are placed (some refused): each command takes effect once, and a third
// runner started afterwards resumes from their checkpoint with every deadline pending, sends
// nothing again, and fires each deadline once.
func TestCheckpointsOfTwoRunners(t *testing.T) {
	teststores.Each(t, func(t *testing.T, s annals.Store) {
		o := &onceHandlers{h: &handlers{store: s, seen: map[string]bool{}}, applied: map[string]int{}}
		clock := newFakeClock(time.Now().Add(time.Minute))
		opts := &process.RunnerOptions{Clock: clock, CheckpointEvery: 3, Supervision: supervisor.Policy{NoLease: true}}
		const orders = 30
		var stops []func() error
		var runners []*process.Runner[orderState]
		for range 2 {
			r, err := process.NewRunner(s, orderManager(time.Hour), o.send, opts)
			if err != nil {
				t.Fatal(err)
			}
			runners = append(runners, r)
			stops = append(stops, start(t, r))
		}
		reserved := 0
		for i := range orders {
			sku := fmt.Sprintf("sku%d", i)
			if i%5 == 0 {
				sku = "none"
			} else {
				reserved++
			}
			append1(t, s, fmt.Sprintf("order-%d", i), "Placed", fmt.Sprintf(`{"SKU":%q}`, sku))
		}
		for _, r := range runners {
			testwait.Until(t, "the runners to catch up", func() bool {
				return r.Status().Position >= lastPosition(t, s) && len(r.Status().Pending) == reserved
			})
		}
		for i, stop := range stops {
			if err := stop(); !errors.Is(err, context.Canceled) {
				t.Fatalf("runner %d: Run: %v", i, err)
			}
		}
		o.mu.Lock()
		sent := o.sent
		o.mu.Unlock()

		r3, err := process.NewRunner(s, orderManager(time.Hour), o.send, opts)
		if err != nil {
			t.Fatal(err)
		}
		start(t, r3)
		testwait.Until(t, "the third runner to catch up", func() bool {
			return r3.Status().Position >= lastPosition(t, s) && len(r3.Status().Pending) == reserved
		})
		o.mu.Lock()
		if o.sent != sent {
			t.Errorf("the third runner sent %d commands again", o.sent-sent)
		}
		o.mu.Unlock()
		clock.Advance(time.Hour)
		testwait.Until(t, "every deadline fired", func() bool { return len(r3.Status().Pending) == 0 })
		for i := range orders {
			want := []string{"Placed", "Cancelled"}
			if i%5 == 0 {
				want = []string{"Placed", "Rejected"}
			}
			if got := types(t, s, fmt.Sprintf("order-%d", i)); !slices.Equal(got, want) {
				t.Errorf("order-%d: %q, want %q", i, got, want)
			}
		}
		o.mu.Lock()
		defer o.mu.Unlock()
		for key, n := range o.applied {
			if n != 1 {
				t.Errorf("command %s applied %d times", key, n)
			}
		}
	})
}

// TestCheckpointOverLimit runs a runner on a store whose events may hold no more than a few
// pending deadlines: the checkpoints that would be larger are not written, the runner goes on,
// and a restart still finds every deadline (from the last checkpoint that fitted, and the
// journals after it).
func TestCheckpointOverLimit(t *testing.T) {
	s := memstore.New(&memstore.Options{Limits: annals.Limits{MaxEventSize: 1500}})
	defer s.Close()
	const orders = 12
	h := &handlers{store: s, seen: map[string]bool{}}
	clock := newFakeClock(time.Now().Add(time.Minute))
	opts := &process.RunnerOptions{Clock: clock, CheckpointEvery: 4}
	r, err := process.NewRunner(s, orderManager(time.Hour), h.send, opts)
	if err != nil {
		t.Fatal(err)
	}
	stop := start(t, r)
	for i := range orders {
		append1(t, s, fmt.Sprintf("order-%d", i), "Placed", fmt.Sprintf(`{"SKU":"sku%d"}`, i))
	}
	testwait.Until(t, "every payment deadline", func() bool { return len(r.Status().Pending) == orders })
	testwait.Until(t, "the runner to catch up", func() bool { return r.Status().Position >= lastPosition(t, s) })
	if err := stop(); !errors.Is(err, context.Canceled) {
		t.Fatalf("Run: %v, want context.Canceled (a checkpoint too large is skipped)", err)
	}
	cp := readOne(t, s, process.CheckpointStreamPrefix+"orderflow")
	if n := strings.Count(string(cp.Data), `"instance"`); n == 0 || n >= orders {
		t.Fatalf("last checkpoint %s: %d pending deadlines, want some but fewer than %d", cp.Data, n, orders)
	}

	r2, err := process.NewRunner(s, orderManager(time.Hour), h.send, opts)
	if err != nil {
		t.Fatal(err)
	}
	start(t, r2)
	testwait.Until(t, "every deadline after the restart", func() bool { return len(r2.Status().Pending) == orders })
	clock.Advance(time.Hour)
	testwait.Until(t, "every deadline fired", func() bool { return len(r2.Status().Pending) == 0 })
	for i := range orders {
		if got := types(t, s, fmt.Sprintf("order-%d", i)); !slices.Equal(got, []string{"Placed", "Cancelled"}) {
			t.Errorf("order-%d: %q, want Placed, Cancelled", i, got)
		}
	}
}

// racingCheckpoint writes, just before the first checkpoint a runner appends, the checkpoint of
// another runner of the manager (NoLease: both work) that folded fewer journal events but
// handled the log further (events no instance takes), so that the runner's append finds the
// stream moved.
type racingCheckpoint struct {
	annals.Store
	position uint64 // of the other runner's checkpoint
	raced    atomic.Bool
}

func (s *racingCheckpoint) Append(ctx context.Context, stream string, expected annals.ExpectedRevision, events ...annals.Event) (annals.AppendResult, error) {
	if strings.HasPrefix(stream, process.CheckpointStreamPrefix) && s.raced.CompareAndSwap(false, true) {
		other := annals.Event{Type: process.CheckpointEventType, Data: fmt.Appendf(nil, `{"journal":1,"position":%d}`, s.position)}
		if _, err := s.Store.Append(ctx, stream, annals.Any, other); err != nil {
			return annals.AppendResult{}, err
		}
	}
	return s.Store.Append(ctx, stream, expected, events...)
}

// checkpointAt returns the journal and log positions the manager's latest checkpoint records.
func checkpointAt(t *testing.T, s annals.Store) (journal, position uint64) {
	t.Helper()
	for ev, err := range s.ReadStream(context.Background(), process.CheckpointStreamPrefix+"orderflow", &annals.ReadOptions{Backwards: true, From: annals.End, Limit: 1}) {
		if errors.Is(err, annals.ErrStreamNotFound) {
			return 0, 0
		}
		if err != nil {
			t.Fatal(err)
		}
		var d struct{ Journal, Position uint64 }
		if err := json.Unmarshal(ev.Data, &d); err != nil {
			t.Fatal(err)
		}
		return d.Journal, d.Position
	}
	return 0, 0
}

// TestCheckpointNeverMovesBackwards: a runner whose checkpoint append finds another runner's
// checkpoint with fewer journal events folded but a later log position writes its own with the
// later of the two positions: the manager's checkpoint never moves back in the log.
func TestCheckpointNeverMovesBackwards(t *testing.T) {
	mem := memstore.New(nil)
	t.Cleanup(func() { mem.Close() })
	const further = 1 << 20
	s := &racingCheckpoint{Store: mem, position: further}
	h := &handlers{store: mem, seen: map[string]bool{}}
	r, err := process.NewRunner(s, orderManager(time.Hour), h.send, &process.RunnerOptions{Supervision: supervisor.Policy{NoLease: true}})
	if err != nil {
		t.Fatal(err)
	}
	start(t, r)
	append1(t, mem, "order-0", "Placed", `{"SKU":"sku0"}`)
	testwait.Until(t, "the runner's own checkpoint", func() bool {
		journal, _ := checkpointAt(t, mem)
		return journal > 1
	})
	if _, position := checkpointAt(t, mem); position < further {
		t.Fatalf("checkpoint at log position %d after one at %d: it moved backwards", position, uint64(further))
	}
}

// TestTakeoverCheckpointsWhatItRecovered: a runner that takes over from one that died after
// journaling inputs but before checkpointing them (here: one with checkpoints off) recovers
// them from the journals and checkpoints them once idle, so that a runner standing by sees
// in the checkpoint how far the manager is (WaitFor returns) without waiting for new input.
func TestTakeoverCheckpointsWhatItRecovered(t *testing.T) {
	s := memstore.New(nil)
	defer s.Close()
	h := &handlers{store: s, seen: map[string]bool{}}
	first, err := process.NewRunner(s, orderManager(time.Hour), h.send, &process.RunnerOptions{CheckpointEvery: -1})
	if err != nil {
		t.Fatal(err)
	}
	stop := start(t, first)
	for i := range 5 {
		append1(t, s, fmt.Sprintf("order-%d", i), "Placed", fmt.Sprintf(`{"SKU":"sku%d"}`, i))
	}
	testwait.Until(t, "every order reserved and handled", func() bool {
		return len(first.Status().Pending) == 5 && first.Status().Position >= lastPosition(t, s)
	})
	if err := stop(); !errors.Is(err, context.Canceled) {
		t.Fatalf("Run: %v", err)
	}
	head := lastPosition(t, s)

	second, err := process.NewRunner(s, orderManager(time.Hour), h.send, nil)
	if err != nil {
		t.Fatal(err)
	}
	start(t, second)
	standby, err := process.NewRunner(s, orderManager(time.Hour), h.send, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := standby.WaitFor(testwait.Context(t), head); err != nil {
		t.Fatalf("WaitFor(%d) on a runner that does not work: %v (the checkpoint does not show what the working runner recovered)", head, err)
	}
}
