package storetest

import (
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/annalsdb/annals"
	"github.com/google/go-cmp/cmp"
)

func testAppend(t *testing.T, open func(t *testing.T) annals.Store) {
	t.Run("RecordsEverything", func(t *testing.T) {
		s := open(t)
		evs := []annals.Event{
			{ID: annals.NewUUID(), Type: "OrderPlaced", Data: []byte(`{"total":42}`), Metadata: []byte(`{"by":"ann"}`)},
			{Type: "NoteAdded", ContentType: "text/plain", Data: []byte("hello")},
			{Type: "Empty"},
		}
		caller := slices.Clone(evs)
		before := time.Now()
		res := mustAppend(t, s, "order-1", annals.NoStream, evs...)
		after := time.Now()
		if got, want := res, (annals.AppendResult{Revision: 2, Position: 3}); got != want {
			t.Errorf("Append: got %+v, want %+v", got, want)
		}
		if diff := cmp.Diff(caller, evs); diff != "" {
			t.Errorf("Append changed the caller's events (-before +after):\n%s", diff)
		}
		evs[0].Data[0] = 'X' // the store must have its own copy

		got := readStream(t, s, "order-1", nil)
		if len(got) != 3 {
			t.Fatalf("ReadStream: got %d events, want 3", len(got))
		}
		for i := 1; i < 3; i++ {
			if got[i].ID.IsZero() {
				t.Errorf("event %d: got a zero ID, want a generated one", i)
			}
		}
		if got[1].ID == got[2].ID {
			t.Errorf("generated IDs: got %v twice, want distinct IDs", got[1].ID)
		}
		evs[0].Data[0] = '{'
		want := []annals.RecordedEvent{
			recorded("order-1", 0, 1, evs[0]),
			recorded("order-1", 1, 2, annals.Event{ID: got[1].ID, Type: "NoteAdded", ContentType: "text/plain", Data: []byte("hello")}),
			recorded("order-1", 2, 3, annals.Event{ID: got[2].ID, Type: "Empty"}),
		}
		if diff := cmp.Diff(want, got, eventOpts, ignoreTime); diff != "" {
			t.Errorf("ReadStream (-want +got):\n%s", diff)
		}
		checkTimes(t, got)
		for _, e := range got {
			if e.Time.Before(before.Add(-time.Minute)) || e.Time.After(after.Add(time.Minute)) {
				t.Errorf("event %d: Time %v is not near the append (%v to %v)", e.Revision, e.Time, before, after)
			}
		}

		res = mustAppend(t, s, "order-2", annals.Any, newEvent("OrderPlaced"))
		if got, want := res, (annals.AppendResult{Revision: 0, Position: 4}); got != want {
			t.Errorf("Append to a second stream: got %+v, want %+v", got, want)
		}
		res = mustAppend(t, s, "order-1", annals.Exact(2), newEvents(2, "NoteAdded")...)
		if got, want := res, (annals.AppendResult{Revision: 4, Position: 6}); got != want {
			t.Errorf("Append to the first stream again: got %+v, want %+v", got, want)
		}
		all := readAll(t, s, nil)
		if got, want := positions(all), seq(1, 6); !slices.Equal(got, want) {
			t.Errorf("ReadAll positions: got %v, want %v", got, want)
		}
		checkTimes(t, all)
	})

	t.Run("Atomic", func(t *testing.T) {
		s := open(t)
		mustAppend(t, s, "a-1", annals.Any, newEvent("X"))
		evs := newEvents(50, "Batch")
		res := mustAppend(t, s, "a-2", annals.Any, evs...)
		if got, want := res, (annals.AppendResult{Revision: 49, Position: 51}); got != want {
			t.Errorf("Append of 50 events: got %+v, want %+v", got, want)
		}
		got := readStream(t, s, "a-2", nil)
		var want []annals.RecordedEvent
		for i, e := range evs {
			want = append(want, recorded("a-2", uint64(i), uint64(i+2), e))
		}
		if diff := cmp.Diff(want, got, eventOpts, ignoreTime); diff != "" {
			t.Errorf("ReadStream (-want +got):\n%s", diff)
		}
		// A failing append of many events writes none of them.
		before := takeSnapshot(t, s)
		bad := append(newEvents(10, "Batch"), annals.Event{Type: ""})
		if _, err := s.Append(t.Context(), "a-2", annals.Any, bad...); !errors.Is(err, annals.ErrInvalidArgument) {
			t.Errorf("Append with a bad last event: got %v, want ErrInvalidArgument", err)
		}
		_, err := s.Append(t.Context(), "a-2", annals.Exact(3), newEvents(10, "Batch")...)
		checkConflict(t, "Append with a stale revision", err, "a-2", annals.Exact(3), annals.Exact(49))
		checkUnchanged(t, s, before)
	})
}

