// Package fencetest is the fencing test of the projection runner, run on every kind of
// projection store by the tests of the package that provides it: a runner whose lease was
// taken over cannot commit, shown by pausing it past its lease and resuming it.
//
// # The pause
//
// Runner A works under the lease. On the batch that holds the trigger event it stops: in its
// handler (where the handler runs outside the store's fence: tables, Checkpoints) or just
// before its Update reaches the store (where the handler runs inside the fence, which would
// keep any other holder out while it waits: Memory, pgstore). From then on every renewal of
// its lease blocks in the keeper (as a stopped process would), so that its supervisor never
// reaches its own deadline: A's context is never cancelled, and when A resumes, only the
// store's fence can refuse its commit. The test checks that A's context is still alive when
// it resumes.
//
// Runner B starts once A is paused, takes the lease when it runs out, and is held at its own
// gate: after its claim (the empty Update a runner writes when it takes the lease) or at the
// claim itself. Either way B has moved no checkpoint, so the compare-and-set of checkpoints
// lets A's batch through: the fence is the only thing that can refuse it. Then A resumes; its
// commit must be refused with an error matching lease.ErrLost, the stored checkpoint must not
// have moved, A's work must end with that error, and its supervisor must stand by. Then B
// goes on, and the read model must equal one clean pass, written by A up to the checkpoint it
// had and by B after it, with a stored checkpoint that never moved backwards.
package fencetest

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/annalsdb/annals"
	"github.com/annalsdb/annals/internal/testwait"
	"github.com/annalsdb/annals/lease"
	"github.com/annalsdb/annals/projection"
	"github.com/annalsdb/annals/supervisor"
)

// Name is the projection's name.
const Name = "fence"

// Replica is what one replica of the service runs its runner on.
type Replica[Tx any] struct {
	Events annals.ReadSubscriber
	Target projection.Store[Tx]
	// Keeper is the keeper the runner takes its lease from: the one Target (or, for
	// Checkpoints, the event store the checkpoints are appended to) checks.
	Keeper lease.Keeper
}

// Kind is a kind of projection store.
type Kind[Tx any] struct {
	// Log is where the test appends events and (Checkpoints) reads the checkpoints written.
	Log annals.Store
	// Replica returns the stores of replica i (1: A, 2: B).
	Replica func(i int) Replica[Tx]
	// Record writes into the read model, through tx, that replica applied ev.
	Record func(ctx context.Context, tx Tx, replica int, ev annals.RecordedEvent) error
	// Applied returns what the read model holds: by position, the replicas whose application
	// of the event it keeps, in order.
	Applied func(t *testing.T) map[uint64][]int
	// PauseInHandler pauses A in its handler; otherwise just before its Update reaches the
	// store.
	PauseInHandler bool
	// AtLeastOnce is set for Checkpoints: handlers' writes are not in the store's transaction,
	// so an event may be applied more than once; instead of the read model, the checkpoints
	// written are checked (see [Run]).
	AtLeastOnce bool
}

// Variants of B's gate.
const (
	// AfterClaim holds B at its first batch, after the claim it writes when it takes the
	// lease: for Checkpoints, the checkpoint then carries B's token.
	AfterClaim = "after-claim"
	// BeforeClaim holds B at its claim: it holds the lease and has written nothing yet.
	BeforeClaim = "before-claim"
)

const (
	events  = 40
	trigger = 18 // the event (1-based) A pauses at: in the fourth batch of five
	batch   = 5
	ttl     = time.Second // long enough for a loaded machine not to lose leases it renews
)

// Run runs the test, one subtest per variant, each on a fresh Kind from open.
func Run[Tx any](t *testing.T, open func(t *testing.T) Kind[Tx]) {
	for _, v := range []string{AfterClaim, BeforeClaim} {
		RunVariant(t, v, open)
	}
}

// RunVariant runs the test in one variant ([AfterClaim] or [BeforeClaim]), as a subtest, on
// a fresh Kind from open. (A store whose Update holds a lock that B's claim needs while A is
// paused in it cannot run AfterClaim with PauseInHandler: B would wait for A.)
func RunVariant[Tx any](t *testing.T, variant string, open func(t *testing.T) Kind[Tx]) {
	t.Run(variant, func(t *testing.T) { run(t, open(t), variant) })
}

