package storetest

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/annalsdb/annals"
	"github.com/google/go-cmp/cmp"
)

func testSubscribe(t *testing.T, open func(t *testing.T) annals.Store) {
	t.Run("CatchUpThenLive", func(t *testing.T) { testCatchUpThenLive(t, open(t)) })

	t.Run("EndsOnTombstone", func(t *testing.T) {
		s := open(t)
		c := subscribe(t, func(ctx contextT) eventSeq { return s.SubscribeStream(ctx, "t-1", nil) })
		never := subscribe(t, func(ctx contextT) eventSeq { return s.SubscribeStream(ctx, "t-2", nil) })
		all := subscribe(t, func(ctx contextT) eventSeq { return s.SubscribeAll(ctx, nil) })
		mustAppend(t, s, "t-1", annals.NoStream, newEvents(2, "E")...)
		c.waitCount(t, "SubscribeStream", 2)
		mustTombstone(t, s, "t-1", annals.Any)
		mustTombstone(t, s, "t-2", annals.Any)
		checkErr(t, "SubscribeStream when the stream is tombstoned", c.waitEnd(t, "SubscribeStream"), annals.ErrStreamDeleted)
		if evs, _, _ := c.state(); len(evs) != 2 {
			t.Errorf("SubscribeStream: got %d events, want 2", len(evs))
		}
		checkErr(t, "SubscribeStream of a stream never written, when it is tombstoned", never.waitEnd(t, "SubscribeStream"), annals.ErrStreamDeleted)
		// $all goes on, with the system events.
		all.waitCount(t, "SubscribeAll", 4)
		evs, _, _ := all.state()
		if evs[2].Type != annals.TombstoneEventType || evs[3].Type != annals.TombstoneEventType {
			t.Errorf("SubscribeAll: got types %q and %q, want two %q", evs[2].Type, evs[3].Type, annals.TombstoneEventType)
		}
	})

	t.Run("SoftDeleteWhileSubscribed", func(t *testing.T) {
		s := open(t)
		c := subscribe(t, func(ctx contextT) eventSeq { return s.SubscribeStream(ctx, "sd-1", nil) })
		mustAppend(t, s, "sd-1", annals.NoStream, newEvents(2, "E")...)
		c.waitCount(t, "SubscribeStream", 2)
		mustDelete(t, s, "sd-1", annals.Any)
		mustAppend(t, s, "sd-1", annals.NoStream, newEvent("E"))
		c.waitCount(t, "SubscribeStream", 3)
		evs, err, _ := c.state()
		if err != nil {
			t.Errorf("SubscribeStream across a soft delete: %v", err)
		}
		if diff := cmp.Diff(seq(0, 2), revisions(evs)); diff != "" {
			t.Errorf("SubscribeStream across a soft delete, revisions (-want +got):\n%s", diff)
		}
	})

	t.Run("SlowConsumerDoesNotBlockWriters", func(t *testing.T) {
		s := open(t)
		mustAppend(t, s, "slow-1", annals.NoStream, newEvent("E"))
		const appends, size = 40, 10
		const want = 1 + appends*size
		ctx, cancel := context.WithCancel(t.Context())
		release := make(chan struct{})
		var got []annals.RecordedEvent
		consumed := make(chan struct{})
		go func() {
			defer close(consumed)
			for e, err := range s.SubscribeAll(ctx, nil) {
				if err != nil {
					return
				}
				if len(got) == 0 {
					select { // stuck on the first event until released
					case <-release:
					case <-ctx.Done():
						return
					}
				}
				if got = append(got, e); len(got) == want {
					return
				}
			}
		}()
		written := make(chan error, 1)
		go func() {
			for range appends {
				if _, err := s.Append(ctx, "slow-2", annals.Any, newEvents(size, "E")...); err != nil {
					written <- err
					return
				}
			}
			written <- nil
		}()
		t.Cleanup(func() {
			cancel()
			<-consumed
			<-written
		})
		select {
		case err := <-written:
			written <- err // for the cleanup
			if err != nil {
				t.Fatalf("Append while a subscriber is stuck: %v", err)
			}
		case <-time.After(waitTimeout):
			t.Fatalf("appends did not finish within %v while a subscriber was stuck", waitTimeout)
		}
		close(release)
		select {
		case <-consumed:
		case <-time.After(waitTimeout):
			t.Fatalf("the subscriber did not get all %d events within %v", want, waitTimeout)
		}
		if diff := diffEvents(readAll(t, s, nil), got); diff != "" {
			t.Errorf("slow SubscribeAll vs ReadAll (-ReadAll +subscription):\n%s", diff)
		}
	})
}

