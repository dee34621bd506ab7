// Package supervisor runs a long-lived worker (a projection runner, a process manager, a relay)
// the way a service wants it run on each of its replicas: under a lease, so that one replica
// works while the others stand by and take over when it dies, and restarted with capped
// exponential backoff after a transient error, so that an application does not write that
// loop itself.
//
// # The loop
//
// [Supervisor.Run] takes the lease (when it has a [lease.Keeper]) or stands by while another
// holder has it, asking again every fifth of the time to live. Holding it, it calls the work
// function with a context that carries the lease ([lease.NewContext]: the stores that keep
// leases check it in the transaction of every write, so a holder that lost its lease cannot
// commit) and renews the lease every third of its time to live. When a renewal finds the lease
// lost, or cannot renew it before the holder's own deadline ([lease.Lease.Deadline]), the work's
// context is cancelled at once and the supervisor stands by again.
//
// When the work returns an error, the supervisor gives the lease up and either stops (a
// permanent error: bad input, a corrupt or closed store, a refused permission; see
// [IsPermanent] and [Options.Permanent]) or waits and runs it again, the wait doubling from
// [Options.MinBackoff] up to [Options.MaxBackoff], with jitter. A run that lasted longer than
// MaxBackoff, or an answer of the keeper that another holder has the lease, starts the count of
// failures again.
//
// Its state ([Status]) says what it is doing and why: running, standing by (and who holds the
// lease), retrying (the error, the attempt, when), failed (the error), or stopped.
package supervisor

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"time"

	"github.com/annalsdb/annals"
	"github.com/annalsdb/annals/lease"
)

// Defaults of [Options].
const (
	DefaultMinBackoff = 100 * time.Millisecond
	DefaultMaxBackoff = 30 * time.Second
)

// State is what a [Supervisor] is doing.
type State int

const (
	// Stopped: Run is not running.
	Stopped State = iota
	// StandingBy: another holder has the lease; Run asks for it again from time to time.
	StandingBy
	// Running: the work runs (under the lease, when there is one).
	Running
	// Retrying: the work failed with a transient error; Run runs it again at Status.RetryAt.
	Retrying
	// Failed: the work failed with a permanent error and Run returned it.
	Failed
)

// MarshalText encodes s as its String, so that a Status encodes readably (as JSON, say).
func (s State) MarshalText() ([]byte, error) { return []byte(s.String()), nil }

func (s State) String() string {
	switch s {
	case Stopped:
		return "stopped"
	case StandingBy:
		return "standing-by"
	case Running:
		return "running"
	case Retrying:
		return "retrying"
	case Failed:
		return "failed"
	}
	return fmt.Sprintf("State(%d)", int(s))
}

// Status describes a supervisor at one moment.
type Status struct {
	State State
	// Holder is this supervisor's holder name, and Lease the lease it holds while running
	// (zero otherwise). Other is the lease another holder has while this one stands by.
	Holder string
	Lease  lease.Lease
	Other  lease.Lease
	// Err is why: the error being retried, the permanent one, or the last transient one.
	Err error
	// Attempts counts the failures since the work last ran longer than MaxBackoff or this
	// supervisor last stood by; RetryAt is when the next attempt starts while retrying.
	Attempts int
	RetryAt  time.Time
}

// Options configure a [Supervisor].
type Options struct {
	// Name is the lease's name (e.g. "projection/carts"); required with a Keeper.
	Name string
	Policy
}

// Policy is how a worker is supervised: the part of [Options] that the runners built on this
// package (projection, process) take from their users.
type Policy struct {
	// Keeper keeps the lease; nil runs the work without one (every replica works), unless
	// [Policy.Resolve] finds one.
	Keeper lease.Keeper
	// NoLease runs the work without a lease even when Resolve would find a keeper.
	NoLease bool
	// Holder names this replica; empty means [lease.NewHolder].
	Holder string
	// TTL is the lease's time to live; 0 means [lease.DefaultTTL]. A holder that dies is
	// replaced about TTL (at most TTL and a fifth) after its last renewal.
	TTL time.Duration
	// MinBackoff and MaxBackoff bound the wait before the work runs again after a transient
	// error; 0 means [DefaultMinBackoff] and [DefaultMaxBackoff].
	MinBackoff, MaxBackoff time.Duration
	// Permanent says which errors stop Run; nil means [IsPermanent].
	Permanent func(error) bool
	// OnChange, when set, is called with every new status (to log it, say), on Run's
	// goroutines, one call at a time; it must return quickly.
	OnChange func(Status)
}

