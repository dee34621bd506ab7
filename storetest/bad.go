package storetest

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/annalsdb/annals"
)

// badStreamIDs are stream ids that nobody may use.
var badStreamIDs = map[string]string{
	"Empty":          "",
	"TooLong":        strings.Repeat("a", annals.MaxStreamIDLength+1),
	"NUL":            "a\x00b",
	"Newline":        "a\nb",
	"DEL":            "a\x7fb",
	"C1Control":      "a\u0085b",
	"InvalidUTF8":    "a\xffb",
	"TruncatedUTF8":  "a\xc3",
	"All":            annals.AllStream,
	"TooLongUnicode": strings.Repeat("é", 129),
}

// reservedStreamIDs may be read but not written by users.
var reservedStreamIDs = map[string]string{
	"Dollar":     "$custom",
	"MetaStream": annals.MetaStream("good-1"),
}

// testBadInput checks that every kind of bad input is refused with the right error and leaves
// the store exactly as it was.
func testBadInput(t *testing.T, open func(t *testing.T) annals.Store) {
	s := open(t)
	mustAppend(t, s, "good-1", annals.NoStream, newEvents(3, "E")...)
	mustSetMetadata(t, s, "good-1", annals.NoStream, annals.StreamMetadata{MaxCount: 10})
	mustAppend(t, s, "good-2", annals.NoStream, newEvent("E"))
	metaBefore, expBefore, err := s.GetMetadata(t.Context(), "good-1")
	if err != nil {
		t.Fatal(err)
	}

	type call func(ctx context.Context) error
	firstErr := func(seq eventSeq) error {
		_, err := collect(t, seq)
		return err
	}
	appendOne := func(stream string) call {
		return func(ctx context.Context) error {
			_, err := s.Append(ctx, stream, annals.Any, newEvent("E"))
			return err
		}
	}
	appendEvents := func(e annals.ExpectedRevision, evs ...annals.Event) call {
		return func(ctx context.Context) error {
			_, err := s.Append(ctx, "good-1", e, evs...)
			return err
		}
	}
	tests := map[string]struct {
		call call
		want error
	}{}
	add := func(name string, want error, c call) {
		tests[name] = struct {
			call call
			want error
		}{c, want}
	}

	for name, id := range badStreamIDs {
		add("Append/"+name, annals.ErrInvalidArgument, appendOne(id))
		add("SetMetadata/"+name, annals.ErrInvalidArgument, func(ctx context.Context) error {
			_, err := s.SetMetadata(ctx, id, annals.Any, annals.StreamMetadata{})
			return err
		})
		add("GetMetadata/"+name, annals.ErrInvalidArgument, func(ctx context.Context) error {
			_, _, err := s.GetMetadata(ctx, id)
			return err
		})
		add("Delete/"+name, annals.ErrInvalidArgument, func(ctx context.Context) error {
			_, err := s.Delete(ctx, id, annals.Any)
			return err
		})
		add("Tombstone/"+name, annals.ErrInvalidArgument, func(ctx context.Context) error {
			_, err := s.Tombstone(ctx, id, annals.Any)
			return err
		})
		add("ReadStream/"+name, annals.ErrInvalidArgument, func(ctx context.Context) error {
			return firstErr(s.ReadStream(ctx, id, nil))
		})
		add("SubscribeStream/"+name, annals.ErrInvalidArgument, func(ctx context.Context) error {
			return firstErr(s.SubscribeStream(ctx, id, nil))
		})
	}
	for name, id := range reservedStreamIDs {
		add("Append/"+name, annals.ErrInvalidArgument, appendOne(id))
		add("SetMetadata/"+name, annals.ErrInvalidArgument, func(ctx context.Context) error {
			_, err := s.SetMetadata(ctx, id, annals.Any, annals.StreamMetadata{})
			return err
		})
		add("Delete/"+name, annals.ErrInvalidArgument, func(ctx context.Context) error {
			_, err := s.Delete(ctx, id, annals.Any)
			return err
		})
		add("Tombstone/"+name, annals.ErrInvalidArgument, func(ctx context.Context) error {
			_, err := s.Tombstone(ctx, id, annals.Any)
			return err
		})
	}

	dup := newEvent("E")
	big := annals.Event{ID: annals.NewUUID(), Type: "Big", Data: make([]byte, annals.DefaultMaxEventSize)} // over by len("Big")+len(ContentTypeJSON)
	var huge []annals.Event
	for range annals.DefaultMaxAppendSize/(annals.DefaultMaxEventSize-100) + 1 {
		huge = append(huge, annals.Event{ID: annals.NewUUID(), Type: "Huge", Data: make([]byte, annals.DefaultMaxEventSize-100)})
	}
	add("Append/NoEvents", annals.ErrInvalidArgument, appendEvents(annals.Any))
	add("Append/EmptyType", annals.ErrInvalidArgument, appendEvents(annals.Any, newEvent("E"), annals.Event{ID: annals.NewUUID()}))
	add("Append/TypeTooLong", annals.ErrInvalidArgument, appendEvents(annals.Any, newEvent(strings.Repeat("t", 257))))
	add("Append/TypeControl", annals.ErrInvalidArgument, appendEvents(annals.Any, newEvent("Item\tAdded")))
	add("Append/TypeInvalidUTF8", annals.ErrInvalidArgument, appendEvents(annals.Any, newEvent("Item\xff")))
	add("Append/ContentTypeControl", annals.ErrInvalidArgument, appendEvents(annals.Any, annals.Event{Type: "E", ContentType: "text/plain\n"}))
	add("Append/DuplicateIDs", annals.ErrInvalidArgument, appendEvents(annals.Any, dup, newEvent("E"), dup))
	add("Append/EventTooLarge", annals.ErrTooLarge, appendEvents(annals.Any, newEvent("E"), big))
	add("Append/AppendTooLarge", annals.ErrTooLarge, appendEvents(annals.Any, huge...))
	for name, e := range map[string]annals.ExpectedRevision{
		"Minus4": annals.ExpectedRevision(-4), "Minus7": annals.ExpectedRevision(-7), "Exact2to63": annals.Exact(1 << 63),
	} {
		add("Append/Expected"+name, annals.ErrInvalidArgument, appendEvents(e, newEvent("E")))
		add("SetMetadata/Expected"+name, annals.ErrInvalidArgument, func(ctx context.Context) error {
			_, err := s.SetMetadata(ctx, "good-1", e, annals.StreamMetadata{})
			return err
		})
		add("Delete/Expected"+name, annals.ErrInvalidArgument, func(ctx context.Context) error {
			_, err := s.Delete(ctx, "good-1", e)
			return err
		})
		add("Tombstone/Expected"+name, annals.ErrInvalidArgument, func(ctx context.Context) error {
			_, err := s.Tombstone(ctx, "good-1", e)
			return err
		})
	}
	for name, meta := range map[string]annals.StreamMetadata{
		"NegativeMaxAge": {MaxAge: -time.Second},
		"CustomNotJSON":  {Custom: json.RawMessage(`{"a":`)},
	} {
		add("SetMetadata/"+name, annals.ErrInvalidArgument, func(ctx context.Context) error {
			_, err := s.SetMetadata(ctx, "good-1", annals.Any, meta)
			return err
		})
	}
	badFilters := map[string]*annals.Filter{
		"EmptyPrefix":   {StreamPrefixes: []string{"good", ""}},
		"EmptyCategory": {Categories: []string{""}},
		"EmptyType":     {EventTypes: []string{"E", ""}},
	}
	for name, f := range badFilters {
		add("ReadStream/Filter"+name, annals.ErrInvalidArgument, func(ctx context.Context) error {
			return firstErr(s.ReadStream(ctx, "good-1", &annals.ReadOptions{Filter: f}))
		})
		add("ReadAll/Filter"+name, annals.ErrInvalidArgument, func(ctx context.Context) error {
			return firstErr(s.ReadAll(ctx, &annals.ReadOptions{Filter: f}))
		})
		add("SubscribeStream/Filter"+name, annals.ErrInvalidArgument, func(ctx context.Context) error {
			return firstErr(s.SubscribeStream(ctx, "good-1", &annals.SubscribeOptions{Filter: f}))
		})
		add("SubscribeAll/Filter"+name, annals.ErrInvalidArgument, func(ctx context.Context) error {
			return firstErr(s.SubscribeAll(ctx, &annals.SubscribeOptions{Filter: f}))
		})
	}
	add("ReadStream/NegativeLimit", annals.ErrInvalidArgument, func(ctx context.Context) error {
		return firstErr(s.ReadStream(ctx, "good-1", &annals.ReadOptions{Limit: -1}))
	})
	add("ReadAll/NegativeLimit", annals.ErrInvalidArgument, func(ctx context.Context) error {
		return firstErr(s.ReadAll(ctx, &annals.ReadOptions{Limit: -1}))
	})
	add("ListStreams/NegativeLimit", annals.ErrInvalidArgument, func(ctx context.Context) error {
		_, err := collect(t, s.ListStreams(ctx, &annals.ListOptions{Limit: -1}))
		return err
	})

	for name, tt := range tests {
		t.Run(name, func(t *testing.T) {
			// A subscription that wrongly accepts its input would wait forever: bound it.
			ctx, cancel := context.WithTimeout(t.Context(), waitTimeout)
			defer cancel()
			before := takeSnapshot(t, s)
			err := tt.call(ctx)
			if errors.Is(err, context.DeadlineExceeded) {
				t.Fatalf("got no error within %v, want one matching %v", waitTimeout, tt.want)
			}
			checkErr(t, name, err, tt.want)
			if errors.Is(tt.want, annals.ErrTooLarge) && !errors.Is(err, annals.ErrInvalidArgument) {
				t.Errorf("%s: error %v matches ErrTooLarge but not ErrInvalidArgument", name, err)
			}
			checkUnchanged(t, s, before)
		})
	}
	metaAfter, expAfter, err := s.GetMetadata(t.Context(), "good-1")
	if err != nil || expAfter != expBefore || metaAfter.MaxCount != metaBefore.MaxCount {
		t.Errorf("GetMetadata after bad input: got (%+v, %v, %v), want (%+v, %v, nil)", metaAfter, expAfter, err, metaBefore, expBefore)
	}
	// Reserved names may be read: they are just not found here.
	_, err = collect(t, s.ReadStream(t.Context(), "$custom", nil))
	checkErr(t, "ReadStream($custom)", err, annals.ErrStreamNotFound)
}

