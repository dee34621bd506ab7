package supervisor_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/annalsdb/annals"
	"github.com/annalsdb/annals/internal/testwait"
	"github.com/annalsdb/annals/lease"
	"github.com/annalsdb/annals/supervisor"
)

// states records every state a supervisor reports, in order.
type states struct {
	mu  sync.Mutex
	all []supervisor.Status
}

func (s *states) add(st supervisor.Status) {
	s.mu.Lock()
	s.all = append(s.all, st)
	s.mu.Unlock()
}

func (s *states) seen(want supervisor.State) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, st := range s.all {
		if st.State == want {
			return true
		}
	}
	return false
}

func TestRetriesTransientThenStopsOnPermanent(t *testing.T) {
	var rec states
	s, err := supervisor.New(supervisor.Options{Policy: supervisor.Policy{MinBackoff: time.Millisecond, MaxBackoff: 4 * time.Millisecond, OnChange: rec.add}})
	if err != nil {
		t.Fatal(err)
	}
	transient := errors.New("connection refused")
	var calls atomic.Int64
	err = s.Run(context.Background(), func(ctx context.Context) error {
		if calls.Add(1) < 4 {
			return transient
		}
		return fmt.Errorf("read: %w", annals.ErrCorrupt)
	})
	if !errors.Is(err, annals.ErrCorrupt) || calls.Load() != 4 {
		t.Fatalf("Run = %v after %d calls; want the permanent error after 4", err, calls.Load())
	}
	st := s.Status()
	if st.State != supervisor.Failed || !errors.Is(st.Err, annals.ErrCorrupt) {
		t.Fatalf("status after a permanent error = %+v", st)
	}
	rec.mu.Lock()
	defer rec.mu.Unlock()
	retries := 0
	for _, st := range rec.all {
		if st.State == supervisor.Retrying {
			retries++
			if !errors.Is(st.Err, transient) || st.Attempts != retries || st.RetryAt.IsZero() {
				t.Errorf("retrying status %+v; want the transient error and attempt %d", st, retries)
			}
		}
	}
	if retries != 3 {
		t.Fatalf("%d retrying states, want 3", retries)
	}
}

func TestBackoffIsCapped(t *testing.T) {
	var rec states
	s, err := supervisor.New(supervisor.Options{Policy: supervisor.Policy{MinBackoff: time.Millisecond, MaxBackoff: 8 * time.Millisecond, OnChange: rec.add}})
	if err != nil {
		t.Fatal(err)
	}
	var calls atomic.Int64
	_ = s.Run(context.Background(), func(ctx context.Context) error {
		if calls.Add(1) > 12 {
			return annals.ErrClosed
		}
		return errors.New("transient")
	})
	rec.mu.Lock()
	defer rec.mu.Unlock()
	var last time.Time
	for _, st := range rec.all {
		if st.State != supervisor.Retrying {
			continue
		}
		if !last.IsZero() {
			// The wait is at most MaxBackoff after the status was set; allow the loaded machine
			// its scheduling on top, but no doubling past the cap (2^11 ms).
			if gap := st.RetryAt.Sub(last); gap > time.Second {
				t.Fatalf("retry %d came %v after the previous one; the backoff is not capped", st.Attempts, gap)
			}
		}
		last = st.RetryAt
	}
}

func TestOneHolderWorksOthersStandBy(t *testing.T) {
	keeper := lease.NewMemory(nil)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var working atomic.Int64
	var maxWorking atomic.Int64
	type replica struct {
		s      *supervisor.Supervisor
		cancel context.CancelFunc
		done   chan error
	}
	work := func(ctx context.Context) error {
		if _, ok := lease.FromContext(ctx); !ok {
			return errors.New("the work's context carries no lease")
		}
		n := working.Add(1)
		for {
			m := maxWorking.Load()
			if n <= m || maxWorking.CompareAndSwap(m, n) {
				break
			}
		}
		<-ctx.Done()
		working.Add(-1)
		return ctx.Err()
	}
	var rs []*replica
	for i := range 3 {
		s, err := supervisor.New(supervisor.Options{Name: "projection/x", Policy: supervisor.Policy{Keeper: keeper, Holder: fmt.Sprint("r", i), TTL: 200 * time.Millisecond}})
		if err != nil {
			t.Fatal(err)
		}
		rctx, rcancel := context.WithCancel(ctx)
		r := &replica{s: s, cancel: rcancel, done: make(chan error, 1)}
		go func() { r.done <- s.Run(rctx, work) }()
		rs = append(rs, r)
	}
	running := func() *replica {
		var found *replica
		testwait.Until(t, "one replica running and the others standing by", func() bool {
			found = nil
			standing := 0
			for _, r := range rs {
				switch r.s.Status().State {
				case supervisor.Running:
					found = r
				case supervisor.StandingBy:
					standing++
				}
			}
			return found != nil && standing == len(rs)-1 && working.Load() == 1
		})
		return found
	}
	for len(rs) > 1 {
		r := running()
		if st := r.s.Status(); st.Lease.Holder != st.Holder || st.Lease.Token == 0 {
			t.Fatalf("running status %+v does not show its lease", st)
		}
		r.cancel()
		if err := testwait.Recv(t, "the stopped replica's Run", r.done); !errors.Is(err, context.Canceled) {
			t.Fatalf("Run = %v", err)
		}
		if st := r.s.Status(); st.State != supervisor.Stopped {
			t.Fatalf("status after cancel = %v", st.State)
		}
		for i := range rs {
			if rs[i] == r {
				rs = append(rs[:i], rs[i+1:]...)
				break
			}
		}
	}
	running()
	if maxWorking.Load() != 1 {
		t.Fatalf("%d replicas worked at once", maxWorking.Load())
	}
}