// gate holds the first call that matches, until released.
type gate struct {
	mu       sync.Mutex
	fired    bool
	reached  chan context.Context // the held call's context
	release  chan struct{}
	released atomic.Bool
	once     sync.Once
}

func newGate() *gate {
	return &gate{reached: make(chan context.Context, 1), release: make(chan struct{})}
}

// hold holds the call when it is the first for which match is true.
func (g *gate) hold(ctx context.Context, match bool) {
	if !match {
		return
	}
	g.mu.Lock()
	first := !g.fired
	g.fired = true
	g.mu.Unlock()
	if first {
		g.reached <- ctx
		<-g.release
	}
}

func (g *gate) open() {
	g.once.Do(func() {
		g.released.Store(true)
		close(g.release)
	})
}

// pausingKeeper is a keeper whose renewals block while paused (a stopped process renews
// nothing), until released.
type pausingKeeper struct {
	lease.Keeper
	paused  atomic.Bool
	blocked chan struct{} // a renewal blocked
	resume  chan struct{}
	once    sync.Once
}

func (k *pausingKeeper) Renew(ctx context.Context, l lease.Lease) (lease.Lease, error) {
	if k.paused.Load() {
		select {
		case k.blocked <- struct{}{}:
		default:
		}
		<-k.resume // ignoring ctx, as a stopped process would
	}
	return k.Keeper.Renew(ctx, l)
}

func (k *pausingKeeper) unpause() { k.once.Do(func() { close(k.resume) }) }

// verdict is the store's answer to an Update of A after it resumed.
type verdict struct {
	from, to uint64
	err      error
}

// gatedStore holds Updates at a gate (when match says so) and records the store's answers
// after resume is set.
type gatedStore[Tx any] struct {
	projection.Store[Tx]
	gate     *gate
	match    func(from, to uint64) bool
	resumed  *atomic.Bool
	verdicts chan verdict
}

func (s *gatedStore[Tx]) Update(ctx context.Context, name string, gen uint64, from, to uint64, fn func(Tx) error) error {
	if s.gate != nil {
		s.gate.hold(ctx, s.match(from, to))
	}
	err := s.Store.Update(ctx, name, gen, from, to, fn)
	if s.resumed != nil && s.resumed.Load() {
		select {
		case s.verdicts <- verdict{from, to, err}:
		default:
		}
	}
	return err
}

// statuses records a supervisor's changes.
type statuses struct {
	mu  sync.Mutex
	all []supervisor.Status
}

func (s *statuses) add(st supervisor.Status) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.all = append(s.all, st)
}

func (s *statuses) find(match func(supervisor.Status) bool) (supervisor.Status, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, st := range s.all {
		if match(st) {
			return st, true
		}
	}
	return supervisor.Status{}, false
}

