package storetest

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"iter"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/annalsdb/annals"
	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
)

// eventSeq is what reads and subscriptions return.
type eventSeq = iter.Seq2[annals.RecordedEvent, error]

// contextT shortens the signatures of the functions that start subscriptions.
type contextT = context.Context

// waitTimeout bounds every wait for a condition (a subscription catching up, goroutines ending,
// maxAge taking effect). It is generous: a wait that succeeds ends as soon as its condition
// holds, so only a failing test pays it.
const waitTimeout = 15 * time.Second

// eventOpts compares recorded events field by field; Data and Metadata treat nil and empty
// alike, and Time is compared with time.Time.Equal.
var eventOpts = cmp.Options{cmpopts.EquateEmpty()}

// ignoreTime leaves Time out of a comparison of recorded events.
var ignoreTime = cmpopts.IgnoreFields(annals.RecordedEvent{}, "Time")

// jsonEqual compares json.RawMessage values by meaning, not spelling.
var jsonEqual = cmp.Comparer(func(a, b json.RawMessage) bool {
	if len(a) == 0 || len(b) == 0 {
		return len(a) == len(b)
	}
	var va, vb any
	if json.Unmarshal(a, &va) != nil || json.Unmarshal(b, &vb) != nil {
		return bytes.Equal(a, b)
	}
	return cmp.Equal(va, vb)
})

// counter makes event data distinct and readable.
var counter atomic.Int64

// newEvent returns an event of the given type with a fresh ID and distinct data.
func newEvent(eventType string) annals.Event {
	n := counter.Add(1)
	return annals.Event{
		ID:       annals.NewUUID(),
		Type:     eventType,
		Data:     fmt.Appendf(nil, `{"n":%d}`, n),
		Metadata: fmt.Appendf(nil, `{"seq":%d}`, n),
	}
}

// newEvents returns n events of the given type.
func newEvents(n int, eventType string) []annals.Event {
	out := make([]annals.Event, n)
	for i := range out {
		out[i] = newEvent(eventType)
	}
	return out
}

// recorded is the event the store should return for e at the given place (all but Time).
func recorded(stream string, rev, pos uint64, e annals.Event) annals.RecordedEvent {
	ct := e.ContentType
	if ct == "" {
		ct = annals.ContentTypeJSON
	}
	return annals.RecordedEvent{
		ID: e.ID, Stream: stream, Type: e.Type, ContentType: ct,
		Data: e.Data, Metadata: e.Metadata, Revision: rev, Position: pos,
	}
}

func mustAppend(t testing.TB, s annals.Store, stream string, expected annals.ExpectedRevision, events ...annals.Event) annals.AppendResult {
	t.Helper()
	res, err := s.Append(t.Context(), stream, expected, events...)
	if err != nil {
		t.Fatalf("Append(%q, %v, %d events): %v", stream, expected, len(events), err)
	}
	return res
}

func mustSetMetadata(t testing.TB, s annals.Store, stream string, expected annals.ExpectedRevision, meta annals.StreamMetadata) annals.AppendResult {
	t.Helper()
	res, err := s.SetMetadata(t.Context(), stream, expected, meta)
	if err != nil {
		t.Fatalf("SetMetadata(%q, %v): %v", stream, expected, err)
	}
	return res
}

func mustDelete(t testing.TB, s annals.Store, stream string, expected annals.ExpectedRevision) uint64 {
	t.Helper()
	res, err := s.Delete(t.Context(), stream, expected)
	if err != nil {
		t.Fatalf("Delete(%q, %v): %v", stream, expected, err)
	}
	return res.Position
}

func mustTombstone(t testing.TB, s annals.Store, stream string, expected annals.ExpectedRevision) uint64 {
	t.Helper()
	res, err := s.Tombstone(t.Context(), stream, expected)
	if err != nil {
		t.Fatalf("Tombstone(%q, %v): %v", stream, expected, err)
	}
	return res.Position
}

// collect ranges over seq to its end and returns what it yielded before its first error, and
// that error. It reports a failure when seq yields anything after an error: a failed read
// yields one error and stops.
func collect[T any](t testing.TB, seq iter.Seq2[T, error]) ([]T, error) {
	t.Helper()
	var out []T
	var first error
	for v, err := range seq {
		switch {
		case first != nil:
			t.Errorf("sequence yielded (%v, %v) after the error %v; want it to stop at the error", v, err, first)
		case err != nil:
			first = err
		default:
			out = append(out, v)
		}
	}
	return out, first
}

