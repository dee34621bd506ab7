package testwait

import (
	"context"
	"time"
)

// Pace waits until the n-th item (from 0) of a workload that runs at rate items per second
// from start is due, and returns true then (at once when it is already due), or false when
// ctx ends first. Tests and benchmarks that drive a load at a given rate call it before each
// item: it keeps the schedule (a late item does not push the later ones back), and it is a
// schedule, not a guess at how long something takes.
func Pace(ctx context.Context, start time.Time, n int64, rate int) bool {
	d := time.Until(start.Add(time.Duration(n) * time.Second / time.Duration(rate)))
	if d <= 0 {
		return ctx.Err() == nil
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}
