package relay

import (
	"context"
	"sync"
	"time"

	"github.com/annalsdb/annals"
)

// entry is one event of a [window]: published and waiting for its acknowledgement, or
// answered but behind one that still waits.
type entry struct {
	stream   string
	revision uint64
	position uint64
	id       annals.UUID
	time     time.Time
	size     int
	// covers is the last position the entry stands for: its own, and those of the skipped
	// events that followed it.
	covers uint64
	state  entryState
}

type entryState uint8

const (
	pending entryState = iota // published, done not called yet
	acked                     // done(nil)
	failed                    // done(err)
	removed                   // Publish returned an error: done is not expected
)

// window is the part of the log one spell of a relay has published and not yet seen
// acknowledged, in position order. Its methods are safe for concurrent use: push, skip and
// remove are called by the spell's publishing goroutine, done by the publisher's callbacks,
// takeDirty by the checkpoint writer, snapshot by Status.
type window struct {
	maxN, maxBytes int
	// fail cancels the spell (its subscription, its publishes, its checkpoint writer); called
	// once, with the first failure, under mu (it does not block).
	cancel context.CancelCauseFunc
	// wake has room for one signal: an entry was answered or the window failed. Only the
	// spell's goroutine waits on it.
	wake chan struct{}
	// dirtyc has room for one signal: a published event joined the acknowledged prefix.
	dirtyc chan struct{}
	mu     struct {
		sync.Mutex
		// buf[head:] are the entries, oldest first.
		buf     []*entry
		head    int
		bytes   int
		pending int
		// acked is the position of the last event of the contiguous answered prefix: every
		// event up to it was acknowledged or skipped.
		acked uint64
		// dirty is set when a published event joins the prefix, and cleared by takeDirty.
		dirty bool
		// taken is the prefix takeDirty last returned as dirty (the start of the window at
		// first).
		taken uint64
		err   error
	}
}

// skipGap is how far skipped events alone move the prefix before they call for a checkpoint.
const skipGap = 10_000

func newWindow(from uint64, maxN, maxBytes int, cancel context.CancelCauseFunc) *window {
	w := &window{maxN: maxN, maxBytes: maxBytes, cancel: cancel,
		wake: make(chan struct{}, 1), dirtyc: make(chan struct{}, 1)}
	w.mu.acked, w.mu.taken = from, from
	return w
}

func signal(c chan struct{}) {
	select {
	case c <- struct{}{}:
	default:
	}
}

// roomLocked reports whether an entry of size bytes fits: the window is empty (a message
// larger than the byte bound goes alone), or both bounds hold with it.
func (w *window) roomLocked(size int) bool {
	n := w.lenLocked()
	return n == 0 || n < w.maxN && w.mu.bytes+size <= w.maxBytes
}

// push waits until e fits, then appends it as pending. It returns the window's failure, or
// ctx's error, instead when one comes first.
func (w *window) push(ctx context.Context, e *entry) error {
	for {
		w.mu.Lock()
		if err := w.mu.err; err != nil {
			w.mu.Unlock()
			return err
		}
		if w.roomLocked(e.size) {
			e.covers, e.state = e.position, pending
			w.appendLocked(e)
			w.mu.bytes += e.size
			w.mu.pending++
			w.mu.Unlock()
			return nil
		}
		w.mu.Unlock()
		select {
		case <-w.wake:
		case <-ctx.Done():
			return context.Cause(ctx)
		}
	}
}

// appendLocked appends e. When the array's end is reached and a prefix was popped from its
// front, the entries move back to the start, so that the array is reused while the window
// slides instead of growing.
func (w *window) appendLocked(e *entry) {
	if len(w.mu.buf) == cap(w.mu.buf) && w.mu.head > 0 {
		n := copy(w.mu.buf, w.mu.buf[w.mu.head:])
		clear(w.mu.buf[n:])
		w.mu.buf, w.mu.head = w.mu.buf[:n], 0
	}
	w.mu.buf = append(w.mu.buf, e)
}

