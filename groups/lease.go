package groups

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/annalsdb/annals"
	"github.com/annalsdb/annals/lease"
	"github.com/annalsdb/annals/supervisor"
)

// This file makes a group active in one Manager at a time among those that share a lease
// keeper ([Options.Leases]): the group's supervisor holds the lease LeasePrefix + name, and
// while it holds it the group loads its state, reads and delivers; when the lease is lost the
// group forgets what it had read and stands by.

// fencer is a lease keeper that runs a write under the check of the lease its context
// carries (lease.Memory, and the stores that embed one or keep leases: memstore, filestore,
// pgstore).
type fencer interface {
	Fenced(ctx context.Context, write func() error) error
}

// supervise runs the group under its lease until ctx is done.
func (g *group) supervise(ctx context.Context) {
	err := g.sup.Run(ctx, g.work)
	if err != nil && ctx.Err() == nil {
		// A permanent error (a closed store, a corrupt checkpoint): the group stays standing
		// by in this manager.
		g.logger().Error("group: stopped taking the group's lease", "err", err)
	}
}

// work is one activation of the group, under the lease ctx carries: it loads the group's
// state, runs the reader and the loop until ctx is done or the lease is lost, and then writes
// the checkpoint (when the manager closes) or forgets what it had read (when the lease is
// lost).
func (g *group) work(ctx context.Context) error {
	g.mu.Lock()
	def := g.mu.def
	g.mu.Unlock()
	st, err := loadState(ctx, g.m.store, def, true)
	if err != nil {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		return fmt.Errorf("groups: load group %q: %w", def.Name, err)
	}
	rctx, lose := context.WithCancelCause(ctx)
	defer lose(nil)
	g.mu.Lock()
	if g.mu.ended != nil || ctx.Err() != nil {
		g.mu.Unlock()
		return ctx.Err()
	}
	g.activateLocked(st)
	g.mu.lose = lose
	g.dispatchAllLocked()
	g.mu.Unlock()
	g.logger().Info("group: active in this manager", "holder", g.m.holder, "checkpoint", st.start(&def))

	var wg sync.WaitGroup
	wg.Add(2)
	go func() { defer wg.Done(); g.read(rctx) }()
	go func() { defer wg.Done(); g.loop(rctx) }()
	<-rctx.Done()
	cause := context.Cause(rctx)
	lost := errors.Is(cause, lease.ErrLost)
	g.mu.Lock()
	g.mu.lose = nil
	if lost {
		g.deactivateLocked() // at once, before the goroutines have stopped
	}
	flush := g.mu.ended != nil && g.mu.flush
	g.mu.Unlock()
	wg.Wait()
	if !lost && flush {
		// The manager closes: write the checkpoint under the lease, before it is released.
		fctx, cancel := context.WithTimeout(context.WithoutCancel(rctx), 10*time.Second)
		g.parkPending(fctx)
		g.flush(fctx, true)
		cancel()
	}
	g.mu.Lock()
	g.resetLocked()
	g.mu.Unlock()
	if lost {
		g.logger().Warn("group: lost the group's lease; standing by", "err", cause)
		return cause
	}
	return ctx.Err()
}

// dispatchAllLocked delivers what can be delivered, to every consumer.
func (g *group) dispatchAllLocked() {
	if !g.pinned() {
		g.dispatchSharedLocked()
		return
	}
	for _, c := range g.mu.consumers {
		g.dispatchPinnedLocked(c)
	}
}

// loseLease ends the activation under way when err says its lease was lost (a fenced write
// refused).
func (g *group) loseLease(err error) {
	if !errors.Is(err, lease.ErrLost) {
		return
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.mu.lose != nil {
		g.mu.lose(err)
		g.deactivateLocked()
	}
}

// appendSystem appends events to one of the group's streams: under the check of the lease
// ctx carries when the keeper can run a write under it, and with that lease in ctx in any
// case (a store that checks leases refuses the write of a holder that lost it). done, when
// set, is called once the append succeeded, before the check of the lease ends.
func (g *group) appendSystem(ctx context.Context, done func(annals.AppendResult), stream string, expected annals.ExpectedRevision, events ...annals.Event) (annals.AppendResult, error) {
	var res annals.AppendResult
	write := func() error {
		var err error
		res, err = g.m.store.AppendSystem(ctx, stream, expected, events...)
		if err == nil && done != nil {
			done(res)
		}
		return err
	}
	if _, fenced := lease.FromContext(ctx); !fenced || g.m.fencer == nil {
		return res, write()
	}
	err := g.m.fencer.Fenced(ctx, write)
	g.loseLease(err)
	return res, err
}

// waitActive returns nil when the group is active here, its end when it ended, and an error
// matching [lease.ErrHeld] (a [*lease.HeldError] when the holder is known) when another
// manager holds it or this one cannot take it now. While this manager is about to become
// active (it has just started, holds the lease and loads the group, or lost the lease and asks
// again), it waits, until ctx is done.
func (g *group) waitActive(ctx context.Context) error {
	for {
		g.mu.Lock()
		pending, err := g.activeLocked()
		ch := g.mu.changed
		g.mu.Unlock()
		if !pending {
			return err
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("groups: group %q: waiting for the group's lease: %w", g.name, ctx.Err())
		case <-ch:
		}
	}
}

// activeLocked returns whether the group is about to become active here, and what
// [group.waitActive] returns.
func (g *group) activeLocked() (pending bool, err error) {
	switch {
	case g.mu.ended != nil:
		return false, g.mu.ended
	case g.mu.active || g.sup == nil:
		return false, nil
	}
	st := g.sup.Status()
	switch {
	case st.State == supervisor.StandingBy && st.Other.Holder != "":
		return false, fmt.Errorf("groups: group %q is active in another manager: %w", g.name, &lease.HeldError{Lease: st.Other})
	case st.State == supervisor.Retrying || st.State == supervisor.Failed:
		return false, fmt.Errorf("groups: group %q is not active in this manager, which cannot take the group's lease (%v): %w", g.name, st.Err, lease.ErrHeld)
	}
	return true, fmt.Errorf("groups: group %q is not active in this manager: %w", g.name, lease.ErrHeld)
}

// otherHolder returns the lease another manager was last seen to hold on the group (zero when
// none is known).
func (g *group) otherHolder() lease.Lease {
	if g.sup == nil {
		return lease.Lease{}
	}
	st := g.sup.Status()
	if st.State != supervisor.StandingBy {
		return lease.Lease{}
	}
	return st.Other
}

// holderLocked returns the holder of the group's lease when known: this manager's while the
// group is active here, and "" without leases.
func (g *group) holderLocked() string {
	switch {
	case g.sup == nil:
		return ""
	case g.mu.active:
		return g.m.holder
	}
	return g.otherHolder().Holder
}
