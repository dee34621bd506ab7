package storetest

import (
	"slices"
	"strings"
	"testing"

	"github.com/annalsdb/annals"
	"github.com/google/go-cmp/cmp"
)

// systemStore is a store under test that appends to system streams.
type systemStore interface {
	annals.Store
	annals.SystemAppender
}

// openSystem opens a store and skips the test when it does not implement
// [annals.SystemAppender] (the network client, for one).
func openSystem(t *testing.T, open func(t *testing.T) annals.Store) systemStore {
	t.Helper()
	s := open(t)
	ss, ok := s.(systemStore)
	if !ok {
		t.Skipf("%T does not implement annals.SystemAppender", s)
	}
	return ss
}

func mustAppendSystem(t testing.TB, s annals.SystemAppender, stream string, expected annals.ExpectedRevision, events ...annals.Event) annals.AppendResult {
	t.Helper()
	res, err := s.AppendSystem(t.Context(), stream, expected, events...)
	if err != nil {
		t.Fatalf("AppendSystem(%q, %v, %d events): %v", stream, expected, len(events), err)
	}
	return res
}

// testSystemAppend checks [annals.SystemAppender.AppendSystem], on the stores that implement
// it: an append to a system stream behaves as [annals.Store.Append] does for a user stream, the
// stream id must be a system one, and system streams stay out of ListStreams.
func testSystemAppend(t *testing.T, open func(t *testing.T) annals.Store) {
	const stream = "$group-checkpoint-x"

	t.Run("ReadBack", func(t *testing.T) {
		s := openSystem(t, open)
		sub := subscribe(t, func(ctx contextT) eventSeq { return s.SubscribeStream(ctx, stream, nil) })
		subAll := subscribe(t, func(ctx contextT) eventSeq { return s.SubscribeAll(ctx, nil) })
		mustAppend(t, s, "cart-1", annals.NoStream, newEvent("ItemAdded"))
		evs := newEvents(3, "$group-checkpoint")
		res := mustAppendSystem(t, s, stream, annals.NoStream, evs[:2]...)
		if got, want := res, (annals.AppendResult{Revision: 1, Position: 3}); got != want {
			t.Errorf("AppendSystem: got %+v, want %+v", got, want)
		}
		mustAppend(t, s, "cart-1", annals.Exact(0), newEvent("ItemAdded"))
		res = mustAppendSystem(t, s, stream, annals.Exact(1), evs[2])
		if got, want := res, (annals.AppendResult{Revision: 2, Position: 5}); got != want {
			t.Errorf("AppendSystem again: got %+v, want %+v", got, want)
		}
		settings := newEvent("$group-created")
		if got, want := mustAppendSystem(t, s, "$groups", annals.Any, settings), (annals.AppendResult{Revision: 0, Position: 6}); got != want {
			t.Errorf("AppendSystem to $groups: got %+v, want %+v", got, want)
		}

		want := []annals.RecordedEvent{
			recorded(stream, 0, 2, evs[0]), recorded(stream, 1, 3, evs[1]), recorded(stream, 2, 5, evs[2]),
		}
		got := readStream(t, s, stream, nil)
		if diff := cmp.Diff(want, got, eventOpts, ignoreTime); diff != "" {
			t.Errorf("ReadStream (-want +got):\n%s", diff)
		}
		checkTimes(t, got)
		back := readStream(t, s, stream, &annals.ReadOptions{Backwards: true, From: annals.End})
		if got, want := revisions(back), rseq(2, 0); !slices.Equal(got, want) {
			t.Errorf("ReadStream backwards: revisions %v, want %v", got, want)
		}
		all := readAll(t, s, nil)
		if got, want := positions(all), seq(1, 6); !slices.Equal(got, want) {
			t.Errorf("ReadAll: positions %v, want %v", got, want)
		}
		var inAll []annals.RecordedEvent
		for _, e := range all {
			if e.Stream == stream {
				inAll = append(inAll, e)
			}
		}
		if diff := cmp.Diff(want, inAll, eventOpts, ignoreTime); diff != "" {
			t.Errorf("ReadAll, the events of %s (-want +got):\n%s", stream, diff)
		}
		filtered := readAll(t, s, &annals.ReadOptions{Filter: &annals.Filter{Categories: []string{"$group"}}})
		if diff := cmp.Diff(want, filtered, eventOpts, ignoreTime); diff != "" {
			t.Errorf("ReadAll of category $group (-want +got):\n%s", diff)
		}

		sub.waitCount(t, "SubscribeStream", 3)
		subAll.waitCount(t, "SubscribeAll", 6)
		delivered, err, _ := sub.state()
		if diff := cmp.Diff(want, delivered, eventOpts, ignoreTime); err != nil || diff != "" {
			t.Errorf("SubscribeStream (error %v) (-want +got):\n%s", err, diff)
		}
		if delivered, err, _ := subAll.state(); err != nil || !sameEvents(all, delivered) {
			t.Errorf("SubscribeAll (error %v) (-ReadAll +delivered):\n%s", err, cmp.Diff(all, delivered, eventOpts))
		}
		late := subscribe(t, func(ctx contextT) eventSeq {
			return s.SubscribeStream(ctx, stream, &annals.SubscribeOptions{From: 1})
		})
		late.waitCount(t, "SubscribeStream from revision 1", 2)
		if delivered, err, _ := late.state(); err != nil || !sameEvents(got[1:], delivered) {
			t.Errorf("SubscribeStream from revision 1 (error %v) (-want +got):\n%s", err, cmp.Diff(got[1:], delivered, eventOpts))
		}
	})

	t.Run("ExpectedRevision", func(t *testing.T) {
		s := openSystem(t, open)
		before := takeSnapshot(t, s)
		_, err := s.AppendSystem(t.Context(), stream, annals.StreamExists, newEvent("C"))
		checkConflict(t, "AppendSystem(StreamExists) to no stream", err, stream, annals.StreamExists, annals.NoStream)
		_, err = s.AppendSystem(t.Context(), stream, annals.Exact(0), newEvent("C"))
		checkConflict(t, "AppendSystem(Exact(0)) to no stream", err, stream, annals.Exact(0), annals.NoStream)
		checkUnchanged(t, s, before)

		mustAppendSystem(t, s, stream, annals.NoStream, newEvents(2, "C")...)
		before = takeSnapshot(t, s)
		_, err = s.AppendSystem(t.Context(), stream, annals.NoStream, newEvent("C"))
		checkConflict(t, "AppendSystem(NoStream) to an existing stream", err, stream, annals.NoStream, annals.Exact(1))
		_, err = s.AppendSystem(t.Context(), stream, annals.Exact(0), newEvent("C"))
		checkConflict(t, "AppendSystem(Exact(0)) after revision 1", err, stream, annals.Exact(0), annals.Exact(1))
		checkUnchanged(t, s, before)
		if got, want := mustAppendSystem(t, s, stream, annals.Exact(1), newEvent("C")), (annals.AppendResult{Revision: 2, Position: 3}); got != want {
			t.Errorf("AppendSystem(Exact(1)): got %+v, want %+v", got, want)
		}
		if got, want := mustAppendSystem(t, s, stream, annals.StreamExists, newEvent("C")), (annals.AppendResult{Revision: 3, Position: 4}); got != want {
			t.Errorf("AppendSystem(StreamExists): got %+v, want %+v", got, want)
		}
	})

	t.Run("Idempotency", func(t *testing.T) {
		s := openSystem(t, open)
		a, b, c := newEvent("A"), newEvent("B"), newEvent("C")
		mustAppendSystem(t, s, stream, annals.NoStream, a)
		mustAppend(t, s, "other-1", annals.NoStream, newEvent("X"))
		first := mustAppendSystem(t, s, stream, annals.Exact(0), b, c)
		before := takeSnapshot(t, s)
		for _, e := range []annals.ExpectedRevision{annals.Exact(0), annals.Any} {
			res, err := s.AppendSystem(t.Context(), stream, e, b, c)
			if err != nil || res != first {
				t.Errorf("repeated AppendSystem(%v): got %+v, %v; want the first result %+v", e, res, err, first)
			}
		}
		checkUnchanged(t, s, before)
		_, err := s.AppendSystem(t.Context(), stream, annals.Exact(0), b, newEvent("Y"))
		checkConflict(t, "partly repeated AppendSystem", err, stream, annals.Exact(0), annals.Exact(2))
		checkUnchanged(t, s, before)
	})

	t.Run("InvalidStream", func(t *testing.T) {
		s := openSystem(t, open)
		mustAppend(t, s, "cart-1", annals.NoStream, newEvent("ItemAdded"))
		mustAppendSystem(t, s, stream, annals.NoStream, newEvent("C"))
		before := takeSnapshot(t, s)
		for _, id := range []string{"cart-1", "cart-2", annals.MetaStream("cart-1"), annals.MetaStream(stream), annals.AllStream, "",
			"$group-\x01", "$" + strings.Repeat("g", annals.MaxStreamIDLength)} {
			for _, e := range []annals.ExpectedRevision{annals.Any, annals.NoStream} {
				_, err := s.AppendSystem(t.Context(), id, e, newEvent("C"))
				checkErr(t, "AppendSystem("+quote(id)+")", err, annals.ErrInvalidArgument)
			}
		}
		for _, id := range []string{stream, "$groups", "$group-parked-x"} {
			_, err := s.Append(t.Context(), id, annals.Any, newEvent("C"))
			checkErr(t, "Append("+quote(id)+")", err, annals.ErrInvalidArgument)
		}
		_, err := s.AppendSystem(t.Context(), stream, annals.Any)
		checkErr(t, "AppendSystem with no events", err, annals.ErrInvalidArgument)
		_, err = s.AppendSystem(t.Context(), stream, annals.Any, annals.Event{})
		checkErr(t, "AppendSystem of an event without a type", err, annals.ErrInvalidArgument)
		_, err = s.AppendSystem(t.Context(), stream, annals.Exact(7), annals.Event{Type: "C", Data: make([]byte, annals.DefaultMaxEventSize+1)})
		checkErr(t, "AppendSystem of an event over the size limit, with a wrong revision", err, annals.ErrTooLarge)
		checkUnchanged(t, s, before)
	})

	t.Run("NotListed", func(t *testing.T) {
		s := openSystem(t, open)
		mustAppend(t, s, "cart-1", annals.NoStream, newEvent("ItemAdded"))
		mustAppendSystem(t, s, stream, annals.NoStream, newEvent("C"))
		mustAppendSystem(t, s, "$groups", annals.NoStream, newEvent("C"))
		mustAppend(t, s, "cart-2", annals.NoStream, newEvent("ItemAdded"))
		want := []annals.StreamInfo{{Stream: "cart-1", Revision: 0, Count: 1}, {Stream: "cart-2", Revision: 0, Count: 1}}
		for _, o := range []*annals.ListOptions{nil, {Limit: 1}, {Prefix: "$"}, {Prefix: "$group"}, {After: "$"}} {
			got := listStreams(t, s, o)
			var w []annals.StreamInfo
			for _, info := range want {
				if strings.HasPrefix(info.Stream, optPrefix(o)) && info.Stream > optAfter(o) {
					w = append(w, info)
				}
			}
			if o != nil && o.Limit > 0 {
				w = w[:min(len(w), o.Limit)]
			}
			if diff := cmp.Diff(w, got); diff != "" {
				t.Errorf("ListStreams(%+v) (-want +got):\n%s", o, diff)
			}
		}
		if evs := readStream(t, s, "$groups", nil); len(evs) != 1 {
			t.Errorf("ReadStream($groups): got %d events, want 1", len(evs))
		}
	})
}

func optPrefix(o *annals.ListOptions) string {
	if o == nil {
		return ""
	}
	return o.Prefix
}

func optAfter(o *annals.ListOptions) string {
	if o == nil {
		return ""
	}
	return o.After
}