// lenLocked is the number of entries.
func (w *window) lenLocked() int { return len(w.mu.buf) - w.mu.head }

// skip records an event that is not published: it is answered at once. It makes the window
// dirty only when skipped events alone have moved the prefix skipGap positions past the last
// checkpoint taken, so that a restart does not read them all again while the relay's own
// checkpoint writes (an event or two each) cannot make it write again.
func (w *window) skip(position uint64) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.lenLocked() > 0 {
		w.mu.buf[len(w.mu.buf)-1].covers = position
		return
	}
	w.mu.acked = position
	if position-w.mu.taken >= skipGap && !w.mu.dirty {
		w.mu.dirty = true
		signal(w.dirtyc)
	}
}

// done records the broker's answer for e. A second answer, or one for a removed entry, is
// ignored. The first failure cancels the spell.
func (w *window) done(e *entry, err error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if e.state != pending {
		return
	}
	w.mu.pending--
	if err != nil {
		e.state = failed
		w.failLocked(err)
		signal(w.wake)
		return
	}
	e.state = acked
	moved := false
	for w.lenLocked() > 0 && w.mu.buf[w.mu.head].state == acked {
		first := w.mu.buf[w.mu.head]
		w.mu.acked = first.covers
		w.mu.bytes -= first.size
		w.mu.buf[w.mu.head] = nil
		w.mu.head++
		moved = true
	}
	if w.lenLocked() == 0 {
		w.mu.buf, w.mu.head = w.mu.buf[:0], 0
	}
	if moved {
		w.mu.dirty = true
		signal(w.dirtyc)
	}
	signal(w.wake)
}

// remove takes back e, the last entry pushed, when Publish refused it (done will not be
// called for it).
func (w *window) remove(e *entry) {
	w.mu.Lock()
	defer w.mu.Unlock()
	n := len(w.mu.buf)
	if e.state != pending || w.lenLocked() == 0 || w.mu.buf[n-1] != e {
		return
	}
	e.state = removed
	w.mu.pending--
	w.mu.bytes -= e.size
	w.mu.buf[n-1] = nil
	w.mu.buf = w.mu.buf[:n-1]
}

// fail records err as the window's failure, when it has none yet, and cancels the spell.
func (w *window) fail(err error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.failLocked(err)
	signal(w.wake)
}

func (w *window) failLocked(err error) {
	if w.mu.err == nil && err != nil {
		w.mu.err = err
		w.cancel(err)
	}
}

// failure returns the window's first failure, nil when none.
func (w *window) failure() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.mu.err
}

// takeDirty returns the acknowledged prefix and whether a published event joined it since the
// last call, and clears that mark.
func (w *window) takeDirty() (acked uint64, dirty bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	acked, dirty = w.mu.acked, w.mu.dirty
	w.mu.dirty = false
	if dirty {
		w.mu.taken = acked
	}
	return acked, dirty
}

// markDirty sets the mark again after a checkpoint write that failed.
func (w *window) markDirty() {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.mu.dirty = true
}

// drain waits until no entry waits for its answer, or ctx is done.
func (w *window) drain(ctx context.Context) {
	for {
		w.mu.Lock()
		n := w.mu.pending
		w.mu.Unlock()
		if n == 0 {
			return
		}
		select {
		case <-w.wake:
		case <-ctx.Done():
			return
		}
	}
}

// windowState is what Status shows of a window.
type windowState struct {
	acked    uint64
	inFlight int
	bytes    int
	oldest   time.Time // of the first event not acknowledged; zero when none
}

func (w *window) snapshot() windowState {
	w.mu.Lock()
	defer w.mu.Unlock()
	s := windowState{acked: w.mu.acked, inFlight: w.mu.pending, bytes: w.mu.bytes}
	if w.lenLocked() > 0 {
		s.oldest = w.mu.buf[w.mu.head].time
	}
	return s
}