func run[Tx any](t *testing.T, k Kind[Tx], variant string) {
	ctx := testwait.Context(t)
	var pos []uint64 // positions of the events, in order
	for i := range events {
		res, err := k.Log.Append(ctx, fmt.Sprintf("acct-%d", i%3), annals.Any, annals.Event{Type: "Deposited", Data: []byte(`{}`)})
		if err != nil {
			t.Fatal(err)
		}
		pos = append(pos, res.Position)
	}
	head, at := pos[len(pos)-1], pos[trigger-1]

	// A: paused on the batch holding the event at, its renewals blocked from then on.
	a := k.Replica(1)
	keeperA := &pausingKeeper{Keeper: a.Keeper, blocked: make(chan struct{}, 1), resume: make(chan struct{})}
	pauseA := newGate()
	var resumed atomic.Bool
	targetA := &gatedStore[Tx]{Store: a.Target, resumed: &resumed, verdicts: make(chan verdict, 100)}
	if !k.PauseInHandler {
		targetA.gate, targetA.match = pauseA, func(from, to uint64) bool { return from < at && at <= to }
	}
	handle := func(replica int) func(context.Context, Tx, annals.RecordedEvent) error {
		return func(ctx context.Context, tx Tx, ev annals.RecordedEvent) error {
			if replica == 1 && k.PauseInHandler {
				pauseA.hold(ctx, ev.Position == at)
			}
			return k.Record(ctx, tx, replica, ev)
		}
	}
	filter := &annals.Filter{Categories: []string{"acct"}}
	var stA statuses
	runnerA, err := projection.NewRunner(a.Events, projection.Store[Tx](targetA), projection.Projection[Tx]{Name: Name, Filter: filter, Handle: handle(1)},
		&projection.RunnerOptions{MaxBatch: batch, Supervision: supervisor.Policy{Keeper: keeperA, Holder: "replica-A", TTL: ttl, OnChange: stA.add}})
	if err != nil {
		t.Fatal(err)
	}
	sampler := watchCheckpoint(t, a.Target)
	stopA := start(t, runnerA)
	t.Cleanup(func() { pauseA.open(); keeperA.unpause() })

	ctxA := testwait.Recv(t, "A to reach the trigger event", pauseA.reached)
	keeperA.paused.Store(true)
	before, err := a.Target.Checkpoint(ctx, Name, 0)
	if err != nil {
		t.Fatal(err)
	}
	if before >= at || before < pos[trigger-batch-1] || !slices.Contains(pos, before) {
		t.Fatalf("A paused on event %d with the checkpoint at %d, want the position of one of the %d events before it", at, before, batch)
	}
	testwait.Recv(t, "A's renewal to block", keeperA.blocked)

	// B: takes the lease once A's runs out, and waits at its gate.
	b := k.Replica(2)
	gateB := newGate()
	match := func(from, to uint64) bool { return from != to } // a batch
	if variant == BeforeClaim {
		match = func(from, to uint64) bool { return true } // the claim
	}
	targetB := &gatedStore[Tx]{Store: b.Target, gate: gateB, match: match}
	var stB statuses
	runnerB, err := projection.NewRunner(b.Events, projection.Store[Tx](targetB), projection.Projection[Tx]{Name: Name, Filter: filter, Handle: handle(2)},
		&projection.RunnerOptions{MaxBatch: batch, Supervision: supervisor.Policy{Keeper: b.Keeper, Holder: "replica-B", TTL: ttl, OnChange: stB.add}})
	if err != nil {
		t.Fatal(err)
	}
	stopB := start(t, runnerB)
	t.Cleanup(gateB.open)
	testwait.Recv(t, "B to take the lease and reach its gate", gateB.reached)
	ls, err := b.Keeper.Leases(ctx, projection.LeasePrefix+Name)
	if err != nil || len(ls) != 1 || ls[0].Holder != "replica-B" {
		t.Fatalf("B at its gate: leases %+v (%v), want one held by replica-B", ls, err)
	}
	tokenB := ls[0].Token

	// A resumes, its context alive: the store's fence alone must refuse its commit.
	if err := ctxA.Err(); err != nil {
		t.Fatalf("A's context ended while it was paused (%v): the test would not show the store's fence", err)
	}
	resumed.Store(true)
	pauseA.open()
	var refusal error
	for refusal == nil {
		v := testwait.Recv(t, "the store's answer to A's commit", targetA.verdicts)
		switch {
		case v.err == nil && v.from != v.to:
			t.Fatalf("A, paused past its lease and taken over by B, committed its batch %d..%d", v.from, v.to)
		case errors.Is(v.err, lease.ErrLost):
			refusal = v.err
		case v.err == nil, errors.Is(v.err, projection.ErrCheckpointMoved) && k.AtLeastOnce:
			// A claim, or (Checkpoints) the append of a checkpoint B wrote since A read it:
			// the runner tries again, and the fence must refuse that.
		default:
			t.Fatalf("A's commit: %v, want an error matching lease.ErrLost", v.err)
		}
	}
	t.Logf("A's commit refused: %v", refusal)
	if err := ctxA.Err(); err != nil {
		t.Fatalf("A's context ended (%v) before the store refused it", err)
	}
	if cp, err := a.Target.Checkpoint(ctx, Name, 0); err != nil || cp != before {
		t.Fatalf("after A's refusal the checkpoint is %d (%v), want %d: A's batch moved it", cp, err, before)
	}
	// A's work ends with the store's refusal, before its renewals resume.
	testwait.UntilNil(t, "A's work to end with lease.ErrLost", func() error {
		st, err := runnerA.Status(ctx)
		if err != nil {
			return err
		}
		if !errors.Is(st.LastError, lease.ErrLost) {
			return fmt.Errorf("last error %v, state %v", st.LastError, st.State)
		}
		return nil
	})
	keeperA.unpause()
	testwait.UntilNil(t, "A's supervisor to stand by after the refusal", func() error {
		if _, ok := stA.find(func(st supervisor.Status) bool {
			return st.State == supervisor.StandingBy && errors.Is(st.Err, lease.ErrLost)
		}); !ok {
			return errors.New("not yet")
		}
		return nil
	})

	// B goes on to the head; A stands by behind it.
	gateB.open()
	if err := runnerB.WaitFor(ctx, head); err != nil {
		t.Fatal(err)
	}
	testwait.UntilNil(t, "A to stand by behind B", func() error {
		st, err := runnerA.Status(ctx)
		if err != nil {
			return err
		}
		if st.State != projection.StateStandingBy || st.Supervisor.Other.Holder != "replica-B" {
			return fmt.Errorf("runner A is %v behind %q", st.State, st.Supervisor.Other.Holder)
		}
		return nil
	})
	if cp, err := b.Target.Checkpoint(ctx, Name, 0); err != nil || cp != head {
		t.Fatalf("checkpoint %d (%v), want %d", cp, err, head)
	}
	sampler()

	applied := k.Applied(t)
	afterA := 0 // events past before that A applied (in its paused batch, uncommitted)
	for i, p := range pos {
		by := applied[p]
		want := []int{1}
		if p > before {
			want = []int{2}
		}
		if k.AtLeastOnce && p > before && len(by) > 1 {
			// A's handler may have applied events of its paused batch, uncommitted (handlers'
			// writes are not in the store): B applies them again, once.
			afterA++
			if slices.Index(by, 2) != len(by)-1 {
				t.Errorf("event %d (position %d, past A's checkpoint) applied by replicas %v, want some by A, then once by B", i+1, p, by)
			}
			continue
		}
		if !slices.Equal(by, want) {
			t.Errorf("event %d (position %d) applied by replicas %v, want %v", i+1, p, by, want)
		}
	}
	if afterA > batch {
		t.Errorf("A applied %d events past its checkpoint %d, more than its paused batch", afterA, before)
	}
	if extra := slices.DeleteFunc(slices.Collect(maps.Keys(applied)), func(p uint64) bool { return slices.Contains(pos, p) }); len(extra) > 0 {
		t.Errorf("the read model holds events at positions %v, not in the log's deposits", extra)
	}
	if k.AtLeastOnce {
		checkChain(t, k.Log, before, tokenB)
	}

	for _, stop := range []func() error{stopA, stopB} {
		if err := stop(); !errors.Is(err, context.Canceled) {
			t.Fatalf("Run: %v, want context.Canceled", err)
		}
	}
}

