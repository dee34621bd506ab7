// Package testwait lets tests wait for a condition with a deadline instead of sleeping for a
// fixed time: a test that sleeps guesses how long the machine takes, and the guess fails on a
// loaded machine; a test that waits for a condition passes as soon as the condition holds and
// fails only when it never does.
//
// The deadline is [Base] times the factor in the environment variable ANNALS_WAIT_SCALE (a
// positive number, 1 when unset), so that a slow or loaded machine can be given more time
// without editing tests, and it always ends a little before the test binary's own -timeout,
// so that a wait that fails names what it waited for instead of ending in the binary's panic.
package testwait

import (
	"context"
	"os"
	"strconv"
	"testing"
	"time"
)

// Base is the deadline of a wait before scaling by ANNALS_WAIT_SCALE.
const Base = 30 * time.Second

// maxPoll is the longest pause between two checks of a condition.
const maxPoll = 25 * time.Millisecond

// Timeout returns how long a wait started now may last: [Base] times ANNALS_WAIT_SCALE, cut
// short so that it ends before the test's deadline (go test -timeout) when t has one. An
// ANNALS_WAIT_SCALE that is not a positive number fails the test.
func Timeout(t testing.TB) time.Duration {
	t.Helper()
	d := Base
	if v := os.Getenv("ANNALS_WAIT_SCALE"); v != "" {
		f, err := strconv.ParseFloat(v, 64)
		if err != nil || !(f > 0) {
			t.Fatalf("ANNALS_WAIT_SCALE=%q: want a positive number", v)
		}
		d = time.Duration(float64(d) * f)
	}
	if dt, ok := t.(interface{ Deadline() (time.Time, bool) }); ok {
		if end, ok := dt.Deadline(); ok {
			// Leave the binary time to report the failure and run cleanups.
			left := time.Until(end)
			left -= min(left/10, 5*time.Second)
			d = max(min(d, left), 0)
		}
	}
	return d
}

// Until calls cond until it returns true, pausing between calls (a millisecond at first, more
// as the wait goes on), and fails the test with t.Fatalf, naming what, when cond is still
// false after [Timeout]. Call it from the test's goroutine; cond runs on that goroutine.
func Until(t testing.TB, what string, cond func() bool) {
	t.Helper()
	UntilNil(t, what, func() error {
		if cond() {
			return nil
		}
		return errNotYet
	})
}

// UntilNil calls check until it returns nil, as [Until] does, and when the deadline passes
// fails the test with the last error check returned, so that the failure shows the state the
// test saw last.
func UntilNil(t testing.TB, what string, check func() error) {
	t.Helper()
	timeout := Timeout(t)
	if err := poll(timeout, check); err != nil {
		if err == errNotYet {
			t.Fatalf("waiting for %s: not done within %v", what, timeout)
		}
		t.Fatalf("waiting for %s: not done within %v: %v", what, timeout, err)
	}
}

// For calls cond until it returns true, as [Until] does, and reports whether it did within
// [Timeout]. Unlike Until it does not fail the test, so a goroutine other than the test's may
// call it (and report the failure with t.Errorf).
func For(t testing.TB, cond func() bool) bool {
	t.Helper()
	return poll(Timeout(t), func() error {
		if cond() {
			return nil
		}
		return errNotYet
	}) == nil
}

// poll calls check until it returns nil (then nil) or timeout has passed (then its last
// error), pausing between calls: a millisecond at first, more as the wait goes on.
func poll(timeout time.Duration, check func() error) error {
	deadline := time.Now().Add(timeout)
	for pause := time.Millisecond; ; pause = min(2*pause, maxPoll) {
		err := check()
		if err == nil || time.Now().After(deadline) {
			return err
		}
		time.Sleep(pause)
	}
}

// Recv receives a value from ch, failing the test, naming what, when none comes within
// [Timeout]. A closed channel yields its zero value, as a receive does.
func Recv[T any](t testing.TB, what string, ch <-chan T) T {
	t.Helper()
	timeout := Timeout(t)
	timer := time.NewTimer(timeout)
	defer timer.Stop()
	select {
	case v := <-ch:
		return v
	case <-timer.C:
		t.Fatalf("waiting for %s: nothing received within %v", what, timeout)
		panic("unreachable")
	}
}

// Context returns a context that ends after [Timeout] or when the test ends, for calls that
// wait by themselves (WaitFor, a subscription): a call that never returns then fails the
// test instead of hanging it.
func Context(t testing.TB) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), Timeout(t))
	t.Cleanup(cancel)
	return ctx
}

type notYet struct{}

func (notYet) Error() string { return "not yet" }

var errNotYet error = notYet{}
