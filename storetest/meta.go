package storetest

import (
	"encoding/json"
	"slices"
	"testing"
	"time"

	"github.com/annalsdb/annals"
	"github.com/annalsdb/annals/internal/testwait"
	"github.com/google/go-cmp/cmp"
)

func testMetadata(t *testing.T, open func(t *testing.T) annals.Store) {
	t.Run("GetSet", func(t *testing.T) {
		s := open(t)
		check := func(t *testing.T, want annals.StreamMetadata, wantExp annals.ExpectedRevision) {
			t.Helper()
			got, exp, err := s.GetMetadata(t.Context(), "m-1")
			if err != nil {
				t.Fatalf("GetMetadata: %v", err)
			}
			if diff := cmp.Diff(want, got, jsonEqual); diff != "" {
				t.Errorf("GetMetadata (-want +got):\n%s", diff)
			}
			if exp != wantExp {
				t.Errorf("GetMetadata: got expected revision %v, want %v", exp, wantExp)
			}
		}
		check(t, annals.StreamMetadata{}, annals.NoStream)

		m1 := annals.StreamMetadata{
			MaxCount: 5, MaxAge: 36 * time.Hour, TruncateBefore: 2,
			ACL:    &annals.ACL{Read: []string{"reader"}, Write: []string{"writer", "admin"}, MetaRead: []string{"ops"}},
			Custom: json.RawMessage(`{"owner":"team-a","limits":[1,2,3],"nested":{"x":true,"y":null}}`),
		}
		res := mustSetMetadata(t, s, "m-1", annals.NoStream, m1)
		if got, want := res, (annals.AppendResult{Revision: 0, Position: 1}); got != want {
			t.Errorf("SetMetadata: got %+v, want %+v", got, want)
		}
		check(t, m1, annals.Exact(0))

		before := takeSnapshot(t, s)
		_, err := s.SetMetadata(t.Context(), "m-1", annals.NoStream, annals.StreamMetadata{})
		checkConflict(t, "SetMetadata(NoStream) over metadata", err, "", annals.NoStream, annals.Exact(0))
		_, err = s.SetMetadata(t.Context(), "m-1", annals.Exact(1), annals.StreamMetadata{})
		checkConflict(t, "SetMetadata(Exact(1))", err, "", annals.Exact(1), annals.Exact(0))
		checkUnchanged(t, s, before)

		m2 := annals.StreamMetadata{Custom: json.RawMessage(" { \"spaced\" : [ 1 , 2 ] } ")}
		res = mustSetMetadata(t, s, "m-1", annals.Exact(0), m2)
		if got, want := res, (annals.AppendResult{Revision: 1, Position: 2}); got != want {
			t.Errorf("SetMetadata(Exact(0)): got %+v, want %+v", got, want)
		}
		check(t, m2, annals.Exact(1))
		mustSetMetadata(t, s, "m-1", annals.StreamExists, annals.StreamMetadata{MaxCount: 1})
		mustSetMetadata(t, s, "m-1", annals.Any, annals.StreamMetadata{MaxCount: 2})
		check(t, annals.StreamMetadata{MaxCount: 2}, annals.Exact(3))

		// Metadata alone does not make the stream exist.
		if got := listStreams(t, s, nil); len(got) != 0 {
			t.Errorf("ListStreams with metadata only: got %v, want none", got)
		}
		var got []string
		for _, e := range readAll(t, s, nil) {
			got = append(got, e.Stream+"/"+e.Type)
		}
		want := []string{"$meta-m-1/$metadata", "$meta-m-1/$metadata", "$meta-m-1/$metadata", "$meta-m-1/$metadata"}
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("ReadAll (-want +got):\n%s", diff)
		}
	})

	t.Run("MaxCount", func(t *testing.T) {
		s := open(t)
		mustAppend(t, s, "mc-1", annals.NoStream, newEvents(10, "E")...)
		mustSetMetadata(t, s, "mc-1", annals.NoStream, annals.StreamMetadata{MaxCount: 3})
		tests := []struct {
			opts *annals.ReadOptions
			want []uint64
		}{
			{nil, seq(7, 9)},
			{&annals.ReadOptions{Backwards: true, From: annals.End}, rseq(9, 7)},
			{&annals.ReadOptions{Limit: 2}, seq(7, 8)},
			{&annals.ReadOptions{From: 8}, seq(8, 9)},
			{&annals.ReadOptions{Until: 9}, seq(7, 8)},
			{&annals.ReadOptions{Backwards: true, From: 5}, nil},
		}
		for _, tt := range tests {
			if diff := cmp.Diff(tt.want, revisions(readStream(t, s, "mc-1", tt.opts))); diff != "" {
				t.Errorf("ReadStream(%+v) with maxCount 3 (-want +got):\n%s", tt.opts, diff)
			}
		}
		if got, want := listStreams(t, s, nil), []annals.StreamInfo{{Stream: "mc-1", Revision: 9, Count: 10}}; !cmp.Equal(got, want) {
			t.Errorf("ListStreams: got %+v, want %+v (metadata does not reduce Count)", got, want)
		}
		if got := len(readAll(t, s, nil)); got != 11 {
			t.Errorf("ReadAll: got %d events, want 11 (metadata does not apply)", got)
		}
		mustAppend(t, s, "mc-1", annals.Exact(9), newEvents(2, "E")...)
		if diff := cmp.Diff(seq(9, 11), revisions(readStream(t, s, "mc-1", nil))); diff != "" {
			t.Errorf("ReadStream after more appends (-want +got):\n%s", diff)
		}
		mustSetMetadata(t, s, "mc-1", annals.Exact(0), annals.StreamMetadata{})
		if diff := cmp.Diff(seq(0, 11), revisions(readStream(t, s, "mc-1", nil))); diff != "" {
			t.Errorf("ReadStream after clearing maxCount (-want +got):\n%s", diff)
		}
	})

	t.Run("TruncateBefore", func(t *testing.T) {
		s := open(t)
		mustAppend(t, s, "tb-1", annals.NoStream, newEvents(10, "E")...)
		tests := []struct {
			meta annals.StreamMetadata
			want []uint64
		}{
			{annals.StreamMetadata{TruncateBefore: 4}, seq(4, 9)},
			{annals.StreamMetadata{TruncateBefore: 4, MaxCount: 3}, seq(7, 9)},
			{annals.StreamMetadata{TruncateBefore: 8, MaxCount: 5}, seq(8, 9)},
			{annals.StreamMetadata{TruncateBefore: 9}, []uint64{9}},
			{annals.StreamMetadata{TruncateBefore: 20}, nil},
			{annals.StreamMetadata{TruncateBefore: 0}, seq(0, 9)},
		}
		for _, tt := range tests {
			mustSetMetadata(t, s, "tb-1", annals.Any, tt.meta)
			if diff := cmp.Diff(tt.want, revisions(readStream(t, s, "tb-1", nil))); diff != "" {
				t.Errorf("ReadStream with %+v (-want +got):\n%s", tt.meta, diff)
			}
			back := slices.Clone(tt.want)
			slices.Reverse(back)
			if diff := cmp.Diff(back, revisions(readStream(t, s, "tb-1", &annals.ReadOptions{Backwards: true, From: annals.End}))); diff != "" {
				t.Errorf("ReadStream backwards with %+v (-want +got):\n%s", tt.meta, diff)
			}
		}
	})

	t.Run("MaxAge", func(t *testing.T) {
		s := open(t)
		mustAppend(t, s, "ma-1", annals.NoStream, newEvents(3, "Old")...)
		mustSetMetadata(t, s, "ma-1", annals.NoStream, annals.StreamMetadata{MaxAge: time.Hour})
		if got := len(readStream(t, s, "ma-1", nil)); got != 3 {
			t.Errorf("ReadStream with maxAge 1h: got %d events, want 3", got)
		}
		const maxAge = 100 * time.Millisecond
		mustSetMetadata(t, s, "ma-1", annals.Exact(0), annals.StreamMetadata{MaxAge: maxAge})
		testwait.Until(t, "events older than maxAge are hidden", func() bool {
			return len(readStream(t, s, "ma-1", nil)) == 0
		})
		e := newEvent("New")
		res := mustAppend(t, s, "ma-1", annals.Exact(2), e)
		got := readStream(t, s, "ma-1", nil)
		all := readAll(t, s, nil)
		switch {
		case len(got) == 1 && got[0].ID == e.ID:
		case len(got) == 0 && time.Since(all[res.Position-1].Time) >= maxAge:
			// The machine was slow enough for the new event to age too.
		default:
			t.Errorf("ReadStream after a new event: got %v, want just %v", ids(got), e.ID)
		}
		if got := len(all); got != 6 {
			t.Errorf("ReadAll: got %d events, want 6 (maxAge does not apply)", got)
		}
	})

	t.Run("Tombstoned", func(t *testing.T) {
		s := open(t)
		mustTombstone(t, s, "gone-1", annals.Any)
		before := takeSnapshot(t, s)
		_, _, err := s.GetMetadata(t.Context(), "gone-1")
		checkErr(t, "GetMetadata of a tombstoned stream", err, annals.ErrStreamDeleted)
		_, err = s.SetMetadata(t.Context(), "gone-1", annals.Any, annals.StreamMetadata{MaxCount: 1})
		checkErr(t, "SetMetadata of a tombstoned stream", err, annals.ErrStreamDeleted)
		checkUnchanged(t, s, before)
	})
}