// testLimits checks that input at the limits is accepted.
func testLimits(t *testing.T, open func(t *testing.T) annals.Store) {
	s := open(t)
	longest := strings.Repeat("s", annals.MaxStreamIDLength)
	mustAppend(t, s, longest, annals.NoStream, newEvent("E"))
	if got := readStream(t, s, longest, nil); len(got) != 1 {
		t.Errorf("ReadStream of a %d-byte stream id: got %d events, want 1", len(longest), len(got))
	}
	unicode := "événement-1"
	mustAppend(t, s, unicode, annals.NoStream, newEvent("É"))
	if got := readStream(t, s, unicode, nil); len(got) != 1 || got[0].Stream != unicode || got[0].Type != "É" {
		t.Errorf("ReadStream(%q): got %+v, want one event of type É", unicode, got)
	}

	// An event exactly at the size limit, and an append exactly at its limit.
	exact := annals.Event{Type: "Max", ContentType: "application/octet-stream"}
	exact.Data = make([]byte, annals.DefaultMaxEventSize-exact.Size())
	res := mustAppend(t, s, "big-1", annals.NoStream, exact)
	got := readStream(t, s, "big-1", &annals.ReadOptions{From: res.Revision})
	if len(got) != 1 || len(got[0].Data) != len(exact.Data) {
		t.Errorf("ReadStream of a 1 MiB event: got %d events, want 1 with %d bytes of data", len(got), len(exact.Data))
	}
	var full []annals.Event
	for range annals.DefaultMaxAppendSize / annals.DefaultMaxEventSize {
		e := exact
		e.ID = annals.NewUUID()
		full = append(full, e)
	}
	res = mustAppend(t, s, "big-1", annals.Exact(0), full...)
	if got, want := res.Revision, uint64(len(full)); got != want {
		t.Errorf("Append of %d bytes: got revision %d, want %d", annals.DefaultMaxAppendSize, got, want)
	}
}
