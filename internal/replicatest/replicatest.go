// Package replicatest runs several replicas of one runner (a projection, a process manager)
// under a randomized schedule that kills and restarts them while events are appended, for the
// tests of every backend: the replicas of a service must together have the effect of one
// clean pass over the log, whatever dies when.
//
// A [Schedule] drives the replicas through a [Start] function: in process ([InProcess]) a
// replica is a runner whose Run is cancelled without giving up its lease (its [Keeper] stops
// renewing and releasing, as a dead process does, so that the others take over only when the
// lease lapses); as a child process ([StartChild]) it is the test binary re-executed, killed
// with SIGKILL. The seed of the schedule is logged; ANNALS_SEED=<seed> replays its choices
// (the interleaving of the goroutines and processes is the scheduler's).
//
// The scenarios of this package ([ProjectionMemory], [ProjectionLog], [Process]) run the
// replicas and check the result: the read model against one pass over the log, the committed
// checkpoints as one chain that never moves backwards, under fencing tokens that never go
// back, and each command of a process manager taking effect once.
package replicatest

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/annalsdb/annals/internal/testwait"
	"github.com/annalsdb/annals/lease"
)

// SeedEnv names the environment variable that replays a seed.
const SeedEnv = "ANNALS_SEED"

// Seed returns a random source for a randomized test, from ANNALS_SEED when it is set, else
// from the clock, and logs the seed.
func Seed(t testing.TB) *rand.Rand {
	t.Helper()
	seed := uint64(time.Now().UnixNano())
	if v := os.Getenv(SeedEnv); v != "" {
		s, err := strconv.ParseUint(v, 10, 64)
		if err != nil {
			t.Fatalf("%s=%q: want an unsigned integer", SeedEnv, v)
		}
		seed = s
	}
	t.Logf("seed %d (%s=%d replays it)", seed, SeedEnv, seed)
	return rand.New(rand.NewPCG(seed, seed^0x5eed))
}

// Keeper is the keeper of one replica in process: it passes every call to the shared keeper
// until [Keeper.Crash] or [Keeper.Stall]. After Crash it renews and releases nothing, as a
// process that died does, so that its lease lapses only when its time to live is up. After
// Stall its renewals succeed without reaching the keeper, as those of a holder that does not
// notice its lease lapse (a paused process that wakes up, a clock that runs slow): the
// replica works on past its lease, and only the fencing of the stores it writes to stops it.
// Revive undoes both, for a replica that restarts.
type Keeper struct {
	lease.Keeper
	mode    atomic.Int32 // 0, crashed or stalled
	holding atomic.Bool  // the last Acquire succeeded and no Release followed
}

const (
	crashed = 1
	stalled = 2
)

var errCrashed = errors.New("replicatest: the replica crashed")

// Crash makes k renew and release nothing.
func (k *Keeper) Crash() { k.mode.Store(crashed) }

// Stall makes k's renewals succeed without reaching the keeper.
func (k *Keeper) Stall() { k.mode.Store(stalled) }

// Revive makes k pass every call on again.
func (k *Keeper) Revive() { k.mode.Store(0) }

// Acquire implements lease.Keeper.
func (k *Keeper) Acquire(ctx context.Context, name, holder string, ttl time.Duration) (lease.Lease, error) {
	l, err := k.Keeper.Acquire(ctx, name, holder, ttl)
	k.holding.Store(err == nil)
	return l, err
}

// Holding reports whether the replica took the lease and has not released it (it may have
// lost it since).
func (k *Keeper) Holding() bool { return k.holding.Load() }

// Renew implements lease.Keeper: an error (not lease.ErrLost) after Crash, l as it is after
// Stall.
func (k *Keeper) Renew(ctx context.Context, l lease.Lease) (lease.Lease, error) {
	switch k.mode.Load() {
	case crashed:
		return lease.Lease{}, errCrashed
	case stalled:
		return l, nil
	}
	return k.Keeper.Renew(ctx, l)
}

// Release implements lease.Keeper: nothing after Crash.
func (k *Keeper) Release(ctx context.Context, l lease.Lease) error {
	if k.mode.Load() == crashed {
		return nil
	}
	k.holding.Store(false)
	return k.Keeper.Release(ctx, l)
}

// Replica is a running replica.
type Replica interface {
	// Stall makes the replica work on past its lease (see [Keeper.Stall]) when it holds the
	// lease and can be stalled; it reports whether it did.
	Stall() bool
	// Crash ends the replica abruptly, without giving up its lease, and waits until it has
	// stopped.
	Crash() error
	// Stop ends the replica gracefully (its lease is released) and waits for it.
	Stop() error
}

// Start starts a replica named holder. prev, when not nil, is the replica that ran before
// under the same name and has stopped: an in-process replica runs its runner again.
type Start func(holder string, prev Replica) (Replica, error)

// Runner is what an in-process replica runs.
type Runner interface {
	Run(ctx context.Context) error
}

