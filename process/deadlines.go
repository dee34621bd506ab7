package process

import (
	"context"
	"time"

	"github.com/annalsdb/annals"
	"github.com/annalsdb/annals/internal/traceprop"
)

// pendingKey names a pending deadline among those of all instances.
type pendingKey struct{ instance, name string }

// fireDue handles the deadlines that are due, earliest first. A deadline comes due only after
// every event the manager follows that was recorded at or before its time (the order of the
// log, not of the runner's arrival: a runner restarted late still sees the payment that came
// before the deadline); held reports a due deadline waiting for such events.
func (r *Runner[S]) fireDue(ctx context.Context) (held bool, err error) {
	for {
		now := r.clock.Now()
		r.mu.Lock()
		var due *pendingKey
		var dueAt Deadline
		for k, d := range r.mu.pending {
			if !d.At.After(now) && (due == nil || d.At.Before(dueAt.At)) {
				due, dueAt = &k, d
			}
		}
		position := r.mu.position
		r.mu.Unlock()
		if due == nil {
			return false, nil
		}
		next, ok, err := r.nextFollowed(ctx, position+1)
		if err != nil {
			return false, err
		}
		if ok && !next.Time.After(dueAt.At) {
			return true, nil
		}
		key := "deadline:" + dueAt.Name + "@" + dueAt.At.UTC().Format(time.RFC3339Nano)
		sctx, span := traceprop.StartDeadline(ctx, r.m.Name, dueAt.Name, dueAt.CorrelationID, dueAt.CausationID)
		err = r.handle(sctx, due.instance, input{Deadline: &dueAt}, key)
		traceprop.End(span, err)
		if err != nil {
			return false, err
		}
		r.mu.Lock()
		r.mu.inputs++
		r.mu.Unlock()
	}
}

// nextFollowed returns the first event from position from on that the manager follows (not
// one of its journals), if there is one.
func (r *Runner[S]) nextFollowed(ctx context.Context, from uint64) (annals.RecordedEvent, bool, error) {
	for ev, err := range r.store.ReadAll(ctx, &annals.ReadOptions{From: from, Filter: r.m.Filter}) {
		if err != nil {
			return annals.RecordedEvent{}, false, err
		}
		if r.followed(ev) {
			return ev, true, nil
		}
	}
	return annals.RecordedEvent{}, false, nil
}

// nextDeadline returns the time of the earliest pending deadline, or the zero time when none
// is pending.
func (r *Runner[S]) nextDeadline() time.Time {
	r.mu.Lock()
	defer r.mu.Unlock()
	var next time.Time
	for _, d := range r.mu.pending {
		if next.IsZero() || d.At.Before(next) {
			next = d.At
		}
	}
	return next
}