// checkChain checks the checkpoints that Checkpoints appended for generation 0, in log order:
// they never go back, and after B's first one (token tokenB), none is A's; none of A's is past
// before, where A paused.
func checkChain(t *testing.T, log annals.Store, before, tokenB uint64) {
	t.Helper()
	stream := projection.CheckpointStreamPrefix + Name + "@0"
	var last uint64
	sawB := false
	n := 0
	for ev, err := range log.ReadAll(t.Context(), &annals.ReadOptions{Filter: &annals.Filter{StreamPrefixes: []string{stream}, EventTypes: []string{projection.CheckpointEventType}}}) {
		if err != nil {
			t.Fatal(err)
		}
		if ev.Stream != stream {
			continue
		}
		n++
		var d struct {
			Checkpoint uint64 `json:"checkpoint"`
			Holder     string `json:"holder"`
			Token      uint64 `json:"token"`
		}
		if err := json.Unmarshal(ev.Data, &d); err != nil {
			t.Fatal(err)
		}
		if d.Checkpoint < last {
			t.Errorf("checkpoint at position %d goes back from %d to %d", ev.Position, last, d.Checkpoint)
		}
		last = d.Checkpoint
		switch {
		case d.Token == tokenB:
			sawB = true
		case d.Holder == "replica-A":
			if sawB {
				t.Errorf("A wrote checkpoint %d (position %d) after B's first one", d.Checkpoint, ev.Position)
			}
			if d.Checkpoint > before {
				t.Errorf("A wrote checkpoint %d (position %d) past %d, where it paused and lost its lease", d.Checkpoint, ev.Position, before)
			}
		default:
			t.Errorf("checkpoint %d (position %d) written under %q token %d, neither A's nor B's", d.Checkpoint, ev.Position, d.Holder, d.Token)
		}
	}
	if !sawB || n == 0 {
		t.Errorf("B wrote no checkpoint (of %d)", n)
	}
}