// InProcess returns a Start that runs the runners newRunner makes: each replica gets its own
// [Keeper] over keeper, which newRunner must give the runner as its Supervision.Keeper.
func InProcess(keeper lease.Keeper, newRunner func(holder string, k lease.Keeper) (Runner, error)) Start {
	return func(holder string, prev Replica) (Replica, error) {
		r, _ := prev.(*inProcess)
		if r == nil {
			k := &Keeper{Keeper: keeper}
			runner, err := newRunner(holder, k)
			if err != nil {
				return nil, err
			}
			r = &inProcess{keeper: k, runner: runner}
		} else {
			r = &inProcess{keeper: r.keeper, runner: r.runner}
			r.keeper.Revive()
		}
		ctx, cancel := context.WithCancel(context.Background())
		r.cancel, r.done = cancel, make(chan error, 1)
		go func() { r.done <- r.runner.Run(ctx) }()
		return r, nil
	}
}

type inProcess struct {
	keeper *Keeper
	runner Runner
	cancel context.CancelFunc
	done   chan error
	once   sync.Once
	err    error
}

func (r *inProcess) end(crash bool) error {
	r.once.Do(func() {
		if crash {
			r.keeper.Crash()
		}
		r.cancel()
		r.err = <-r.done
		if errors.Is(r.err, context.Canceled) {
			r.err = nil
		}
	})
	return r.err
}

func (r *inProcess) Crash() error { return r.end(true) }
func (r *inProcess) Stop() error  { return r.end(false) }

func (r *inProcess) Stall() bool {
	if !r.keeper.Holding() {
		return false
	}
	r.keeper.Stall()
	return true
}

// Options configure a [Schedule].
type Options struct {
	// Replicas is how many replicas run (2 or 3, say); Rounds how many rounds the schedule
	// runs (each appends a burst of events and may kill, stop or restart replicas).
	Replicas, Rounds int
	// Start starts a replica.
	Start Start
	// Write appends a burst of events chosen with rng and returns the position of the last.
	Write func(rng *rand.Rand) (uint64, error)
	// Progress returns how far the shared work has gone: the position its checkpoint shows.
	Progress func() (uint64, error)
	// Holder, when set, returns the holder of the lease now ("" when nobody holds it): after
	// stalling the holder, the schedule waits until another replica took the lease over.
	Holder func() (string, error)
	// Done, when set, says whether the work is complete once Progress shows the last event
	// written (nil when it is): the schedule waits for it before it stops the replicas.
	Done func() error
}

// Stats count what a schedule did.
type Stats struct {
	Crashes, Stops, Restarts, NewHolders, Outages, Stalls int
	// Head is the position of the last event written.
	Head uint64
}

func (s Stats) String() string {
	return fmt.Sprintf("%d crashes (%d of every replica at once), %d stalls, %d graceful stops, %d restarts (%d under a new holder), head %d",
		s.Crashes, s.Outages, s.Stalls, s.Stops, s.Restarts, s.NewHolders, s.Head)
}