// Resolve returns p with its Keeper chosen: p.Keeper when set, else the first of stores that
// is a [lease.Keeper] (a runner passes the stores it writes to, the one that checks the fence
// in its transactions first), else none; none at all with NoLease.
func (p Policy) Resolve(stores ...any) Policy {
	if p.NoLease {
		p.Keeper = nil
		return p
	}
	for _, s := range stores {
		if p.Keeper != nil {
			break
		}
		if k, ok := s.(lease.Keeper); ok {
			p.Keeper = k
		}
	}
	return p
}

// IsPermanent reports whether err is one that running the work again will not cure: bad
// input or a refused permission ([annals.ErrInvalidArgument], [lease.ErrInvalid]), a corrupt
// store, a closed store.
func IsPermanent(err error) bool {
	return errors.Is(err, annals.ErrInvalidArgument) || errors.Is(err, annals.ErrCorrupt) ||
		errors.Is(err, annals.ErrClosed) || errors.Is(err, lease.ErrInvalid)
}

// Supervisor runs one worker; see the package documentation. Its methods are safe for
// concurrent use.
type Supervisor struct {
	opts     Options
	notifyMu sync.Mutex // serialises OnChange calls
	mu       sync.Mutex
	status   Status
	running  bool
}

// New returns a Supervisor. It returns an error matching [lease.ErrInvalid] for a Keeper with
// an invalid Name, Holder or TTL, or backoffs where MinBackoff exceeds MaxBackoff.
func New(opts Options) (*Supervisor, error) {
	if opts.TTL == 0 {
		opts.TTL = lease.DefaultTTL
	}
	if opts.Holder == "" {
		opts.Holder = lease.NewHolder()
	}
	if opts.MinBackoff == 0 {
		opts.MinBackoff = DefaultMinBackoff
	}
	if opts.MaxBackoff == 0 {
		opts.MaxBackoff = max(DefaultMaxBackoff, opts.MinBackoff)
	}
	if opts.Permanent == nil {
		opts.Permanent = IsPermanent
	}
	if opts.Keeper != nil {
		if err := lease.Validate(opts.Name, opts.Holder, opts.TTL); err != nil {
			return nil, fmt.Errorf("supervisor: %w", err)
		}
	}
	if opts.MinBackoff < 0 || opts.MaxBackoff < opts.MinBackoff {
		return nil, fmt.Errorf("%w: supervisor: backoff from %v to %v", lease.ErrInvalid, opts.MinBackoff, opts.MaxBackoff)
	}
	return &Supervisor{opts: opts, status: Status{Holder: opts.Holder}}, nil
}

// Status returns the supervisor's status now.
func (s *Supervisor) Status() Status {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.status
}

func (s *Supervisor) set(update func(*Status)) {
	s.notifyMu.Lock()
	defer s.notifyMu.Unlock()
	s.mu.Lock()
	update(&s.status)
	st := s.status
	s.mu.Unlock()
	if s.opts.OnChange != nil {
		s.opts.OnChange(st)
	}
}

// ErrBusy is Run's error when another Run of the same Supervisor is in progress.
var ErrBusy = errors.New("supervisor: already running")

// Run runs work as the package documentation says, until ctx is done (it returns ctx's error)
// or work fails with a permanent error (it returns it). work must return when its context is
// done; a nil return ends Run with nil. Run returns [ErrBusy] when another Run of s is in
// progress.
func (s *Supervisor) Run(ctx context.Context, work func(ctx context.Context) error) error {
	s.mu.Lock()
	if s.running {
		s.mu.Unlock()
		return ErrBusy
	}
	s.running = true
	s.mu.Unlock()
	err := s.run(ctx, work)
	s.set(func(st *Status) {
		st.Lease = lease.Lease{}
		st.State = Stopped
		if err != nil && ctx.Err() == nil {
			st.State, st.Err = Failed, err
		}
	})
	s.mu.Lock()
	s.running = false
	s.mu.Unlock()
	return err
}

func (s *Supervisor) run(ctx context.Context, work func(ctx context.Context) error) error {
	attempts := 0
	for {
		if err := ctx.Err(); err != nil {
			return err
		}
		held, err := s.acquire(ctx)
		if err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			if s.opts.Permanent(err) {
				return err
			}
			attempts++
			if err := s.retry(ctx, err, attempts); err != nil {
				return err
			}
			continue
		}
		if held == nil {
			// Standing by: acquire waited its turn. The keeper answered, so earlier failures
			// to reach it say nothing of the next one.
			attempts = 0
			continue
		}
		start := time.Now()
		err, lost := held.run(ctx, work)
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if time.Since(start) > s.opts.MaxBackoff {
			attempts = 0
		}
		switch {
		case lost != nil:
			if !errors.Is(err, lease.ErrLost) {
				err = lost // why, rather than the work's context.Canceled
			}
			s.set(func(st *Status) { st.State, st.Lease, st.Err = StandingBy, lease.Lease{}, err })
			continue
		case errors.Is(err, lease.ErrLost):
			// A store refused the lease that the keeper still renewed: another holder took it
			// (the next Acquire says so), or the store and the keeper disagree (a token the
			// store recorded from another keeper, or from this one before its clock went
			// back), which taking the lease again at once would not cure: back off.
		case err == nil:
			return nil
		case s.opts.Permanent(err):
			return err
		}
		attempts++
		if err := s.retry(ctx, err, attempts); err != nil {
			return err
		}
	}
}