func testDelete(t *testing.T, open func(t *testing.T) annals.Store) {
	s := open(t)
	before := takeSnapshot(t, s)
	_, err := s.Delete(t.Context(), "del-1", annals.Any)
	checkErr(t, "Delete of a stream never written", err, annals.ErrStreamNotFound)
	checkUnchanged(t, s, before)

	mustAppend(t, s, "del-1", annals.NoStream, newEvents(3, "E")...)
	mustAppend(t, s, "keep-1", annals.NoStream, newEvent("E"))
	pos := mustDelete(t, s, "del-1", annals.Exact(2))
	if pos != 5 {
		t.Errorf("Delete: got position %d, want 5", pos)
	}
	_, err = collect(t, s.ReadStream(t.Context(), "del-1", nil))
	checkErr(t, "ReadStream of a deleted stream", err, annals.ErrStreamNotFound)
	if diff := cmp.Diff([]annals.StreamInfo{{Stream: "keep-1", Revision: 0, Count: 1}}, listStreams(t, s, nil)); diff != "" {
		t.Errorf("ListStreams after Delete (-want +got):\n%s", diff)
	}
	all := readAll(t, s, nil)
	if len(all) != 5 {
		t.Fatalf("ReadAll after Delete: got %d events, want 5 (the log keeps deleted events)", len(all))
	}
	checkSystemEvent(t, all[4], "del-1", annals.DeletedEventType, 0, `{"revision":2}`)

	before = takeSnapshot(t, s)
	_, err = s.Delete(t.Context(), "del-1", annals.Any)
	checkErr(t, "Delete of a deleted stream", err, annals.ErrStreamNotFound)
	for _, e := range []annals.ExpectedRevision{annals.Exact(2), annals.StreamExists} {
		_, err = s.Append(t.Context(), "del-1", e, newEvent("E"))
		checkConflict(t, "Append to a deleted stream", err, "del-1", e, annals.NoStream)
	}
	checkUnchanged(t, s, before)
	if _, exp, err := s.GetMetadata(t.Context(), "del-1"); err != nil || exp != annals.Exact(0) {
		t.Errorf("GetMetadata of a deleted stream: got (%v, %v), want (Exact(0), nil): the $deleted event counts", exp, err)
	}

	// Re-creation continues the revisions and shows only the new events.
	e := newEvent("Again")
	res := mustAppend(t, s, "del-1", annals.NoStream, e)
	if got, want := res, (annals.AppendResult{Revision: 3, Position: 6}); got != want {
		t.Errorf("re-creating Append: got %+v, want %+v", got, want)
	}
	want := []annals.RecordedEvent{recorded("del-1", 3, 6, e)}
	for _, opts := range []*annals.ReadOptions{nil, {Backwards: true, From: annals.End}, {From: 0}, {Until: 4}} {
		if diff := cmp.Diff(want, readStream(t, s, "del-1", opts), eventOpts, ignoreTime); diff != "" {
			t.Errorf("ReadStream(%+v) of a re-created stream (-want +got):\n%s", opts, diff)
		}
	}
	mustAppend(t, s, "del-1", annals.Exact(3), newEvents(2, "E")...)
	wantList := []annals.StreamInfo{{Stream: "del-1", Revision: 5, Count: 3}, {Stream: "keep-1", Revision: 0, Count: 1}}
	if diff := cmp.Diff(wantList, listStreams(t, s, nil)); diff != "" {
		t.Errorf("ListStreams after re-creation (-want +got):\n%s", diff)
	}

	// Deleting again records the last revision; a subscription from 0 starts after it.
	pos = mustDelete(t, s, "del-1", annals.StreamExists)
	checkSystemEvent(t, readAll(t, s, &annals.ReadOptions{From: pos, Limit: 1})[0], "del-1", annals.DeletedEventType, 1, `{"revision":5}`)
	e = newEvent("Third")
	mustAppend(t, s, "del-1", annals.Any, e)
	c := subscribe(t, func(ctx contextT) eventSeq { return s.SubscribeStream(ctx, "del-1", nil) })
	c.waitCount(t, "SubscribeStream of a re-created stream", 1)
	if evs, _, _ := c.state(); evs[0].ID != e.ID || evs[0].Revision != 6 {
		t.Errorf("SubscribeStream from 0 of a re-created stream: first got revision %d, want 6 (the first since re-creation)", evs[0].Revision)
	}
}