// stuckRenewals is a keeper whose Renew hangs until released, as for a holder that is cut off.
type stuckRenewals struct {
	*lease.Memory
	stuck atomic.Bool
}

func (k *stuckRenewals) Renew(ctx context.Context, l lease.Lease) (lease.Lease, error) {
	if k.stuck.Load() {
		<-ctx.Done()
		return lease.Lease{}, ctx.Err()
	}
	return k.Memory.Renew(ctx, l)
}

func TestWorkStopsWhenTheLeaseCannotBeRenewed(t *testing.T) {
	k := &stuckRenewals{Memory: lease.NewMemory(nil)}
	var rec states
	s, err := supervisor.New(supervisor.Options{Name: "n", Policy: supervisor.Policy{Keeper: k, Holder: "a", TTL: 100 * time.Millisecond, OnChange: rec.add}})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	stopped := make(chan error, 1)
	started := make(chan struct{}, 10)
	go func() {
		_ = s.Run(ctx, func(ctx context.Context) error {
			started <- struct{}{}
			<-ctx.Done()
			stopped <- context.Cause(ctx)
			return ctx.Err()
		})
	}()
	testwait.Recv(t, "the work to start", started)
	k.stuck.Store(true)
	if cause := testwait.Recv(t, "the work to stop", stopped); !errors.Is(cause, lease.ErrLost) {
		t.Fatalf("work stopped because of %v, want lease.ErrLost", cause)
	}
	testwait.Until(t, "standing by after the lost lease", func() bool { return rec.seen(supervisor.StandingBy) })
	// The status says why: the lease was lost (the cause), not the work's context.Canceled.
	rec.mu.Lock()
	for _, st := range rec.all {
		if st.State == supervisor.StandingBy && !errors.Is(st.Err, lease.ErrLost) {
			t.Errorf("standing by with Err %v, want an error matching lease.ErrLost", st.Err)
		}
	}
	rec.mu.Unlock()
	k.stuck.Store(false)
	testwait.Recv(t, "the work to start again once the lease can be taken", started)
}

func TestLostLeaseCancelsWork(t *testing.T) {
	k := lease.NewMemory(nil)
	s, err := supervisor.New(supervisor.Options{Name: "n", Policy: supervisor.Policy{Keeper: k, Holder: "a", TTL: 60 * time.Millisecond}})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	causes := make(chan error, 10)
	go func() {
		_ = s.Run(ctx, func(ctx context.Context) error {
			l, _ := lease.FromContext(ctx)
			// Take the lease away as another keeper would after a pause: release it and give it to b.
			_ = k.Release(context.Background(), l)
			if _, err := k.Acquire(context.Background(), "n", "b", time.Minute); err != nil {
				return err
			}
			<-ctx.Done()
			causes <- context.Cause(ctx)
			return ctx.Err()
		})
	}()
	if cause := testwait.Recv(t, "the work to be cancelled", causes); !errors.Is(cause, lease.ErrLost) {
		t.Fatalf("cause %v, want lease.ErrLost", cause)
	}
	testwait.Until(t, "standing by behind b", func() bool {
		st := s.Status()
		return st.State == supervisor.StandingBy && st.Other.Holder == "b"
	})
}

func TestInvalidOptions(t *testing.T) {
	for _, o := range []supervisor.Options{
		{Policy: supervisor.Policy{Keeper: lease.NewMemory(nil)}},
		{Name: "n", Policy: supervisor.Policy{Keeper: lease.NewMemory(nil), TTL: time.Nanosecond}},
		{Policy: supervisor.Policy{MinBackoff: time.Second, MaxBackoff: time.Millisecond}},
	} {
		if _, err := supervisor.New(o); !errors.Is(err, lease.ErrInvalid) {
			t.Errorf("New(%+v) = %v, want lease.ErrInvalid", o, err)
		}
	}
}

