package relay

import (
	"context"
	"errors"
	"testing"
)

func newTestWindow(from uint64, maxN, maxBytes int) *window {
	return newWindow(from, maxN, maxBytes, func(error) {})
}

func pushed(t *testing.T, w *window, pos uint64, size int) *entry {
	t.Helper()
	e := &entry{position: pos, size: size}
	if err := w.push(context.Background(), e); err != nil {
		t.Fatalf("push %d: %v", pos, err)
	}
	return e
}

// The acknowledged prefix moves only over a contiguous run of answered events, skipped events
// included, and only acknowledgements make it dirty.
func TestWindowPrefix(t *testing.T) {
	w := newTestWindow(10, 100, 1<<20)
	w.skip(11)
	if acked, dirty := w.takeDirty(); acked != 11 || dirty {
		t.Fatalf("after a skip: acked %d dirty %v, want 11 false", acked, dirty)
	}
	e12 := pushed(t, w, 12, 1)
	w.skip(13)
	e14 := pushed(t, w, 14, 1)
	w.skip(15)
	w.done(e14, nil)
	if acked, dirty := w.takeDirty(); acked != 11 || dirty {
		t.Fatalf("14 acknowledged before 12: acked %d dirty %v, want 11 false", acked, dirty)
	}
	w.done(e12, nil)
	if acked, dirty := w.takeDirty(); acked != 15 || !dirty {
		t.Fatalf("12 and 14 acknowledged: acked %d dirty %v, want 15 true", acked, dirty)
	}
	w.done(e12, errors.New("late second answer")) // ignored
	if err := w.failure(); err != nil {
		t.Fatalf("a second answer failed the window: %v", err)
	}
	if st := w.snapshot(); st.inFlight != 0 || st.bytes != 0 {
		t.Fatalf("empty window: %+v", st)
	}
}

func TestWindowFailureBlocksPrefix(t *testing.T) {
	w := newTestWindow(0, 100, 1<<20)
	e1, e2 := pushed(t, w, 1, 1), pushed(t, w, 2, 1)
	w.done(e2, nil)
	boom := errors.New("boom")
	w.done(e1, boom)
	if acked, _ := w.takeDirty(); acked != 0 {
		t.Fatalf("acked %d past a failed event", acked)
	}
	if err := w.push(context.Background(), &entry{position: 3}); !errors.Is(err, boom) {
		t.Fatalf("push after a failure: %v, want the failure", err)
	}
	w.drain(context.Background()) // nothing pending: returns
}

func TestWindowRemove(t *testing.T) {
	w := newTestWindow(0, 100, 1<<20)
	e1 := pushed(t, w, 1, 5)
	e2 := pushed(t, w, 2, 7)
	w.remove(e2)
	w.done(e2, nil) // a done after Publish's error is ignored
	if st := w.snapshot(); st.inFlight != 1 || st.bytes != 5 {
		t.Fatalf("after remove: %+v, want one entry of 5 bytes", st)
	}
	w.done(e1, nil)
	if acked, _ := w.takeDirty(); acked != 1 {
		t.Fatalf("acked %d, want 1 (the removed event is not acknowledged)", acked)
	}
}

// Skipped events alone call for a checkpoint after skipGap positions.
func TestWindowSkipGap(t *testing.T) {
	w := newTestWindow(5, 100, 1<<20)
	w.skip(5 + skipGap - 1)
	if _, dirty := w.takeDirty(); dirty {
		t.Fatal("dirty before the gap")
	}
	w.skip(5 + skipGap)
	if acked, dirty := w.takeDirty(); !dirty || acked != 5+skipGap {
		t.Fatalf("at the gap: acked %d dirty %v", acked, dirty)
	}
	w.skip(5 + skipGap + 2) // the checkpoint write's own events
	if _, dirty := w.takeDirty(); dirty {
		t.Fatal("dirty again right after a checkpoint")
	}
}

// The bounds: count, bytes, and a message larger than the byte bound alone; push waits for
// room and gives up with ctx.
func TestWindowBounds(t *testing.T) {
	w := newTestWindow(0, 2, 10)
	e1 := pushed(t, w, 1, 4)
	pushed(t, w, 2, 4)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := w.push(ctx, &entry{position: 3, size: 1}); !errors.Is(err, context.Canceled) {
		t.Fatalf("push into a full window: %v, want context.Canceled", err)
	}
	w.done(e1, nil)
	if err := w.push(ctx, &entry{position: 3, size: 7}); !errors.Is(err, context.Canceled) {
		t.Fatalf("push past the byte bound: %v, want context.Canceled", err)
	}
	big := newTestWindow(0, 2, 10)
	pushed(t, big, 1, 100) // alone: fits
	if err := big.push(ctx, &entry{position: 2, size: 1}); !errors.Is(err, context.Canceled) {
		t.Fatalf("push beside a message over the byte bound: %v, want context.Canceled", err)
	}
}