// retry waits out the backoff of the attempts-th failure, in state Retrying.
func (s *Supervisor) retry(ctx context.Context, err error, attempts int) error {
	d := s.opts.MinBackoff << min(attempts-1, 30)
	if d <= 0 || d > s.opts.MaxBackoff {
		d = s.opts.MaxBackoff
	}
	// Jitter: between half and all of d, so that replicas that failed together spread out.
	d = d/2 + rand.N(d/2+1)
	at := time.Now().Add(d)
	s.set(func(st *Status) {
		st.State, st.Err, st.Attempts, st.RetryAt, st.Lease = Retrying, err, attempts, at, lease.Lease{}
	})
	return sleep(ctx, d)
}

func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// acquire takes the lease. It returns a holding when it has the lease (or there is no
// Keeper), nil after waiting its turn in StandingBy when another holder has it, or the
// Keeper's error.
func (s *Supervisor) acquire(ctx context.Context) (*holding, error) {
	if s.opts.Keeper == nil {
		return &holding{s: s}, nil
	}
	asked := time.Now()
	l, err := s.opts.Keeper.Acquire(ctx, s.opts.Name, s.opts.Holder, s.opts.TTL)
	if he, ok := errors.AsType[*lease.HeldError](err); ok {
		s.set(func(st *Status) { st.State, st.Other, st.Lease = StandingBy, he.Lease, lease.Lease{} })
		return nil, sleep(ctx, s.opts.TTL/5)
	}
	if err != nil {
		return nil, err
	}
	return &holding{s: s, lease: l, deadline: l.Deadline(asked)}, nil
}

// holding is one spell of work under a lease (or without one).
type holding struct {
	s        *Supervisor
	lease    lease.Lease
	deadline time.Time // the holder's own end of the lease
}

// run runs work under the lease, renewing it, and gives it up when work returns. It returns
// work's error and, when the renewals found the lease lost (and cancelled the work), why.
func (h *holding) run(ctx context.Context, work func(ctx context.Context) error) (err, lost error) {
	s := h.s
	wctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	if s.opts.Keeper == nil {
		s.set(func(st *Status) { st.State, st.Other = Running, lease.Lease{} })
		return work(wctx), nil
	}
	s.set(func(st *Status) { st.State, st.Lease, st.Other = Running, h.lease, lease.Lease{} })
	done := make(chan struct{})
	renewed := make(chan struct{})
	go func() {
		defer close(renewed)
		h.renew(wctx, cancel, done)
	}()
	err = work(lease.NewContext(wctx, h.lease))
	close(done)
	<-renewed
	if cause := context.Cause(wctx); errors.Is(cause, lease.ErrLost) {
		return err, cause
	}
	rctx, rcancel := context.WithTimeout(context.WithoutCancel(ctx), s.opts.TTL)
	_ = s.opts.Keeper.Release(rctx, h.lease) // on failure it expires
	rcancel()
	return err, nil
}

// renew renews the lease every third of its time to live until done is closed, and cancels
// the work with a cause matching lease.ErrLost when the lease is lost or could not be renewed
// before the holder's deadline.
func (h *holding) renew(ctx context.Context, cancel context.CancelCauseFunc, done <-chan struct{}) {
	s := h.s
	every := s.opts.TTL / 3
	next := time.Now().Add(every)
	for {
		wait := time.Until(next)
		if d := time.Until(h.deadline); d < wait {
			wait = d
		}
		t := time.NewTimer(max(wait, 0))
		select {
		case <-done:
			t.Stop()
			return
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
		if !time.Now().Before(h.deadline) {
			cancel(fmt.Errorf("%w: lease %q: not renewed before its deadline", lease.ErrLost, h.lease.Name))
			return
		}
		asked := time.Now()
		rctx, rcancel := context.WithDeadline(ctx, h.deadline)
		l, err := s.opts.Keeper.Renew(rctx, h.lease)
		rcancel()
		switch {
		case errors.Is(err, lease.ErrLost):
			cancel(err)
			return
		case err != nil:
			// Try again soon, until the deadline.
			next = time.Now().Add(max(s.opts.TTL/20, time.Millisecond))
			s.set(func(st *Status) { st.Err = err })
		default:
			h.deadline = l.Deadline(asked)
			next = asked.Add(every)
		}
	}
}