// start runs r in the background; the function returned stops it and returns Run's error.
func start[Tx any](t *testing.T, r *projection.Runner[Tx]) func() error {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx) }()
	var once sync.Once
	var err error
	stop := func() error {
		once.Do(func() {
			cancel()
			err = testwait.Recv(t, "Run to return", done)
		})
		return err
	}
	t.Cleanup(func() { stop() })
	return stop
}

// watchCheckpoint reads the checkpoint of generation 0 from target until the function it
// returns is called, and fails the test if it ever goes back.
func watchCheckpoint[Tx any](t *testing.T, target projection.Store[Tx]) func() {
	done := make(chan struct{})
	finished := make(chan struct{})
	go func() {
		defer close(finished)
		var last uint64
		tick := time.NewTicker(2 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-done:
				return
			case <-tick.C:
			}
			cp, err := target.Checkpoint(context.Background(), Name, 0)
			if err != nil {
				continue // a store closing at the end of the test
			}
			if cp < last {
				t.Errorf("the stored checkpoint went back from %d to %d", last, cp)
			}
			last = cp
		}
	}()
	var once sync.Once
	stop := func() {
		once.Do(func() {
			close(done)
			<-finished
		})
	}
	t.Cleanup(stop)
	return stop
}

// Model is a read model that records, by position, the replicas that applied each event.
type Model struct {
	mu sync.Mutex // for Checkpoints, whose handlers write it outside the store
	m  map[uint64][]int
}

// NewModel returns an empty Model.
func NewModel() *Model { return &Model{m: map[uint64][]int{}} }

// Record is a [Kind]'s Record for a Model.
func Record(_ context.Context, tx *Model, replica int, ev annals.RecordedEvent) error {
	tx.mu.Lock()
	defer tx.mu.Unlock()
	tx.m[ev.Position] = append(tx.m[ev.Position], replica)
	return nil
}

// Applied returns a copy of what m holds.
func (m *Model) Applied() map[uint64][]int {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := maps.Clone(m.m)
	for p, by := range out {
		out[p] = slices.Clone(by)
	}
	return out
}

// Checkpoints returns the Kind of projection.Checkpoints, with a read model outside the store:
// replica i reads the log, appends its checkpoints and takes its lease through events(i)
// (which must be a lease.Keeper); log is where the test appends.
func Checkpoints(log annals.Store, events func(i int) annals.Store) Kind[*Model] {
	ext := NewModel()
	return Kind[*Model]{
		Log: log,
		Replica: func(i int) Replica[*Model] {
			s := events(i)
			c := projection.NewCheckpoints(s, &projection.CheckpointsOptions[*Model]{
				Tx: func(string, uint64) *Model { return ext },
			})
			return Replica[*Model]{Events: s, Target: c, Keeper: s.(lease.Keeper)}
		},
		Record:         Record,
		Applied:        func(*testing.T) map[uint64][]int { return ext.Applied() },
		PauseInHandler: true,
		AtLeastOnce:    true,
	}
}