// testCatchUpThenLive runs subscriptions of every kind while writers append, some started
// before the writers and some while they run, and checks each against the final log: every
// matching event, in order, with no gap and no duplicate.
func testCatchUpThenLive(t *testing.T, s annals.Store) {
	for i := range 20 {
		evs := make([]annals.Event, 10)
		for j := range evs {
			evs[j] = newEvent([]string{"A", "B"}[j%2])
		}
		mustAppend(t, s, []string{"sub-1", "sub-2", "other-1", "sub-1"}[i%4], annals.Any, evs...)
	}
	const midPos, midRev = 77, 33
	startPos := uint64(len(readAll(t, s, nil)))

	type spec struct {
		name    string
		start   func(ctx contextT) eventSeq
		match   func(e annals.RecordedEvent) bool
		fromEnd bool
		early   bool // started before the writers
	}
	stream := func(name string) func(annals.RecordedEvent) bool {
		return func(e annals.RecordedEvent) bool { return e.Stream == name }
	}
	specs := []spec{
		{name: "All", early: true,
			start: func(ctx contextT) eventSeq { return s.SubscribeAll(ctx, nil) },
			match: func(annals.RecordedEvent) bool { return true }},
		{name: "AllLate",
			start: func(ctx contextT) eventSeq { return s.SubscribeAll(ctx, &annals.SubscribeOptions{}) },
			match: func(annals.RecordedEvent) bool { return true }},
		{name: "AllFromCheckpoint",
			start: func(ctx contextT) eventSeq { return s.SubscribeAll(ctx, &annals.SubscribeOptions{From: midPos}) },
			match: func(e annals.RecordedEvent) bool { return e.Position >= midPos }},
		{name: "AllFromEnd", fromEnd: true, early: true,
			start: func(ctx contextT) eventSeq { return s.SubscribeAll(ctx, &annals.SubscribeOptions{From: annals.End}) },
			match: func(annals.RecordedEvent) bool { return true }},
		{name: "AllCategory",
			start: func(ctx contextT) eventSeq {
				return s.SubscribeAll(ctx, &annals.SubscribeOptions{Filter: &annals.Filter{Categories: []string{"sub"}}})
			},
			match: func(e annals.RecordedEvent) bool { return annals.Category(e.Stream) == "sub" }},
		{name: "AllType", early: true,
			start: func(ctx contextT) eventSeq {
				return s.SubscribeAll(ctx, &annals.SubscribeOptions{Filter: &annals.Filter{EventTypes: []string{"B"}}})
			},
			match: func(e annals.RecordedEvent) bool { return e.Type == "B" }},
		{name: "AllPrefixFromCheckpoint",
			start: func(ctx contextT) eventSeq {
				return s.SubscribeAll(ctx, &annals.SubscribeOptions{From: midPos, Filter: &annals.Filter{StreamPrefixes: []string{"sub-1"}}})
			},
			match: func(e annals.RecordedEvent) bool { return e.Position >= midPos && e.Stream == "sub-1" }},
		{name: "AllCategoryFromEnd", fromEnd: true, early: true,
			start: func(ctx contextT) eventSeq {
				return s.SubscribeAll(ctx, &annals.SubscribeOptions{From: annals.End, Filter: &annals.Filter{Categories: []string{"sub"}}})
			},
			match: func(e annals.RecordedEvent) bool { return annals.Category(e.Stream) == "sub" }},
		{name: "Stream", early: true,
			start: func(ctx contextT) eventSeq { return s.SubscribeStream(ctx, "sub-1", nil) },
			match: stream("sub-1")},
		{name: "StreamLate",
			start: func(ctx contextT) eventSeq { return s.SubscribeStream(ctx, "sub-2", nil) },
			match: stream("sub-2")},
		{name: "StreamFromCheckpoint",
			start: func(ctx contextT) eventSeq {
				return s.SubscribeStream(ctx, "sub-1", &annals.SubscribeOptions{From: midRev})
			},
			match: func(e annals.RecordedEvent) bool { return e.Stream == "sub-1" && e.Revision >= midRev }},
		{name: "StreamFromEnd", fromEnd: true, early: true,
			start: func(ctx contextT) eventSeq {
				return s.SubscribeStream(ctx, "sub-1", &annals.SubscribeOptions{From: annals.End})
			},
			match: stream("sub-1")},
		{name: "StreamFilter",
			start: func(ctx contextT) eventSeq {
				return s.SubscribeStream(ctx, "sub-2", &annals.SubscribeOptions{Filter: &annals.Filter{EventTypes: []string{"A"}}})
			},
			match: func(e annals.RecordedEvent) bool { return e.Stream == "sub-2" && e.Type == "A" }},
		{name: "StreamNotYetWritten", early: true,
			start: func(ctx contextT) eventSeq { return s.SubscribeStream(ctx, "late-1", nil) },
			match: stream("late-1")},
	}
	cs := make([]*collector, len(specs))
	for i, sp := range specs {
		if sp.early {
			cs[i] = subscribe(t, sp.start)
		}
	}
	// A subscription from the end starts at some moment we cannot see; append markers until
	// each has delivered one, so that all the writers' events come after its start.
	deadline := time.Now().Add(waitTimeout)
	for i, sp := range specs {
		if !sp.fromEnd {
			continue
		}
		for !cs[i].waitFor(20*time.Millisecond, func(evs []annals.RecordedEvent, _ error, ended bool) bool { return len(evs) > 0 || ended }) {
			if time.Now().After(deadline) {
				t.Fatalf("%s: no marker delivered within %v", sp.name, waitTimeout)
			}
			mustAppend(t, s, "sub-1", annals.Any, newEvent("Marker"))
		}
	}

	const writers, appends = 4, 30
	var wg sync.WaitGroup
	for w := range writers {
		wg.Go(func() {
			for i := range appends {
				evs := make([]annals.Event, 1+(w+i)%3)
				for j := range evs {
					evs[j] = newEvent([]string{"A", "B"}[(i+j)%2])
				}
				stream := []string{"sub-1", "sub-2", "other-1", "late-1"}[(w+i)%4]
				if _, err := s.Append(t.Context(), stream, annals.Any, evs...); err != nil {
					t.Errorf("writer %d: Append: %v", w, err)
					return
				}
			}
		})
	}
	for i, sp := range specs {
		if !sp.early {
			cs[i] = subscribe(t, sp.start)
		}
	}
	wg.Wait()

	final := readAll(t, s, nil)
	for i, sp := range specs {
		t.Run(sp.name, func(t *testing.T) {
			c := cs[i]
			var want []annals.RecordedEvent
			first := uint64(0)
			if sp.fromEnd {
				evs, _, _ := c.state()
				if len(evs) == 0 {
					t.Fatalf("no event delivered")
				}
				first = evs[0].Position
				if first <= startPos {
					t.Errorf("first event delivered from the end has position %d, want one after %d (the end when it started)", first, startPos)
				}
			}
			for _, e := range final {
				if e.Position >= first && sp.match(e) {
					want = append(want, e)
				}
			}
			c.waitCount(t, sp.name, len(want))
			c.stop()
			got, err, _ := c.state()
			if !errors.Is(err, context.Canceled) {
				t.Errorf("subscription ended with %v, want context.Canceled", err)
			}
			if diff := diffEvents(want, got); diff != "" {
				t.Errorf("delivered events differ from the log (-log +delivered):\n%s", diff)
			}
		})
	}
}