// checkSystemEvent checks that e records a system event of stream with the given type, revision
// in the meta stream and data.
func checkSystemEvent(t *testing.T, e annals.RecordedEvent, stream, eventType string, rev uint64, data string) {
	t.Helper()
	if e.Stream != annals.MetaStream(stream) || e.Type != eventType || e.Revision != rev || e.ContentType != annals.ContentTypeJSON {
		t.Errorf("system event at position %d: got stream %q type %q revision %d content type %q, want %q %q %d %q",
			e.Position, e.Stream, e.Type, e.Revision, e.ContentType, annals.MetaStream(stream), eventType, rev, annals.ContentTypeJSON)
	}
	if !cmp.Equal(json.RawMessage(data), json.RawMessage(e.Data), jsonEqual) {
		t.Errorf("system event at position %d: got data %s, want %s", e.Position, e.Data, data)
	}
	if e.ID.IsZero() {
		t.Errorf("system event at position %d: zero ID", e.Position)
	}
}

func testTombstone(t *testing.T, open func(t *testing.T) annals.Store) {
	s := open(t)
	mustAppend(t, s, "tomb-1", annals.NoStream, newEvents(2, "E")...)
	before := takeSnapshot(t, s)
	_, err := s.Tombstone(t.Context(), "tomb-1", annals.Exact(0))
	checkConflict(t, "Tombstone(Exact(0))", err, "tomb-1", annals.Exact(0), annals.Exact(1))
	checkUnchanged(t, s, before)

	pos := mustTombstone(t, s, "tomb-1", annals.Any)
	if pos != 3 {
		t.Errorf("Tombstone: got position %d, want 3", pos)
	}
	all := readAll(t, s, nil)
	if len(all) != 3 {
		t.Fatalf("ReadAll after Tombstone: got %d events, want 3", len(all))
	}
	checkSystemEvent(t, all[2], "tomb-1", annals.TombstoneEventType, 0, `{}`)

	// Every operation on a tombstoned stream fails; a stream tombstoned before it was ever
	// written, and a soft-deleted one, alike.
	mustTombstone(t, s, "reserved-1", annals.NoStream)
	mustAppend(t, s, "soft-1", annals.NoStream, newEvent("E"))
	mustDelete(t, s, "soft-1", annals.Any)
	mustTombstone(t, s, "soft-1", annals.NoStream)
	before = takeSnapshot(t, s)
	for _, stream := range []string{"tomb-1", "reserved-1", "soft-1"} {
		t.Run(stream, func(t *testing.T) {
			for _, e := range []annals.ExpectedRevision{annals.Any, annals.NoStream, annals.StreamExists, annals.Exact(1)} {
				_, err := s.Append(t.Context(), stream, e, newEvent("E"))
				checkErr(t, "Append("+e.String()+")", err, annals.ErrStreamDeleted)
				_, err = s.Delete(t.Context(), stream, e)
				checkErr(t, "Delete("+e.String()+")", err, annals.ErrStreamDeleted)
				_, err = s.Tombstone(t.Context(), stream, e)
				checkErr(t, "Tombstone("+e.String()+")", err, annals.ErrStreamDeleted)
			}
			evs, err := collect(t, s.ReadStream(t.Context(), stream, nil))
			if checkErr(t, "ReadStream", err, annals.ErrStreamDeleted) && len(evs) != 0 {
				t.Errorf("ReadStream: got %d events before the error, want none", len(evs))
			}
			_, err = collect(t, s.ReadStream(t.Context(), stream, &annals.ReadOptions{Backwards: true, From: annals.End}))
			checkErr(t, "ReadStream backwards", err, annals.ErrStreamDeleted)
			_, _, err = s.GetMetadata(t.Context(), stream)
			checkErr(t, "GetMetadata", err, annals.ErrStreamDeleted)
			_, err = s.SetMetadata(t.Context(), stream, annals.Any, annals.StreamMetadata{})
			checkErr(t, "SetMetadata", err, annals.ErrStreamDeleted)
			c := subscribe(t, func(ctx contextT) eventSeq { return s.SubscribeStream(ctx, stream, nil) })
			err = c.waitEnd(t, "SubscribeStream")
			checkErr(t, "SubscribeStream", err, annals.ErrStreamDeleted)
			if evs, _, _ := c.state(); len(evs) != 0 {
				t.Errorf("SubscribeStream: got %d events before the error, want none", len(evs))
			}
		})
	}
	checkUnchanged(t, s, before)
	if got := listStreams(t, s, nil); len(got) != 0 {
		t.Errorf("ListStreams: got %+v, want no tombstoned stream", got)
	}
}

