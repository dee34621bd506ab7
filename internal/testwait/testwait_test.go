package testwait

import (
	"fmt"
	"runtime"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// fakeT records a failure and ends its goroutine, as t.Fatalf does.
type fakeT struct {
	testing.TB
	failed string
}

func (f *fakeT) Helper() {}

func (f *fakeT) Fatalf(format string, args ...any) {
	f.failed = fmt.Sprintf(format, args...)
	runtime.Goexit()
}

// run runs fn with f on a goroutine of its own (Fatalf ends it) and waits for it.
func run(f *fakeT, fn func()) {
	done := make(chan struct{})
	go func() {
		defer close(done)
		fn()
	}()
	<-done
}

func TestUntilReturnsOnceTrue(t *testing.T) {
	var calls atomic.Int64
	Until(t, "the third call", func() bool { return calls.Add(1) == 3 })
	if got := calls.Load(); got != 3 {
		t.Errorf("cond called %d times, want 3", got)
	}
}

func TestUntilFailsAfterTheDeadline(t *testing.T) {
	t.Setenv("ANNALS_WAIT_SCALE", "0.001")
	f := &fakeT{TB: t}
	start := time.Now()
	run(f, func() { Until(f, "never", func() bool { return false }) })
	if !strings.Contains(f.failed, "waiting for never") {
		t.Errorf("failure %q, want it to name what it waited for", f.failed)
	}
	if el := time.Since(start); el < 30*time.Millisecond {
		t.Errorf("gave up after %v, want at least the scaled deadline of 30ms", el)
	}
}

func TestUntilNilShowsTheLastError(t *testing.T) {
	t.Setenv("ANNALS_WAIT_SCALE", "0.001")
	f := &fakeT{TB: t}
	run(f, func() { UntilNil(f, "x", func() error { return fmt.Errorf("state 7") }) })
	if !strings.Contains(f.failed, "state 7") {
		t.Errorf("failure %q, want the last error", f.failed)
	}
}

func TestRecv(t *testing.T) {
	ch := make(chan int, 1)
	ch <- 5
	if got := Recv(t, "a value", ch); got != 5 {
		t.Errorf("got %d, want 5", got)
	}
	t.Setenv("ANNALS_WAIT_SCALE", "0.001")
	f := &fakeT{TB: t}
	run(f, func() { Recv(f, "a value", make(chan int)) })
	if !strings.Contains(f.failed, "waiting for a value") {
		t.Errorf("failure %q, want it to name what it waited for", f.failed)
	}
}

func TestTimeout(t *testing.T) {
	for _, tt := range []struct {
		env  string
		want time.Duration
		bad  bool
	}{
		{"", Base, false},
		{"2", 2 * Base, false},
		{"0.5", Base / 2, false},
		{"0", 0, true},
		{"-1", 0, true},
		{"x", 0, true},
	} {
		t.Setenv("ANNALS_WAIT_SCALE", tt.env)
		f := &fakeT{TB: t}
		var got time.Duration
		run(f, func() { got = Timeout(f) })
		if tt.bad {
			if f.failed == "" {
				t.Errorf("ANNALS_WAIT_SCALE=%q: accepted, want a failure", tt.env)
			}
			continue
		}
		// The test binary's -timeout may cut the wait short; it never lengthens it.
		if f.failed != "" || got > tt.want || got <= 0 {
			t.Errorf("ANNALS_WAIT_SCALE=%q: Timeout %v (failure %q), want at most %v", tt.env, got, f.failed, tt.want)
		}
	}
}

func TestForReportsWithoutFailing(t *testing.T) {
	var calls atomic.Int64
	if !For(t, func() bool { return calls.Add(1) == 3 }) || calls.Load() != 3 {
		t.Errorf("For: cond called %d times, want true after 3", calls.Load())
	}
	t.Setenv("ANNALS_WAIT_SCALE", "0.001")
	f := &fakeT{TB: t}
	start := time.Now()
	var got bool
	run(f, func() { got = For(f, func() bool { return false }) })
	if got || f.failed != "" {
		t.Errorf("For of a condition that never holds: %v, failure %q; want false and no failure", got, f.failed)
	}
	if el := time.Since(start); el < 30*time.Millisecond {
		t.Errorf("gave up after %v, want at least the scaled deadline of 30ms", el)
	}
}