func testCancel(t *testing.T, open func(t *testing.T) annals.Store) {
	s := open(t)
	for range 10 {
		mustAppend(t, s, "c-1", annals.Any, newEvents(100, "E")...)
	}

	t.Run("AlreadyCanceled", func(t *testing.T) {
		ctx, cancel := context.WithCancel(t.Context())
		cancel()
		for name, seq := range map[string]eventSeq{
			"ReadStream":      s.ReadStream(ctx, "c-1", nil),
			"ReadAll":         s.ReadAll(ctx, nil),
			"SubscribeStream": s.SubscribeStream(ctx, "c-1", nil),
			"SubscribeAll":    s.SubscribeAll(ctx, nil),
		} {
			evs, err := collect(t, seq)
			if checkErr(t, name, err, context.Canceled) && len(evs) != 0 {
				t.Errorf("%s: got %d events with a canceled context, want none", name, len(evs))
			}
		}
		_, err := collect(t, s.ListStreams(ctx, nil))
		checkErr(t, "ListStreams", err, context.Canceled)
		_, _, err = s.GetMetadata(ctx, "c-1")
		checkErr(t, "GetMetadata", err, context.Canceled)
	})

	t.Run("MidRead", func(t *testing.T) {
		// The read must notice the cancellation before it has yielded all 1000 events.
		for name, seq := range map[string]func(ctx context.Context) eventSeq{
			"ReadStream": func(ctx context.Context) eventSeq { return s.ReadStream(ctx, "c-1", nil) },
			"ReadStreamBackwards": func(ctx context.Context) eventSeq {
				return s.ReadStream(ctx, "c-1", &annals.ReadOptions{Backwards: true, From: annals.End})
			},
			"ReadAll":         func(ctx context.Context) eventSeq { return s.ReadAll(ctx, nil) },
			"SubscribeStream": func(ctx context.Context) eventSeq { return s.SubscribeStream(ctx, "c-1", nil) },
			"SubscribeAll":    func(ctx context.Context) eventSeq { return s.SubscribeAll(ctx, nil) },
		} {
			ctx, cancel := context.WithCancel(t.Context())
			n := 0
			var last error
			for _, err := range seq(ctx) {
				if err != nil {
					last = err
					continue
				}
				if n++; n == 1 {
					cancel()
				}
			}
			cancel()
			checkErr(t, fmt.Sprintf("%s canceled after the first event (%d events read)", name, n), last, context.Canceled)
		}
	})

	t.Run("NoLeaks", func(t *testing.T) {
		base := runtime.NumGoroutine()
		var cs []*collector
		for i := range 10 {
			var c *collector
			if i%2 == 0 {
				c = subscribe(t, func(ctx contextT) eventSeq { return s.SubscribeAll(ctx, &annals.SubscribeOptions{From: 990}) })
			} else {
				c = subscribe(t, func(ctx contextT) eventSeq { return s.SubscribeStream(ctx, "c-1", &annals.SubscribeOptions{From: 990}) })
			}
			cs = append(cs, c)
		}
		for i, c := range cs {
			c.waitCount(t, fmt.Sprintf("subscription %d", i), 10) // caught up and waiting live
		}
		for i, c := range cs {
			c.stop()
			if _, err, _ := c.state(); !errors.Is(err, context.Canceled) {
				t.Errorf("subscription %d ended with %v, want context.Canceled", i, err)
			}
		}
		deadline := time.Now().Add(waitTimeout)
		for delay := time.Millisecond; runtime.NumGoroutine() > base; delay = min(2*delay, 50*time.Millisecond) {
			if time.Now().After(deadline) {
				buf := make([]byte, 1<<20)
				buf = buf[:runtime.Stack(buf, true)]
				t.Fatalf("%d goroutines %v after the subscriptions ended, want at most %d as before they started; all goroutines:\n%s",
					runtime.NumGoroutine(), waitTimeout, base, buf)
			}
			time.Sleep(delay)
		}
	})
}

