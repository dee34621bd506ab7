package relay

import (
	"context"
	"testing"

	"github.com/annalsdb/annals"
	"github.com/annalsdb/annals/internal/testwait"
	"github.com/annalsdb/annals/memstore"
)

// A broker that never answers: the relay publishes up to MaxInFlight events and waits, its
// window holding no more.
func TestRelayBoundsInFlightCount(t *testing.T) {
	s := memstore.New(nil)
	t.Cleanup(func() { s.Close() })
	evs := appendUser(t, s, 500, 5)
	p := newTestPub(t)
	p.stall()
	opts := testOptions(t, "bp")
	opts.MaxInFlight = 16
	r := newRelay(t, s, p, opts)
	start(t, r)
	testwait.Until(t, "16 events in flight", func() bool { return r.Status().InFlight == 16 })
	// More events, and a pass of the relay over them had there been room: still 16.
	more := appendUser(t, s, 100, 5)
	testwait.Until(t, "the relay knows the new head", func() bool { return r.Status().Head >= more[len(more)-1].Position })
	if got := len(p.logged()); got != 16 {
		t.Errorf("published %d messages with none answered, want MaxInFlight 16", got)
	}
	win := r.mu.win // read under no lock: only to inspect its size below, under its own lock
	win.mu.Lock()
	held := win.lenLocked()
	win.mu.Unlock()
	if held > 16 {
		t.Errorf("window holds %d entries, want at most 16", held)
	}
	if out, _ := p.peaks(); out > 16 {
		t.Errorf("peak in flight %d, want at most 16", out)
	}
	p.release()
	waitAcked(t, p, append(evs, more...))
	if out, _ := p.peaks(); out > 16 {
		t.Errorf("peak in flight %d, want at most 16", out)
	}
}

// The byte bound: what is in flight never exceeds MaxInFlightBytes, except a single message
// larger than it, which goes alone.
func TestRelayBoundsInFlightBytes(t *testing.T) {
	s := memstore.New(nil)
	t.Cleanup(func() { s.Close() })
	ctx := context.Background()
	var evs []annals.RecordedEvent
	appendSized := func(stream string, size int) {
		data := make([]byte, size)
		for i := range data {
			data[i] = 'x'
		}
		ev := annals.Event{ID: annals.NewUUID(), Type: "Blob", Data: append(append([]byte(`"`), data...), '"'), ContentType: "application/json"}
		res, err := s.Append(ctx, stream, annals.Any, ev)
		if err != nil {
			t.Fatal(err)
		}
		evs = append(evs, annals.RecordedEvent{ID: ev.ID, Stream: stream, Position: res.Position})
	}
	for i := range 40 {
		appendSized("blob-a", 1000)
		if i == 20 {
			appendSized("blob-b", 20_000) // larger than the bound
		}
	}
	p := newTestPub(t)
	// Answers come only when the test lets them, a batch at a time.
	p.stall()
	opts := testOptions(t, "bytes")
	opts.MaxInFlightBytes = 5000
	r := newRelay(t, s, p, opts)
	start(t, r)
	for {
		testwait.Until(t, "messages waiting for answers, or all answered", func() bool {
			return p.heldCount() > 0 || len(p.ackedIDs()) == len(evs)
		})
		if len(p.ackedIDs()) == len(evs) {
			break
		}
		p.release()
		p.stall()
	}
	maxOut := 0
	for _, st := range p.states() {
		maxOut = max(maxOut, st.out)
		if st.bytes > opts.MaxInFlightBytes && st.out != 1 {
			t.Errorf("%d bytes in flight in %d messages, want at most %d unless one message goes alone", st.bytes, st.out, opts.MaxInFlightBytes)
		}
	}
	if maxOut < 2 {
		t.Errorf("peak of %d messages in flight: the byte bound let only one through at a time", maxOut)
	}
}