func TestResolve(t *testing.T) {
	own, store := lease.NewMemory(nil), lease.NewMemory(nil)
	if p := (supervisor.Policy{}).Resolve("not a keeper", store); p.Keeper != store {
		t.Fatalf("Resolve took %v, want the first store that keeps leases", p.Keeper)
	}
	if p := (supervisor.Policy{Keeper: own}).Resolve(store); p.Keeper != own {
		t.Fatalf("Resolve replaced the given keeper")
	}
	if p := (supervisor.Policy{Keeper: own, NoLease: true}).Resolve(store); p.Keeper != nil {
		t.Fatalf("Resolve with NoLease kept a keeper")
	}
	if p := (supervisor.Policy{}).Resolve(1, "x"); p.Keeper != nil {
		t.Fatalf("Resolve found a keeper in %v", p.Keeper)
	}
}

// TestWorkLosingTheLeaseAtOnceBacksOff: work that a store refuses with lease.ErrLost while the
// keeper keeps giving the lease back (a store whose fence disagrees with the keeper: a
// checkpoint recorded under a larger token of another keeper, or of this one before its clock
// went back) is run again after a backoff, in state Retrying with the error, not in a tight
// loop of Acquire, work and Release.
func TestWorkLosingTheLeaseAtOnceBacksOff(t *testing.T) {
	var rec states
	s, err := supervisor.New(supervisor.Options{Name: "projection/p", Policy: supervisor.Policy{
		Keeper: lease.NewMemory(nil), TTL: time.Minute, MinBackoff: time.Hour, MaxBackoff: time.Hour, OnChange: rec.add}})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var calls atomic.Int64
	refused := fmt.Errorf("checkpoint written under a later token: %w", lease.ErrLost)
	done := make(chan error, 1)
	go func() {
		done <- s.Run(ctx, func(ctx context.Context) error {
			calls.Add(1)
			return refused
		})
	}()
	testwait.Until(t, "the supervisor to retry after the refusal", func() bool { return rec.seen(supervisor.Retrying) })
	if n := calls.Load(); n != 1 {
		t.Fatalf("work ran %d times before the backoff, want once", n)
	}
	if st := s.Status(); st.State != supervisor.Retrying || !errors.Is(st.Err, lease.ErrLost) {
		t.Fatalf("status %+v, want retrying with the refusal", st)
	}
	cancel()
	if err := testwait.Recv(t, "Run", done); !errors.Is(err, context.Canceled) {
		t.Fatalf("Run: %v", err)
	}
}

// flakyAcquire is a keeper whose Acquire fails with a transient error while flaky is set.
type flakyAcquire struct {
	*lease.Memory
	flaky atomic.Bool
}

var errUnreachable = errors.New("keeper unreachable")

func (k *flakyAcquire) Acquire(ctx context.Context, name, holder string, ttl time.Duration) (lease.Lease, error) {
	if k.flaky.Load() {
		return lease.Lease{}, errUnreachable
	}
	return k.Memory.Acquire(ctx, name, holder, ttl)
}

// TestStandingByStartsTheBackoffAgain: failures to reach the keeper that a replica standing by
// met earlier, before the keeper answered again that another holder has the lease, do not
// lengthen its wait after the next failure: the count of failures starts again once the keeper
// answers, so that a standby that met a few network errors over days still takes over
// promptly.
func TestStandingByStartsTheBackoffAgain(t *testing.T) {
	var rec states
	k := &flakyAcquire{Memory: lease.NewMemory(nil)}
	if _, err := k.Acquire(context.Background(), "projection/p", "other", time.Hour); err != nil {
		t.Fatal(err)
	}
	s, err := supervisor.New(supervisor.Options{Name: "projection/p", Policy: supervisor.Policy{
		Keeper: k, TTL: 50 * time.Millisecond, MinBackoff: time.Millisecond, MaxBackoff: time.Second, OnChange: rec.add}})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	k.flaky.Store(true)
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx, func(ctx context.Context) error { <-ctx.Done(); return ctx.Err() }) }()
	testwait.Until(t, "four failures to reach the keeper", func() bool { return s.Status().Attempts >= 4 })
	k.flaky.Store(false)
	testwait.Until(t, "the replica to stand by", func() bool { return s.Status().State == supervisor.StandingBy })
	rec.mu.Lock()
	seen := len(rec.all)
	rec.mu.Unlock()
	k.flaky.Store(true)
	testwait.Until(t, "the next failure", func() bool {
		rec.mu.Lock()
		defer rec.mu.Unlock()
		for _, st := range rec.all[seen:] {
			if st.State == supervisor.Retrying {
				return true
			}
		}
		return false
	})
	rec.mu.Lock()
	for _, st := range rec.all[seen:] {
		if st.State == supervisor.Retrying {
			if st.Attempts != 1 {
				t.Errorf("first failure after standing by counted as attempt %d, want 1", st.Attempts)
			}
			break
		}
	}
	rec.mu.Unlock()
	cancel()
	if err := testwait.Recv(t, "Run", done); !errors.Is(err, context.Canceled) {
		t.Fatalf("Run: %v", err)
	}
}