// streamState describes a stream for the expectation table: whether it exists, the revision the
// next event gets, and whether it is tombstoned.
type streamState struct {
	name       string
	setup      func(t *testing.T, s annals.Store, stream string)
	exists     bool
	next       uint64
	tombstoned bool
}

func (st streamState) actual() annals.ExpectedRevision {
	if !st.exists {
		return annals.NoStream
	}
	return annals.Exact(st.next - 1)
}

// holds is the rule of annals.ExpectedRevision.
func (st streamState) holds(e annals.ExpectedRevision) bool {
	switch e {
	case annals.Any:
		return true
	case annals.NoStream:
		return !st.exists
	case annals.StreamExists:
		return st.exists
	}
	r, _ := e.Revision()
	return st.exists && r == st.next-1
}

var streamStates = []streamState{
	{name: "NeverWritten", setup: func(t *testing.T, s annals.Store, stream string) {}},
	{name: "MetadataOnly", setup: func(t *testing.T, s annals.Store, stream string) {
		mustSetMetadata(t, s, stream, annals.Any, annals.StreamMetadata{MaxCount: 5})
	}},
	{name: "Existing", exists: true, next: 3, setup: func(t *testing.T, s annals.Store, stream string) {
		mustAppend(t, s, stream, annals.NoStream, newEvents(3, "Made")...)
	}},
	{name: "SoftDeleted", next: 3, setup: func(t *testing.T, s annals.Store, stream string) {
		mustAppend(t, s, stream, annals.NoStream, newEvents(3, "Made")...)
		mustDelete(t, s, stream, annals.Exact(2))
	}},
	{name: "Recreated", exists: true, next: 5, setup: func(t *testing.T, s annals.Store, stream string) {
		mustAppend(t, s, stream, annals.NoStream, newEvents(3, "Made")...)
		mustDelete(t, s, stream, annals.Any)
		mustAppend(t, s, stream, annals.NoStream, newEvents(2, "Made")...)
	}},
	{name: "Tombstoned", next: 3, tombstoned: true, setup: func(t *testing.T, s annals.Store, stream string) {
		mustAppend(t, s, stream, annals.NoStream, newEvents(3, "Made")...)
		mustTombstone(t, s, stream, annals.Exact(2))
	}},
	{name: "TombstonedNeverWritten", tombstoned: true, setup: func(t *testing.T, s annals.Store, stream string) {
		mustTombstone(t, s, stream, annals.NoStream)
	}},
}

var expectations = []annals.ExpectedRevision{
	annals.Any, annals.NoStream, annals.StreamExists,
	annals.Exact(0), annals.Exact(1), annals.Exact(2), annals.Exact(3), annals.Exact(4), annals.Exact(5), annals.Exact(1000),
}