func readAll(t testing.TB, s annals.Store, opts *annals.ReadOptions) []annals.RecordedEvent {
	t.Helper()
	evs, err := collect(t, s.ReadAll(t.Context(), opts))
	if err != nil {
		t.Fatalf("ReadAll(%+v): %v", opts, err)
	}
	return evs
}

func readStream(t testing.TB, s annals.Store, stream string, opts *annals.ReadOptions) []annals.RecordedEvent {
	t.Helper()
	evs, err := collect(t, s.ReadStream(t.Context(), stream, opts))
	if err != nil {
		t.Fatalf("ReadStream(%q, %+v): %v", stream, opts, err)
	}
	return evs
}

func listStreams(t testing.TB, s annals.Store, opts *annals.ListOptions) []annals.StreamInfo {
	t.Helper()
	infos, err := collect(t, s.ListStreams(t.Context(), opts))
	if err != nil {
		t.Fatalf("ListStreams(%+v): %v", opts, err)
	}
	return infos
}

// snapshot is everything a caller can see of a store, to check that a failed call changed
// nothing.
type snapshot struct {
	Log     []annals.RecordedEvent
	Streams []annals.StreamInfo
}

func takeSnapshot(t testing.TB, s annals.Store) snapshot {
	t.Helper()
	return snapshot{Log: readAll(t, s, nil), Streams: listStreams(t, s, nil)}
}

// checkUnchanged reports a failure when s differs from before.
func checkUnchanged(t testing.TB, s annals.Store, before snapshot) {
	t.Helper()
	after := takeSnapshot(t, s)
	if sameEvents(before.Log, after.Log) && slices.Equal(before.Streams, after.Streams) {
		return
	}
	if diff := cmp.Diff(before, after, eventOpts); diff != "" {
		t.Errorf("store changed by a failed call (-before +after):\n%s", diff)
	}
}

// sameEvents reports whether a and b are equal as [eventOpts] compares them. It is the fast
// path of the comparisons of long lists of events: go-cmp explains differences but is slow.
func sameEvents(a, b []annals.RecordedEvent) bool {
	return slices.EqualFunc(a, b, func(x, y annals.RecordedEvent) bool {
		return x.ID == y.ID && x.Stream == y.Stream && x.Type == y.Type && x.ContentType == y.ContentType &&
			bytes.Equal(x.Data, y.Data) && bytes.Equal(x.Metadata, y.Metadata) &&
			x.Revision == y.Revision && x.Position == y.Position && x.Time.Equal(y.Time)
	})
}

// diffEvents returns a description of the differences between want and got, or "" when they
// are equal (Time included).
func diffEvents(want, got []annals.RecordedEvent) string {
	if sameEvents(want, got) {
		return ""
	}
	return cmp.Diff(want, got, eventOpts)
}

// checkErr reports a failure unless err matches want (nil for success).
func checkErr(t testing.TB, what string, err, want error) bool {
	t.Helper()
	if want == nil {
		if err != nil {
			t.Errorf("%s: got error %v, want success", what, err)
			return false
		}
		return true
	}
	if !errors.Is(err, want) {
		t.Errorf("%s: got error %v, want one matching %v", what, err, want)
		return false
	}
	return true
}

// checkConflict reports a failure unless err is a [*annals.WrongExpectedVersionError] with the
// given stream, expected and actual revision.
func checkConflict(t testing.TB, what string, err error, stream string, expected, actual annals.ExpectedRevision) {
	t.Helper()
	if !errors.Is(err, annals.ErrWrongExpectedVersion) {
		t.Errorf("%s: got error %v, want one matching %v", what, err, annals.ErrWrongExpectedVersion)
		return
	}
	wev, ok := errors.AsType[*annals.WrongExpectedVersionError](err)
	if !ok {
		t.Errorf("%s: error %v matches ErrWrongExpectedVersion but is no *WrongExpectedVersionError", what, err)
		return
	}
	want := annals.WrongExpectedVersionError{Stream: stream, Expected: expected, Actual: actual}
	if stream == "" {
		want.Stream = wev.Stream // the stream named is not checked
	}
	if diff := cmp.Diff(want, *wev); diff != "" {
		t.Errorf("%s: wrong expected version error differs (-want +got):\n%s", what, diff)
	}
}

// ids returns the IDs of events.
func ids(evs []annals.RecordedEvent) []annals.UUID {
	out := make([]annals.UUID, len(evs))
	for i, e := range evs {
		out[i] = e.ID
	}
	return out
}

func revisions(evs []annals.RecordedEvent) []uint64 {
	var out []uint64
	for _, e := range evs {
		out = append(out, e.Revision)
	}
	return out
}

func positions(evs []annals.RecordedEvent) []uint64 {
	var out []uint64
	for _, e := range evs {
		out = append(out, e.Position)
	}
	return out
}