func testListStreams(t *testing.T, open func(t *testing.T) annals.Store) {
	s := open(t)
	for _, stream := range []string{"b-1", "a-1", "a-10", "a-2", "b", "A-1", "é-1", "c-1", "d-1", "e-1"} {
		mustAppend(t, s, stream, annals.Any, newEvent("E"))
	}
	mustAppend(t, s, "b-1", annals.Any, newEvent("E"))
	mustDelete(t, s, "c-1", annals.Any)
	mustTombstone(t, s, "d-1", annals.Any)
	mustAppend(t, s, "e-1", annals.Any, newEvents(2, "E")...)
	mustDelete(t, s, "e-1", annals.Any)
	mustAppend(t, s, "e-1", annals.Any, newEvent("E"))
	mustSetMetadata(t, s, "f-1", annals.Any, annals.StreamMetadata{MaxCount: 1})
	mustTombstone(t, s, "g-1", annals.Any)

	info := map[string]annals.StreamInfo{
		"A-1":  {Stream: "A-1", Revision: 0, Count: 1},
		"a-1":  {Stream: "a-1", Revision: 0, Count: 1},
		"a-10": {Stream: "a-10", Revision: 0, Count: 1},
		"a-2":  {Stream: "a-2", Revision: 0, Count: 1},
		"b":    {Stream: "b", Revision: 0, Count: 1},
		"b-1":  {Stream: "b-1", Revision: 1, Count: 2},
		"e-1":  {Stream: "e-1", Revision: 3, Count: 1},
		"é-1":  {Stream: "é-1", Revision: 0, Count: 1},
	}
	list := func(names ...string) []annals.StreamInfo {
		var out []annals.StreamInfo
		for _, n := range names {
			out = append(out, info[n])
		}
		return out
	}
	tests := []struct {
		name string
		opts *annals.ListOptions
		want []annals.StreamInfo
	}{
		{"All", nil, list("A-1", "a-1", "a-10", "a-2", "b", "b-1", "e-1", "é-1")},
		{"Prefix", &annals.ListOptions{Prefix: "a-"}, list("a-1", "a-10", "a-2")},
		{"PrefixWhole", &annals.ListOptions{Prefix: "b"}, list("b", "b-1")},
		{"PrefixNone", &annals.ListOptions{Prefix: "zzz"}, nil},
		{"PrefixDeleted", &annals.ListOptions{Prefix: "c"}, nil},
		{"After", &annals.ListOptions{After: "a-10"}, list("a-2", "b", "b-1", "e-1", "é-1")},
		{"AfterMissing", &annals.ListOptions{After: "a-3"}, list("b", "b-1", "e-1", "é-1")},
		{"AfterLast", &annals.ListOptions{After: "é-1"}, nil},
		{"Limit", &annals.ListOptions{Limit: 2}, list("A-1", "a-1")},
		{"AfterLimit", &annals.ListOptions{After: "a-10", Limit: 2}, list("a-2", "b")},
		{"PrefixAfter", &annals.ListOptions{Prefix: "a", After: "a-1"}, list("a-10", "a-2")},
		{"PrefixAfterBefore", &annals.ListOptions{Prefix: "b", After: "a"}, list("b", "b-1")},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if diff := cmp.Diff(tt.want, listStreams(t, s, tt.opts)); diff != "" {
				t.Errorf("ListStreams(%+v) (-want +got):\n%s", tt.opts, diff)
			}
		})
	}
	t.Run("Paging", func(t *testing.T) {
		var got []annals.StreamInfo
		after := ""
		for range 10 {
			page := listStreams(t, s, &annals.ListOptions{After: after, Limit: 3})
			if len(page) == 0 {
				break
			}
			got = append(got, page...)
			after = page[len(page)-1].Stream
		}
		if diff := cmp.Diff(tests[0].want, got); diff != "" {
			t.Errorf("ListStreams in pages of 3 (-want +got):\n%s", diff)
		}
	})
}