// testExpectedRevision checks every expectation against every state of a stream, for Append,
// Delete and Tombstone, and that a refused call changes nothing.
func testExpectedRevision(t *testing.T, open func(t *testing.T) annals.Store) {
	for _, st := range streamStates {
		t.Run(st.name, func(t *testing.T) {
			s := open(t) // one store per state keeps the snapshots small
			n := 0
			for _, op := range []string{"Append", "Delete", "Tombstone"} {
				for _, e := range expectations {
					t.Run(fmt.Sprintf("%s/%v", op, e), func(t *testing.T) {
						n++
						stream := fmt.Sprintf("exp%d-%s", n, st.name)
						st.setup(t, s, stream)
						before := takeSnapshot(t, s)
						var pos uint64
						var err error
						var res annals.AppendResult
						switch op {
						case "Append":
							res, err = s.Append(t.Context(), stream, e, newEvent("Next"))
							pos = res.Position
						case "Delete":
							var d annals.DeleteResult
							d, err = s.Delete(t.Context(), stream, e)
							pos = d.Position
						case "Tombstone":
							var d annals.DeleteResult
							d, err = s.Tombstone(t.Context(), stream, e)
							pos = d.Position
						}
						switch {
						case st.tombstoned:
							checkErr(t, op, err, annals.ErrStreamDeleted)
						case !st.holds(e):
							checkConflict(t, op, err, stream, e, st.actual())
						case op == "Delete" && !st.exists:
							checkErr(t, op, err, annals.ErrStreamNotFound)
						default:
							if !checkErr(t, op, err, nil) {
								return
							}
							if got, want := pos, uint64(len(before.Log)+1); got != want {
								t.Errorf("%s: got position %d, want %d", op, got, want)
							}
							if op == "Append" && res.Revision != st.next {
								t.Errorf("Append: got revision %d, want %d", res.Revision, st.next)
							}
							return
						}
						checkUnchanged(t, s, before)
					})
				}
			}
		})
	}
}

