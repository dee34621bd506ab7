package relay

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/annalsdb/annals/projection"
)

// writeCheckpoints writes the acknowledged prefix of w as the checkpoint, at most every
// CheckpointInterval and only when a published event joined it since the last write, until
// stop is done. The writes use ctx (the spell's lease context), so that a write under way
// finishes when the spell stops. It returns the checkpoint last stored and, when a write
// failed, its error (the spell fails with it too).
func (r *Relay) writeCheckpoints(stop, ctx context.Context, w *window, stored uint64) (uint64, error) {
	last := time.Time{}
	for {
		select {
		case <-w.dirtyc:
		case <-stop.Done():
			return stored, nil
		}
		if wait := r.opts.CheckpointInterval - time.Since(last); wait > 0 {
			t := time.NewTimer(wait)
			select {
			case <-t.C:
			case <-stop.Done():
				t.Stop()
				return stored, nil
			}
		}
		acked, dirty := w.takeDirty()
		r.stats.tick(time.Now())
		if !dirty || acked == stored {
			continue
		}
		last = time.Now()
		if err := r.cps.Update(ctx, r.cpName, 0, stored, acked, noop); err != nil {
			w.markDirty()
			if stop.Err() != nil {
				// The spell ends (the write may have been cut short, and may have landed):
				// the final write tries again.
				return stored, nil
			}
			err = fmt.Errorf("relay %q: write checkpoint %d: %w", r.opts.Name, acked, err)
			w.fail(err)
			return stored, err
		}
		stored = acked
		r.setStored(stored)
	}
}

// writeFinal writes the acknowledged prefix of w as the checkpoint when a published event
// joined it since the last write, with a context that outlives ctx's cancellation (for a few
// seconds) but keeps its lease, and returns the checkpoint stored. A failure is logged, not
// returned: the spell's own error is what Run reports, and this one only costs publishing
// again after a restart.
func (r *Relay) writeFinal(ctx context.Context, w *window, stored uint64) uint64 {
	acked, dirty := w.takeDirty()
	if !dirty || acked == stored {
		return stored
	}
	fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), finalWriteTimeout)
	defer cancel()
	err := r.cps.Update(fctx, r.cpName, 0, stored, acked, noop)
	if ce, ok := errors.AsType[*projection.CheckpointConflictError](err); ok && ce.Actual > stored && ce.Actual <= acked {
		// An earlier write of this spell that reported an error (cut short by the end of the
		// spell) landed: continue from it.
		err = r.cps.Update(fctx, r.cpName, 0, ce.Actual, acked, noop)
	}
	if err != nil {
		w.markDirty()
		r.log.Warn("relay: write the last checkpoint", "checkpoint", acked, "err", err)
		return stored
	}
	r.setStored(acked)
	return acked
}

func (r *Relay) setStored(cp uint64) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.mu.stored = cp
}
