package process

import "time"

// Clock is the time as a [Runner] sees it: what deadlines are compared with, and what the
// runner waits on until the next one is due. The default is the system clock; a test gives
// a fake one to make a deadline of an hour come due without waiting an hour.
//
// Deadlines count from the time the store recorded the event that set them, so a fake clock
// should start near the store's clock (time.Now()) and only move forwards.
type Clock interface {
	// Now returns the current time.
	Now() time.Time
	// WakeAt returns a channel that receives a value once the clock reads t or later (at
	// once if it already does). The runner asks for a new channel only when it needs to wake
	// earlier than the one it holds would, and drops channels it no longer waits on without
	// telling the clock.
	WakeAt(t time.Time) <-chan time.Time
}

// systemClock is the [Clock] of a now function (time.Now by default) and real timers.
type systemClock struct{ now func() time.Time }

func (c systemClock) Now() time.Time { return c.now() }

func (c systemClock) WakeAt(t time.Time) <-chan time.Time {
	return time.NewTimer(max(t.Sub(c.now()), 0)).C
}

// maxWait bounds how long the runner waits on the clock at once, so that a wall clock set
// forwards makes the deadlines due within maxWait of their time.
const maxWait = time.Hour

// alarm is the wait of a runner's loop for the next deadline: it keeps the channel it holds
// for as long as that channel rings no later than needed.
type alarm struct {
	clock Clock
	at    time.Time // when c rings
	c     <-chan time.Time
}

// until returns a channel that receives once the clock reads next (or maxWait from now,
// whichever comes first); a zero next means no deadline is pending. It may ring earlier
// than asked (the loop then looks again), never later.
func (a *alarm) until(next time.Time) <-chan time.Time {
	now := a.clock.Now()
	want := now.Add(maxWait)
	if !next.IsZero() && next.Before(want) {
		want = next
	}
	if a.c == nil || a.at.After(want) {
		a.at, a.c = want, a.clock.WakeAt(want)
	}
	return a.c
}

// rang records that the channel of until has rung.
func (a *alarm) rang() { a.c = nil }