// testIdempotency checks that a repeated append returns the first result and writes nothing,
// at the place each expectation names, and that a partial match is a conflict.
func testIdempotency(t *testing.T, open func(t *testing.T) annals.Store) {
	// repeat appends evs again and checks that it returns want and writes nothing.
	repeat := func(t *testing.T, s annals.Store, stream string, e annals.ExpectedRevision, want annals.AppendResult, evs ...annals.Event) {
		t.Helper()
		before := takeSnapshot(t, s)
		res, err := s.Append(t.Context(), stream, e, evs...)
		if err != nil {
			t.Errorf("repeated Append(%v): %v, want the first result %+v", e, err, want)
		} else if res != want {
			t.Errorf("repeated Append(%v): got %+v, want the first result %+v", e, res, want)
		}
		checkUnchanged(t, s, before)
	}
	conflict := func(t *testing.T, s annals.Store, stream string, e, actual annals.ExpectedRevision, evs ...annals.Event) {
		t.Helper()
		before := takeSnapshot(t, s)
		_, err := s.Append(t.Context(), stream, e, evs...)
		checkConflict(t, fmt.Sprintf("partly repeated Append(%v)", e), err, stream, e, actual)
		checkUnchanged(t, s, before)
	}

	t.Run("Exact", func(t *testing.T) {
		s := open(t)
		a, b, c, d := newEvent("A"), newEvent("B"), newEvent("C"), newEvent("D")
		mustAppend(t, s, "idem-1", annals.NoStream, a)
		mustAppend(t, s, "other-1", annals.NoStream, newEvent("X"))
		first := mustAppend(t, s, "idem-1", annals.Exact(0), b, c)
		repeat(t, s, "idem-1", annals.Exact(0), first, b, c)
		mustAppend(t, s, "idem-1", annals.Exact(2), d)
		// Still recognised after later appends: the place is named by the revision.
		repeat(t, s, "idem-1", annals.Exact(0), first, b, c)
		repeat(t, s, "idem-1", annals.Exact(0), annals.AppendResult{Revision: 1, Position: 3}, b)
		repeat(t, s, "idem-1", annals.Exact(2), annals.AppendResult{Revision: 3, Position: 5}, d)
		conflict(t, s, "idem-1", annals.Exact(0), annals.Exact(3), b, newEvent("Y"))
		conflict(t, s, "idem-1", annals.Exact(0), annals.Exact(3), b, c, d, newEvent("Y"))
		conflict(t, s, "idem-1", annals.Exact(1), annals.Exact(3), b, c)
	})

	t.Run("NoStream", func(t *testing.T) {
		s := open(t)
		a, b := newEvent("A"), newEvent("B")
		first := mustAppend(t, s, "idem-1", annals.NoStream, a, b)
		mustAppend(t, s, "idem-1", annals.Any, newEvent("C"))
		repeat(t, s, "idem-1", annals.NoStream, first, a, b)
		repeat(t, s, "idem-1", annals.NoStream, annals.AppendResult{Revision: 0, Position: 1}, a)
		conflict(t, s, "idem-1", annals.NoStream, annals.Exact(2), a, newEvent("X"))
		conflict(t, s, "idem-1", annals.NoStream, annals.Exact(2), b)

		// After a soft delete, NoStream looks at the first events since the re-creation.
		mustDelete(t, s, "idem-1", annals.Any)
		c := newEvent("C")
		again := mustAppend(t, s, "idem-1", annals.NoStream, c)
		if got, want := again.Revision, uint64(3); got != want {
			t.Errorf("re-creating Append: got revision %d, want %d", got, want)
		}
		repeat(t, s, "idem-1", annals.NoStream, again, c)
		conflict(t, s, "idem-1", annals.NoStream, annals.Exact(3), a, b)
	})

	for _, e := range []annals.ExpectedRevision{annals.Any, annals.StreamExists} {
		t.Run(e.String(), func(t *testing.T) {
			s := open(t)
			mustAppend(t, s, "idem-1", annals.NoStream, newEvent("Start"))
			a, b := newEvent("A"), newEvent("B")
			first := mustAppend(t, s, "idem-1", e, a, b)
			mustAppend(t, s, "other-1", annals.Any, newEvent("X"))
			repeat(t, s, "idem-1", e, first, a, b)
			repeat(t, s, "idem-1", e, first, b)
			// Not all IDs at the stream's end, in order: not a repeat, so it is written.
			written := func(want uint64, evs ...annals.Event) {
				t.Helper()
				res := mustAppend(t, s, "idem-1", e, evs...)
				if res.Revision != want {
					t.Errorf("Append(%v) that is no repeat: got revision %d, want %d (written)", e, res.Revision, want)
				}
			}
			written(4, b, a)
			// Once something else was appended, the retry is no longer recognised.
			written(6, a, b)
			repeat(t, s, "idem-1", e, annals.AppendResult{Revision: 6, Position: 8}, a, b)
		})
	}
	t.Run("AnyOnNewIncarnation", func(t *testing.T) {
		// Any looks at the current incarnation only: events hidden by a soft delete do not
		// make a repeat.
		s := open(t)
		a := newEvent("A")
		mustAppend(t, s, "idem-1", annals.Any, a)
		mustDelete(t, s, "idem-1", annals.Any)
		if res := mustAppend(t, s, "idem-1", annals.Any, a); res.Revision != 1 {
			t.Errorf("Append(Any) after a soft delete: got revision %d, want 1 (written)", res.Revision)
		}
	})
	t.Run("ExactBeforeIncarnation", func(t *testing.T) {
		s := open(t)
		a, b := newEvent("A"), newEvent("B")
		mustAppend(t, s, "idem-1", annals.NoStream, a, b)
		mustDelete(t, s, "idem-1", annals.Any)
		before := takeSnapshot(t, s)
		_, err := s.Append(t.Context(), "idem-1", annals.Exact(0), b)
		checkConflict(t, "Append(Exact(0)) repeating a deleted event", err, "idem-1", annals.Exact(0), annals.NoStream)
		checkUnchanged(t, s, before)
	})
}

