package projection

import (
	"context"
	"errors"
	"fmt"

	"github.com/annalsdb/annals"
)

// Rebuild replays the whole log into a new generation of the read model while the active one
// keeps serving queries and Run keeps it up to date. Once the new generation has caught up
// with the active one, Rebuild switches to it atomically ([Store.Activate]: queries read the
// new generation, the old one is dropped) and Run continues on it. progress, when not nil, is
// called after every batch with the new generation's status, on Rebuild's goroutine.
//
// Rebuild returns when the switch is done, or with an error, after which the active
// generation is unchanged and the partial new one is dropped: a [*HandlerError] when a handler
// fails, ctx's error, or the stores' errors. It returns an error matching [ErrBusy] if a
// rebuild is already running. Run need not be running: the rebuild then switches once it has
// applied the log as it was when it started.
func (r *Runner[Tx]) Rebuild(ctx context.Context, progress func(Status)) error {
	r.mu.Lock()
	if r.mu.rebuilding {
		r.mu.Unlock()
		return fmt.Errorf("%w: projection %q: Rebuild", ErrBusy, r.p.Name)
	}
	r.mu.rebuilding = true
	r.notifyLocked()
	r.mu.Unlock()
	defer func() {
		r.mu.Lock()
		r.mu.rebuilding = false
		r.notifyLocked()
		r.mu.Unlock()
	}()
	if err := r.load(ctx); err != nil {
		return err
	}
	// Another replica may have activated a generation this runner has not seen yet.
	active, err := r.target.Generation(ctx, r.p.Name)
	if err != nil {
		return fmt.Errorf("projection %q: read generation: %w", r.p.Name, err)
	}
	r.mu.Lock()
	gen := max(r.mu.gen, active) + 1
	r.mu.Unlock()
	err = r.rebuild(ctx, gen, progress)
	if err != nil {
		// Leave nothing of the failed generation behind (a crash may still do; the next
		// rebuild resets it first), unless another runner writes it (a checkpoint that
		// moved): that generation is the other's to finish or drop.
		if errors.Is(err, ErrCheckpointMoved) {
			return fmt.Errorf("projection %q: rebuild generation %d: %w", r.p.Name, gen, err)
		}
		if rerr := r.target.Reset(context.WithoutCancel(ctx), r.p.Name, gen); rerr != nil {
			err = errors.Join(err, fmt.Errorf("drop the unfinished generation: %w", rerr))
		}
		return fmt.Errorf("projection %q: rebuild generation %d: %w", r.p.Name, gen, err)
	}
	return nil
}

func (r *Runner[Tx]) rebuild(ctx context.Context, gen uint64, progress func(Status)) error {
	if err := r.target.Reset(ctx, r.p.Name, gen); err != nil {
		return fmt.Errorf("reset: %w", err)
	}
	last, err := r.lastMatching(ctx)
	if err != nil {
		return err
	}
	var cp, stored uint64 // applied, and committed to the target
	report := func(state State) {
		if progress != nil {
			h := max(last, cp)
			progress(Status{Name: r.p.Name, Generation: gen, State: state, Position: cp, Head: h, LagEvents: h - cp, Rebuilding: state == StateRebuilding})
		}
	}
	report(StateRebuilding)
	if last > 0 {
		f := startFeed(ctx, r.events, 1, r.p.Filter, r.max)
		var buf []annals.RecordedEvent
		for cp < last {
			batch, err := f.next(ctx, buf)
			if err != nil {
				f.close()
				return fmt.Errorf("subscribe to the log: %w", err)
			}
			committed, err := r.commit(ctx, gen, stored, batch, 0)
			if err != nil {
				f.close()
				return err
			}
			cp = batch[len(batch)-1].Position
			if committed {
				stored = cp
			}
			report(StateRebuilding)
			buf = batch
		}
		f.close()
	}
	// Switch: hold off the live applier, apply what it applied since, activate.
	r.applyMu.Lock()
	defer r.applyMu.Unlock()
	r.mu.Lock()
	liveCp := r.mu.checkpoint
	r.mu.Unlock()
	if liveCp > cp {
		batch := make([]annals.RecordedEvent, 0, r.max)
		flush := func() error {
			if len(batch) == 0 {
				return nil
			}
			committed, err := r.commit(ctx, gen, stored, batch, 0)
			if err != nil {
				return err
			}
			cp = batch[len(batch)-1].Position
			if committed {
				stored = cp
			}
			batch = batch[:0]
			return nil
		}
		for ev, err := range r.events.ReadAll(ctx, &annals.ReadOptions{From: cp + 1, Until: liveCp + 1, Filter: r.p.Filter}) {
			if err != nil {
				return fmt.Errorf("read the log: %w", err)
			}
			if batch = append(batch, ev); len(batch) == r.max {
				if err := flush(); err != nil {
					return err
				}
			}
		}
		if err := flush(); err != nil {
			return err
		}
	}
	if err := r.target.Activate(ctx, r.p.Name, gen); err != nil {
		return fmt.Errorf("activate: %w", err)
	}
	r.mu.Lock()
	r.mu.gen, r.mu.checkpoint, r.mu.stored = gen, cp, stored
	if r.mu.skip != 0 && r.mu.skip <= cp {
		r.mu.skip = 0
	}
	if r.mu.isolateUntil <= cp {
		r.mu.isolateUntil = 0
	}
	if r.mu.failed != nil && r.mu.failed.Event.Position <= cp {
		r.clearFailureLocked()
	}
	r.notifyLocked()
	r.mu.Unlock()
	report(StateLive)
	return nil
}