// Schedule runs opts.Replicas replicas for opts.Rounds rounds, choosing with rng. Each round
// appends a burst of events, then may wait for the work to reach a random point of what was
// written, then kills a replica (now and then every replica at once), stalls one (it works on
// past its lease until the stores fence it off, and until it is killed), stops one gracefully,
// restarts the dead ones (the same runner again, a new one under the same holder, or one under
// a new holder) or lets them work. At the end every replica runs again and Schedule waits
// until the work has caught up with the last event written, then stops every replica
// gracefully. It fails the test when a replica's Run returns an error other than its
// context's.
func Schedule(t *testing.T, rng *rand.Rand, opts Options) Stats {
	t.Helper()
	var st Stats
	holders := make([]string, opts.Replicas)
	replicas := make([]Replica, opts.Replicas)
	dead := make([]Replica, opts.Replicas) // the last replica of a slot that is down
	stalled := make([]bool, opts.Replicas)
	next := 0
	newHolder := func() string {
		next++
		return fmt.Sprintf("replica-%d", next)
	}
	start := func(i int, prev Replica) {
		t.Helper()
		r, err := opts.Start(holders[i], prev)
		if err != nil {
			t.Fatalf("start replica %s: %v", holders[i], err)
		}
		replicas[i], dead[i] = r, nil
	}
	end := func(i int, crash bool) {
		t.Helper()
		var err error
		if crash {
			err = replicas[i].Crash()
			st.Crashes++
		} else {
			err = replicas[i].Stop()
			st.Stops++
		}
		if err != nil {
			t.Fatalf("replica %s: Run: %v", holders[i], err)
		}
		replicas[i], dead[i], stalled[i] = nil, replicas[i], false
	}
	restart := func(i int) {
		t.Helper()
		st.Restarts++
		switch rng.IntN(3) {
		case 0: // the same process, running again
			start(i, dead[i])
		case 1: // a new process under the same name
			start(i, nil)
		default:
			st.NewHolders++
			holders[i] = newHolder()
			start(i, nil)
		}
	}
	defer func() {
		for i, r := range replicas {
			if r != nil {
				if err := r.Stop(); err != nil {
					t.Errorf("replica %s: Run: %v", holders[i], err)
				}
			}
		}
	}()
	for i := range replicas {
		holders[i] = newHolder()
		start(i, nil)
	}
	var prevHead uint64
	for range opts.Rounds {
		head, err := opts.Write(rng)
		if err != nil {
			t.Fatal(err)
		}
		st.Head = head
		if rng.IntN(2) == 0 {
			// Let the work go on to a random point of the burst, so that the next kill lands
			// in the middle of a catch-up.
			at := prevHead + 1 + rng.Uint64N(head-prevHead)
			waitProgress(t, opts.Progress, at)
		}
		prevHead = head
		switch a := rng.IntN(20); {
		case a < 7: // kill one
			if i := rng.IntN(len(replicas)); replicas[i] != nil {
				end(i, true)
			}
		case a < 9: // kill every one: the work resumes when one restarts
			st.Outages++
			for i := range replicas {
				if replicas[i] != nil {
					end(i, true)
				}
			}
		case a < 12: // stop one gracefully
			if i := rng.IntN(len(replicas)); replicas[i] != nil {
				end(i, false)
			}
		case a < 16 && !slices.Contains(stalled, true):
			// Stall the holder: it works on past its lease until it is fenced off. One at a
			// time, so that a replica that is not stalled takes over (a stalled one that holds
			// an expired lease but has nothing to write believes it works, and does not ask).
			for _, i := range rng.Perm(len(replicas)) {
				if replicas[i] == nil || !replicas[i].Stall() {
					continue
				}
				st.Stalls++
				stalled[i] = true
				if opts.Holder == nil || len(replicas) == 1 {
					break
				}
				for j := range replicas {
					if replicas[j] == nil {
						restart(j)
					}
				}
				testwait.UntilNil(t, "another replica to take over from the stalled one", func() error {
					h, err := opts.Holder()
					if err == nil && (h == "" || h == holders[i]) {
						err = fmt.Errorf("the lease is held by %q", h)
					}
					return err
				})
				break
			}
		}
		// Restart the dead, most of the time at once.
		for i := range replicas {
			if replicas[i] == nil && (rng.IntN(4) > 0 || allDown(replicas)) {
				restart(i)
			}
		}
	}
	for i := range replicas {
		if replicas[i] == nil {
			restart(i)
		}
	}
	waitProgress(t, opts.Progress, st.Head)
	if opts.Done != nil {
		testwait.UntilNil(t, "the work to be done", opts.Done)
	}
	for i := range replicas {
		end(i, false)
	}
	return st
}

func allDown(replicas []Replica) bool {
	for _, r := range replicas {
		if r != nil {
			return false
		}
	}
	return true
}

// waitProgress waits until progress shows at least at.
func waitProgress(t *testing.T, progress func() (uint64, error), at uint64) {
	t.Helper()
	begin := time.Now()
	defer func() {
		if d := time.Since(begin); d > time.Second {
			t.Logf("waited %v for the work to reach position %d", d, at)
		}
	}()
	testwait.UntilNil(t, fmt.Sprintf("the work to reach position %d", at), func() error {
		p, err := progress()
		if err != nil {
			return err
		}
		if p < at {
			return fmt.Errorf("at position %d", p)
		}
		return nil
	})
}

// Move is a committed move of a checkpoint, under the lease token it was written with.
type Move struct {
	From, To uint64
	Holder   string
	Token    uint64
}

// CheckChain fails the test unless moves, in commit order, form one chain from checkpoint 0
// to last in which every move continues from the checkpoint the one before it left (when
// fromKnown; else only that checkpoints never decrease), no move goes backwards, and the
// lease tokens never go back: once a holder committed under a token, no commit under an
// older one follows (fencing). It returns how many holders committed.
func CheckChain(t testing.TB, moves []Move, last uint64, fromKnown bool) int {
	t.Helper()
	var at, token uint64
	holders := map[string]bool{}
	for i, m := range moves {
		switch {
		case fromKnown && m.From != at, m.To < m.From, m.To < at:
			t.Fatalf("commit %d of %d moved the checkpoint %d → %d, with the checkpoint at %d", i, len(moves), m.From, m.To, at)
		case m.Token < token:
			t.Fatalf("commit %d of %d (checkpoint %d → %d) was made under token %d of %s, after a commit under token %d",
				i, len(moves), m.From, m.To, m.Token, m.Holder, token)
		}
		at, token = m.To, m.Token
		holders[m.Holder] = true
	}
	if at != last {
		t.Fatalf("the checkpoint ends at %d, want %d", at, last)
	}
	return len(holders)
}