func testConcurrency(t *testing.T, open func(t *testing.T) annals.Store) {
	t.Run("ExactRace", func(t *testing.T) {
		// Appenders race with the same expectation: exactly one wins each revision.
		s := open(t)
		const rounds, racers = 20, 8
		var winners []annals.UUID
		for r := range uint64(rounds) {
			expected := annals.NoStream
			if r > 0 {
				expected = annals.Exact(r - 1)
			}
			type outcome struct {
				id  annals.UUID
				res annals.AppendResult
				err error
			}
			out := make([]outcome, racers)
			var wg sync.WaitGroup
			for i := range out {
				e := newEvent("Race")
				out[i].id = e.ID
				wg.Go(func() {
					out[i].res, out[i].err = s.Append(t.Context(), "race-1", expected, e)
				})
			}
			wg.Wait()
			won := 0
			for _, o := range out {
				if o.err == nil {
					won++
					winners = append(winners, o.id)
					if o.res.Revision != r {
						t.Errorf("round %d: winner got revision %d, want %d", r, o.res.Revision, r)
					}
					continue
				}
				checkConflict(t, fmt.Sprintf("round %d: loser", r), o.err, "race-1", expected, annals.Exact(r))
			}
			if won != 1 {
				t.Fatalf("round %d: %d appenders won, want exactly 1", r, won)
			}
		}
		if diff := cmp.Diff(winners, ids(readStream(t, s, "race-1", nil))); diff != "" {
			t.Errorf("ReadStream IDs differ from the winners' (-winners +read):\n%s", diff)
		}
	})

	t.Run("GapFreePositions", func(t *testing.T) {
		// Many writers append to a few streams at once; the log has no gap and each append
		// is contiguous.
		s := open(t)
		const writers, appends, streams = 32, 15, 8
		type appended struct {
			stream string
			ids    []annals.UUID
			res    annals.AppendResult
		}
		results := make([][]appended, writers)
		var wg sync.WaitGroup
		for w := range writers {
			wg.Go(func() {
				for i := range appends {
					stream := fmt.Sprintf("gap-%d", (w+i)%streams)
					evs := newEvents(1+(w+i)%3, "Gap")
					res, err := s.Append(t.Context(), stream, annals.Any, evs...)
					if err != nil {
						t.Errorf("writer %d: Append: %v", w, err)
						return
					}
					a := appended{stream: stream, res: res}
					for _, e := range evs {
						a.ids = append(a.ids, e.ID)
					}
					results[w] = append(results[w], a)
				}
			})
		}
		wg.Wait()
		all := readAll(t, s, nil)
		total := 0
		for _, rs := range results {
			for _, a := range rs {
				total += len(a.ids)
			}
		}
		if got, want := positions(all), seq(1, uint64(total)); !slices.Equal(got, want) {
			t.Fatalf("ReadAll positions: got %v, want 1 to %d without gaps", got, total)
		}
		checkTimes(t, all)
		next := map[string]uint64{}
		for _, e := range all {
			if e.Revision != next[e.Stream] {
				t.Errorf("position %d: stream %q has revision %d, want %d", e.Position, e.Stream, e.Revision, next[e.Stream])
			}
			next[e.Stream] = e.Revision + 1
		}
		for w, rs := range results {
			for _, a := range rs {
				n := uint64(len(a.ids))
				first := a.res.Position - n // index in all of the append's first event
				got := all[first : first+n]
				for i, e := range got {
					if e.ID != a.ids[i] || e.Stream != a.stream || e.Revision != a.res.Revision-n+1+uint64(i) {
						t.Errorf("writer %d: append ending at position %d: event %d is %v in %q at revision %d, want %v in %q at revision %d",
							w, a.res.Position, i, e.ID, e.Stream, e.Revision, a.ids[i], a.stream, a.res.Revision-n+1+uint64(i))
					}
				}
			}
		}
	})
}