// seq returns lo, lo+1, …, hi (empty when hi < lo); rseq the same backwards.
func seq(lo, hi uint64) []uint64 {
	var out []uint64
	for i := lo; i <= hi && hi != ^uint64(0); i++ {
		out = append(out, i)
	}
	return out
}

func rseq(hi, lo uint64) []uint64 {
	out := seq(lo, hi)
	slices.Reverse(out)
	return out
}

// checkTimes reports a failure unless the times of evs, in log order, are UTC and never
// decrease.
func checkTimes(t testing.TB, evs []annals.RecordedEvent) {
	t.Helper()
	for i, e := range evs {
		if e.Time.Location() != time.UTC {
			t.Errorf("event at position %d: Time %v is in %v, want UTC", e.Position, e.Time, e.Time.Location())
		}
		if i > 0 && e.Time.Before(evs[i-1].Time) {
			t.Errorf("event at position %d: Time %v is before that of position %d (%v); want it never to decrease", e.Position, e.Time, evs[i-1].Position, evs[i-1].Time)
		}
	}
}

// collector runs one subscription in a goroutine and keeps what it delivers. Its owner stops it
// with stop, which cancels the subscription's context and waits for the goroutine to end.
type collector struct {
	cancel context.CancelFunc
	done   chan struct{}

	mu struct {
		sync.Mutex
		events  []annals.RecordedEvent
		err     error
		ended   bool
		changed chan struct{} // closed and replaced on every event, and on the end
	}
}

// subscribe starts a collector on seq, built with a context that stop cancels.
func subscribe(t testing.TB, seq func(ctx contextT) eventSeq) *collector {
	t.Helper()
	ctx, cancel := context.WithCancel(t.Context())
	c := &collector{cancel: cancel, done: make(chan struct{})}
	c.mu.changed = make(chan struct{})
	it := seq(ctx)
	go func() {
		defer close(c.done)
		for ev, err := range it {
			c.mu.Lock()
			switch {
			case c.mu.ended:
				c.mu.err = fmt.Errorf("subscription yielded (%v, %v) after its error %w", ev.Position, err, c.mu.err)
			case err != nil:
				c.mu.err = err
				c.mu.ended = true
			default:
				c.mu.events = append(c.mu.events, ev)
			}
			close(c.mu.changed)
			c.mu.changed = make(chan struct{})
			c.mu.Unlock()
		}
		c.mu.Lock()
		c.mu.ended = true
		close(c.mu.changed)
		c.mu.changed = make(chan struct{})
		c.mu.Unlock()
	}()
	t.Cleanup(c.stop)
	return c
}

// stop cancels the subscription and waits for its goroutine to end.
func (c *collector) stop() {
	c.cancel()
	<-c.done
}

// state returns a copy of what was delivered so far, the error and whether the subscription
// ended.
func (c *collector) state() ([]annals.RecordedEvent, error, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.Clone(c.mu.events), c.mu.err, c.mu.ended
}

// waitFor waits until cond holds for what the subscription delivered, or d passes. It returns
// whether cond held.
func (c *collector) waitFor(d time.Duration, cond func(evs []annals.RecordedEvent, err error, ended bool) bool) bool {
	timer := time.NewTimer(d)
	defer timer.Stop()
	for {
		c.mu.Lock()
		ok := cond(c.mu.events, c.mu.err, c.mu.ended)
		changed := c.mu.changed
		c.mu.Unlock()
		if ok {
			return true
		}
		select {
		case <-changed:
		case <-timer.C:
			return false
		}
	}
}

// waitCount waits until the subscription delivered at least n events, and fails the test if
// it does not within waitTimeout.
func (c *collector) waitCount(t testing.TB, what string, n int) {
	t.Helper()
	ok := c.waitFor(waitTimeout, func(evs []annals.RecordedEvent, err error, ended bool) bool {
		return len(evs) >= n || ended
	})
	evs, err, ended := c.state()
	if !ok || len(evs) < n {
		t.Fatalf("%s: delivered %d events (ended %v, error %v), want at least %d within %v", what, len(evs), ended, err, n, waitTimeout)
	}
}

// waitEnd waits until the subscription ended and returns its error; it fails the test if it
// does not end within waitTimeout.
func (c *collector) waitEnd(t testing.TB, what string) error {
	t.Helper()
	if !c.waitFor(waitTimeout, func(_ []annals.RecordedEvent, _ error, ended bool) bool { return ended }) {
		t.Fatalf("%s: subscription did not end within %v", what, waitTimeout)
	}
	<-c.done
	_, err, _ := c.state()
	return err
}
