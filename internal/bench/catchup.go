package bench

import (
	"context"
	"fmt"
	"time"

	"github.com/annalsdb/annals"
	"github.com/annalsdb/annals/projection"
	"github.com/annalsdb/annals/supervisor"
)

// catchUpRatio is the catch-up target: under a lease, at least this share of the rate without
// one.
const catchUpRatio = 0.95

// catchUpWorkload runs catch-up on the read store: catch-ups of a projection runner over the
// whole store into a projection.Memory (a count per stream), from position 0, under the
// default lease (the Memory's) and without one (Supervision.NoLease: compare-and-set
// checkpoints only), one of each in turn (the first untimed, as a warm-up) until the
// configured duration has passed and each ran at least once timed. The result is the rate
// under the lease, beside the rate without it.
func (r *runner) catchUpWorkload(ctx context.Context) error {
	desc := descriptions[CatchUp]
	defer r.timed(r.cfg.Duration)()
	last, err := headPosition(ctx, r.reads)
	if err != nil {
		return r.failed(ctx, CatchUp, desc, err)
	}
	if _, _, err := catchUpOnce(ctx, r.reads, last, false); err != nil {
		return r.failed(ctx, CatchUp, desc, fmt.Errorf("warm-up: %w", err))
	}
	var leased, free time.Duration
	var events int64
	runs := 0
	start := time.Now()
	for runs == 0 || time.Since(start) < r.cfg.Duration {
		for _, noLease := range []bool{runs%2 == 1, runs%2 == 0} {
			d, n, err := catchUpOnce(ctx, r.reads, last, noLease)
			if err != nil {
				return r.failed(ctx, CatchUp, desc, err)
			}
			if noLease {
				free += d
			} else {
				leased += d
				events += n
			}
		}
		runs++
	}
	rate, base := float64(events)/leased.Seconds(), float64(events)/free.Seconds()
	r.add(Result{Workload: CatchUp, Description: desc, Rate: rate, Unit: "events/s", Ops: int64(runs),
		Events: events, Elapsed: leased, Stored: r.pop.stored,
		Baseline: &Figure{Label: "the same catch-ups without a lease, same run", Value: base, Unit: "events/s"},
		Target:   fmt.Sprintf("≥ %.2f × without a lease", catchUpRatio), Ratio: rate / base,
		Verdict: verdict(rate >= catchUpRatio*base)})
	return nil
}

// catchUpOnce runs a projection runner over s into a new projection.Memory until it has
// applied the log up to position last, and returns how long that took and how many events it
// applied. It returns an error when the runner did not run as asked (under a lease, or
// without one).
func catchUpOnce(ctx context.Context, s annals.Store, last uint64, noLease bool) (time.Duration, int64, error) {
	type counts map[string]int64
	m := projection.NewMemory(func() counts { return counts{} })
	run, err := projection.NewRunner(s, m, projection.Projection[counts]{
		Name: "bench-catch-up",
		Handle: func(_ context.Context, c counts, ev annals.RecordedEvent) error {
			c[ev.Stream]++
			return nil
		},
	}, &projection.RunnerOptions{Supervision: supervisor.Policy{NoLease: noLease}})
	if err != nil {
		return 0, 0, err
	}
	rctx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	start := time.Now()
	go func() { done <- run.Run(rctx) }()
	err = run.WaitFor(ctx, last)
	d := time.Since(start)
	var st projection.Status
	if err == nil {
		st, err = run.Status(ctx)
	}
	cancel()
	if rerr := <-done; err == nil && rerr != nil && rctx.Err() == nil {
		err = rerr
	}
	if err != nil {
		return 0, 0, fmt.Errorf("catch up: %w", err)
	}
	if leased := st.Supervisor.Lease.Token != 0; leased == noLease {
		return 0, 0, fmt.Errorf("catch up: ran with lease %+v, want a lease: %v", st.Supervisor.Lease, !noLease)
	}
	var cp uint64
	var n int64
	m.Read("bench-catch-up", func(c counts, at uint64) {
		cp = at
		for _, k := range c {
			n += k
		}
	})
	if cp != last {
		return 0, 0, fmt.Errorf("catch up: checkpoint %d, want %d", cp, last)
	}
	return d, n, nil
}

// headPosition returns the position of the last event of s, 0 when it is empty.
func headPosition(ctx context.Context, s annals.Store) (uint64, error) {
	for ev, err := range s.ReadAll(ctx, &annals.ReadOptions{Backwards: true, From: annals.End, Limit: 1}) {
		if err != nil {
			return 0, fmt.Errorf("read the head of the log: %w", err)
		}
		return ev.Position, nil
	}
	return 0, nil
}