func testClose(t *testing.T, open func(t *testing.T) annals.Store) {
	s := open(t)
	mustAppend(t, s, "x-1", annals.NoStream, newEvent("E"))
	all := subscribe(t, func(ctx contextT) eventSeq { return s.SubscribeAll(ctx, nil) })
	one := subscribe(t, func(ctx contextT) eventSeq { return s.SubscribeStream(ctx, "x-1", nil) })
	all.waitCount(t, "SubscribeAll", 1)
	one.waitCount(t, "SubscribeStream", 1)
	if err := s.Close(); err != nil {
		t.Errorf("Close: %v", err)
	}
	checkErr(t, "SubscribeAll at Close", all.waitEnd(t, "SubscribeAll"), annals.ErrClosed)
	checkErr(t, "SubscribeStream at Close", one.waitEnd(t, "SubscribeStream"), annals.ErrClosed)
	if err := s.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}

	ctx := t.Context()
	_, err := s.Append(ctx, "x-1", annals.Any, newEvent("E"))
	checkErr(t, "Append", err, annals.ErrClosed)
	_, err = s.SetMetadata(ctx, "x-1", annals.Any, annals.StreamMetadata{})
	checkErr(t, "SetMetadata", err, annals.ErrClosed)
	_, _, err = s.GetMetadata(ctx, "x-1")
	checkErr(t, "GetMetadata", err, annals.ErrClosed)
	_, err = s.Delete(ctx, "x-1", annals.Any)
	checkErr(t, "Delete", err, annals.ErrClosed)
	_, err = s.Tombstone(ctx, "x-1", annals.Any)
	checkErr(t, "Tombstone", err, annals.ErrClosed)
	for name, seq := range map[string]eventSeq{
		"ReadStream":      s.ReadStream(ctx, "x-1", nil),
		"ReadAll":         s.ReadAll(ctx, nil),
		"SubscribeStream": s.SubscribeStream(ctx, "x-1", nil),
		"SubscribeAll":    s.SubscribeAll(ctx, nil),
	} {
		_, err := collect(t, seq)
		checkErr(t, name, err, annals.ErrClosed)
	}
	_, err = collect(t, s.ListStreams(ctx, nil))
	checkErr(t, "ListStreams", err, annals.ErrClosed)
}
