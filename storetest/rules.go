package storetest

import (
	"context"
	"encoding/json"
	"errors"
	"math"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/annalsdb/annals"
	"github.com/annalsdb/annals/internal/testwait"
)

// testRules checks the rules every backend shares (package internal/rules): the visibility
// window, the size of metadata, the validation of filters and list options as text, read
// limits, the order of checks (input, then context, then state), GetMetadata's expected
// revision after a delete, and filters over system events.
func testRules(t *testing.T, open func(t *testing.T) annals.Store) {
	s := open(t)
	t.Run("TruncateBeyondEnd", func(t *testing.T) { testTruncateBeyondEnd(t, s) })
	t.Run("MetadataTooLarge", func(t *testing.T) { testMetadataTooLarge(t, s) })
	t.Run("SubscribeMaxAge", func(t *testing.T) { testSubscribeMaxAge(t, s) })
	t.Run("TextOptions", func(t *testing.T) { testTextOptions(t, s) })
	t.Run("LargeLimit", func(t *testing.T) { testLargeLimit(t, s) })
	t.Run("CheckOrder", func(t *testing.T) { testCheckOrder(t, s) })
	t.Run("MetadataAfterDelete", func(t *testing.T) { testMetadataAfterDelete(t, s) })
	t.Run("FilterSystemEvents", func(t *testing.T) { testFilterSystemEvents(t, s) })
	t.Run("RepeatWindow", func(t *testing.T) { testRepeatWindow(t, s) })
}

// testTruncateBeyondEnd: truncateBefore beyond the end hides every stored event, and a
// subscription started then delivers the events appended after it, from the stream's end.
func testTruncateBeyondEnd(t *testing.T, s annals.Store) {
	const stream = "rules_trunc-1"
	mustAppend(t, s, stream, annals.NoStream, newEvents(2, "A")...)
	mustSetMetadata(t, s, stream, annals.NoStream, annals.StreamMetadata{TruncateBefore: 100})
	if got := readStream(t, s, stream, nil); len(got) != 0 {
		t.Fatalf("read with truncateBefore 100 of a 2-event stream: revisions %v, want none", revisions(got))
	}
	// When the subscription starts is not observable: append until it delivers something, and
	// check that it started at the stream's end then, not at revision 100.
	for _, from := range []uint64{0, annals.End} {
		c := subscribe(t, func(ctx contextT) eventSeq {
			return s.SubscribeStream(ctx, stream, &annals.SubscribeOptions{From: from})
		})
		var last uint64
		testwait.Until(t, "subscription with truncateBefore 100 delivers", func() bool {
			last = mustAppend(t, s, stream, annals.Any, newEvent("B")).Revision
			evs, _, _ := c.state()
			return len(evs) > 0
		})
		c.waitCount(t, "subscription after truncateBefore 100", 1)
		evs, _, _ := c.state()
		if first := evs[0].Revision; first < 2 || first >= 100 || first > last {
			t.Fatalf("subscription from %d with truncateBefore 100 on a 2-event stream first delivered revision %d; want one appended after it started (2 … %d)", from, first, last)
		}
		c.stop()
	}
}

// testMetadataTooLarge: the event that records metadata obeys the event size limit, and the
// size is input, checked before a tombstone or a conflict.
func testMetadataTooLarge(t *testing.T, s annals.Store) {
	big := annals.StreamMetadata{Custom: json.RawMessage(`"` + strings.Repeat("x", 1<<20) + `"`)}
	const stream = "rules_bigmeta-1"
	before := takeSnapshot(t, s)
	_, err := s.SetMetadata(t.Context(), stream, annals.Any, big)
	checkErr(t, "SetMetadata with 1 MiB of custom JSON", err, annals.ErrTooLarge)
	checkUnchanged(t, s, before)
	mustAppend(t, s, stream, annals.NoStream, newEvent("A"))
	mustSetMetadata(t, s, stream, annals.NoStream, annals.StreamMetadata{MaxCount: 3})
	before = takeSnapshot(t, s)
	_, err = s.SetMetadata(t.Context(), stream, annals.NoStream, big)
	checkErr(t, "oversized SetMetadata with a wrong expectation", err, annals.ErrTooLarge)
	checkUnchanged(t, s, before)
	mustTombstone(t, s, stream, annals.Any)
	before = takeSnapshot(t, s)
	_, err = s.SetMetadata(t.Context(), stream, annals.Any, big)
	checkErr(t, "oversized SetMetadata on a tombstoned stream", err, annals.ErrTooLarge)
	checkUnchanged(t, s, before)
	// Just under the limit is accepted.
	const ok = "rules_bigmeta-2"
	fits := annals.StreamMetadata{Custom: json.RawMessage(`"` + strings.Repeat("x", 1<<20-200) + `"`)}
	if _, err := s.SetMetadata(t.Context(), ok, annals.NoStream, fits); err != nil {
		t.Fatalf("SetMetadata with custom JSON just under the limit: %v", err)
	}
}

// testSubscribeMaxAge: a subscription starts past the events maxAge hides when it starts.
func testSubscribeMaxAge(t *testing.T, s annals.Store) {
	const stream = "rules_age-1"
	mustAppend(t, s, stream, annals.NoStream, newEvents(2, "A")...)
	mustSetMetadata(t, s, stream, annals.NoStream, annals.StreamMetadata{MaxAge: 50 * time.Millisecond})
	testwait.Until(t, "maxAge hides the stream's events", func() bool { return len(readStream(t, s, stream, nil)) == 0 })
	c := subscribe(t, func(ctx contextT) eventSeq { return s.SubscribeStream(ctx, stream, nil) })
	res := mustAppend(t, s, stream, annals.Any, newEvent("B"))
	c.waitCount(t, "subscription after maxAge", 1)
	evs, _, _ := c.state()
	if evs[0].Revision != res.Revision {
		t.Fatalf("subscription to a stream whose events maxAge hides first delivered revision %d, want %d", evs[0].Revision, res.Revision)
	}
}

// testTextOptions: filter values and list options that no stream id or event type can be
// (invalid UTF-8, control characters) are invalid arguments everywhere.
func testTextOptions(t *testing.T, s annals.Store) {
	mustAppend(t, s, "rules_text-1", annals.Any, newEvent("A"))
	for _, bad := range []string{"\xff", "cart-\xc3", "a\x00b", "a\nb"} {
		filters := []*annals.Filter{{StreamPrefixes: []string{bad}}, {Categories: []string{bad}}, {EventTypes: []string{bad}}}
		for _, f := range filters {
			_, err := collect(t, s.ReadAll(t.Context(), &annals.ReadOptions{Filter: f}))
			checkErr(t, "ReadAll with filter "+describeFilter(f), err, annals.ErrInvalidArgument)
			_, err = collect(t, s.ReadStream(t.Context(), "rules_text-1", &annals.ReadOptions{Filter: f}))
			checkErr(t, "ReadStream with filter "+describeFilter(f), err, annals.ErrInvalidArgument)
			checkErr(t, "SubscribeAll with filter "+describeFilter(f), firstError(t, s.SubscribeAll(t.Context(), &annals.SubscribeOptions{Filter: f})), annals.ErrInvalidArgument)
		}
		_, err := collect(t, s.ListStreams(t.Context(), &annals.ListOptions{Prefix: bad}))
		checkErr(t, "ListStreams with prefix "+quote(bad), err, annals.ErrInvalidArgument)
		_, err = collect(t, s.ListStreams(t.Context(), &annals.ListOptions{After: bad}))
		checkErr(t, "ListStreams after "+quote(bad), err, annals.ErrInvalidArgument)
	}
}

func describeFilter(f *annals.Filter) string {
	b, _ := json.Marshal(f)
	return string(b)
}

func quote(s string) string { return strconv.Quote(s) }

// firstError returns the error a subscription yields first; it fails the test if the
// subscription yields an event or nothing within waitTimeout.
func firstError(t testing.TB, seq eventSeq) error {
	t.Helper()
	c := subscribe(t, func(contextT) eventSeq { return seq })
	defer c.stop()
	if !c.waitFor(waitTimeout, func(evs []annals.RecordedEvent, err error, ended bool) bool { return ended || len(evs) > 0 }) {
		t.Fatalf("subscription yielded nothing within %v, want an error", waitTimeout)
	}
	evs, err, _ := c.state()
	if len(evs) > 0 {
		t.Fatalf("subscription yielded an event at position %d, want an error", evs[0].Position)
	}
	return err
}

// testLargeLimit: any non-negative Limit is valid, up to the largest int; a negative one is
// not.
func testLargeLimit(t *testing.T, s annals.Store) {
	const stream = "rules_limit-1"
	mustAppend(t, s, stream, annals.Any, newEvents(3, "A")...)
	for _, limit := range []int{math.MaxInt32 + 1, math.MaxInt} {
		if got := readStream(t, s, stream, &annals.ReadOptions{Limit: limit}); len(got) != 3 {
			t.Fatalf("ReadStream with Limit %d: %d events, want 3", limit, len(got))
		}
		if got := readStream(t, s, stream, &annals.ReadOptions{Limit: limit, Backwards: true, From: annals.End}); len(got) != 3 {
			t.Fatalf("backwards ReadStream with Limit %d: %d events, want 3", limit, len(got))
		}
		if got := readAll(t, s, &annals.ReadOptions{Limit: limit}); len(got) == 0 {
			t.Fatalf("ReadAll with Limit %d: no events", limit)
		}
		if got := listStreams(t, s, &annals.ListOptions{Limit: limit, Prefix: "rules_limit-"}); len(got) != 1 {
			t.Fatalf("ListStreams with Limit %d: %d streams, want 1", limit, len(got))
		}
	}
	_, err := collect(t, s.ReadStream(t.Context(), stream, &annals.ReadOptions{Limit: -1}))
	checkErr(t, "ReadStream with Limit -1", err, annals.ErrInvalidArgument)
	_, err = collect(t, s.ReadAll(t.Context(), &annals.ReadOptions{Limit: math.MinInt}))
	checkErr(t, "ReadAll with the lowest Limit", err, annals.ErrInvalidArgument)
	_, err = collect(t, s.ListStreams(t.Context(), &annals.ListOptions{Limit: -1}))
	checkErr(t, "ListStreams with Limit -1", err, annals.ErrInvalidArgument)
}

// testCheckOrder: bad input is reported as such whatever the context; with a cancelled
// context, a valid call returns the context's error, never a state of the store. (Sizes are
// input too, but a client over the network leaves them to the server, so they are checked
// against the stream's state in testMetadataTooLarge instead.)
func testCheckOrder(t *testing.T, s annals.Store) {
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	const missing = "rules_order-missing"
	const present = "rules_order-1"
	mustAppend(t, s, present, annals.Any, newEvent("A"))
	bad := &annals.Filter{StreamPrefixes: []string{""}}
	for _, tc := range []struct {
		what string
		err  func() error
		want error
	}{
		{"ReadStream of a missing stream", func() error { _, err := collect(t, s.ReadStream(ctx, missing, nil)); return err }, context.Canceled},
		{"ReadStream", func() error { _, err := collect(t, s.ReadStream(ctx, present, nil)); return err }, context.Canceled},
		{"backwards ReadStream", func() error {
			_, err := collect(t, s.ReadStream(ctx, present, &annals.ReadOptions{Backwards: true, From: annals.End}))
			return err
		}, context.Canceled},
		{"ReadAll", func() error { _, err := collect(t, s.ReadAll(ctx, nil)); return err }, context.Canceled},
		{"ReadAll filtered", func() error {
			_, err := collect(t, s.ReadAll(ctx, &annals.ReadOptions{Filter: &annals.Filter{Categories: []string{"rules_order"}}}))
			return err
		}, context.Canceled},
		{"ListStreams", func() error { _, err := collect(t, s.ListStreams(ctx, nil)); return err }, context.Canceled},
		{"SubscribeStream", func() error { _, err := collect(t, s.SubscribeStream(ctx, missing, nil)); return err }, context.Canceled},
		{"SubscribeAll", func() error { _, err := collect(t, s.SubscribeAll(ctx, nil)); return err }, context.Canceled},
		{"GetMetadata", func() error { _, _, err := s.GetMetadata(ctx, missing); return err }, context.Canceled},
		{"Append", func() error { _, err := s.Append(ctx, present, annals.NoStream, newEvent("A")); return err }, context.Canceled},
		{"Delete of a missing stream", func() error { _, err := s.Delete(ctx, missing, annals.Any); return err }, context.Canceled},
		{"Tombstone", func() error { _, err := s.Tombstone(ctx, missing, annals.Any); return err }, context.Canceled},
		{"SetMetadata", func() error { _, err := s.SetMetadata(ctx, missing, annals.Any, annals.StreamMetadata{}); return err }, context.Canceled},
		// Bad input first.
		{"ReadStream of an empty stream id", func() error { _, err := collect(t, s.ReadStream(ctx, "", nil)); return err }, annals.ErrInvalidArgument},
		{"ReadAll with a bad filter", func() error { _, err := collect(t, s.ReadAll(ctx, &annals.ReadOptions{Filter: bad})); return err }, annals.ErrInvalidArgument},
		{"ReadAll with a negative limit", func() error { _, err := collect(t, s.ReadAll(ctx, &annals.ReadOptions{Limit: -1})); return err }, annals.ErrInvalidArgument},
		{"ListStreams with a negative limit", func() error { _, err := collect(t, s.ListStreams(ctx, &annals.ListOptions{Limit: -1})); return err }, annals.ErrInvalidArgument},
		{"SubscribeAll with a bad filter", func() error {
			_, err := collect(t, s.SubscribeAll(ctx, &annals.SubscribeOptions{Filter: bad}))
			return err
		}, annals.ErrInvalidArgument},
		{"SubscribeStream of $all", func() error { _, err := collect(t, s.SubscribeStream(ctx, annals.AllStream, nil)); return err }, annals.ErrInvalidArgument},
		{"GetMetadata of an empty stream id", func() error { _, _, err := s.GetMetadata(ctx, ""); return err }, annals.ErrInvalidArgument},
		{"Append of no events", func() error { _, err := s.Append(ctx, present, annals.Any); return err }, annals.ErrInvalidArgument},
		{"Delete of a system stream", func() error { _, err := s.Delete(ctx, "$meta-x", annals.Any); return err }, annals.ErrInvalidArgument},
		{"SetMetadata of invalid metadata", func() error {
			_, err := s.SetMetadata(ctx, present, annals.Any, annals.StreamMetadata{MaxAge: -time.Second})
			return err
		}, annals.ErrInvalidArgument},
	} {
		err := tc.err()
		if !errors.Is(err, tc.want) {
			t.Errorf("%s with a cancelled context: got %v, want %v", tc.what, err, tc.want)
		}
	}
}

// testMetadataAfterDelete: GetMetadata's expected revision is that of the metadata stream,
// which a soft delete also writes to.
func testMetadataAfterDelete(t *testing.T, s annals.Store) {
	const stream = "rules_metadel-1"
	mustAppend(t, s, stream, annals.NoStream, newEvent("A"))
	mustDelete(t, s, stream, annals.Any)
	meta, exp, err := s.GetMetadata(t.Context(), stream)
	if err != nil {
		t.Fatal(err)
	}
	if exp != annals.Exact(0) || meta.MaxCount != 0 || meta.Custom != nil {
		t.Fatalf("GetMetadata after Delete of a stream without metadata: %+v, %v; want the zero metadata and Exact(0)", meta, exp)
	}
	_, err = s.SetMetadata(t.Context(), stream, annals.NoStream, annals.StreamMetadata{MaxCount: 1})
	checkConflict(t, "SetMetadata(NoStream) after Delete", err, annals.MetaStream(stream), annals.NoStream, annals.Exact(0))
	mustSetMetadata(t, s, stream, exp, annals.StreamMetadata{MaxCount: 1})
}

// testFilterSystemEvents: a filter applies to system events as to any other.
func testFilterSystemEvents(t *testing.T, s annals.Store) {
	const stream = "rules_sys-1"
	mustAppend(t, s, stream, annals.NoStream, newEvent("A"))
	pos := mustDelete(t, s, stream, annals.Any)
	has := func(f *annals.Filter) bool {
		for _, e := range readAll(t, s, &annals.ReadOptions{Filter: f}) {
			if e.Position == pos {
				return true
			}
		}
		return false
	}
	for _, tc := range []struct {
		f    *annals.Filter
		want bool
	}{
		{&annals.Filter{EventTypes: []string{annals.DeletedEventType}}, true},
		{&annals.Filter{Categories: []string{"$meta"}}, true},
		{&annals.Filter{StreamPrefixes: []string{"$meta-rules_sys-"}}, true},
		{&annals.Filter{Categories: []string{"rules_sys"}}, false},
		{&annals.Filter{StreamPrefixes: []string{"rules_sys-"}}, false},
		{&annals.Filter{EventTypes: []string{"A"}}, false},
	} {
		if got := has(tc.f); got != tc.want {
			t.Errorf("ReadAll with filter %s returns the $deleted event: %v, want %v", describeFilter(tc.f), got, tc.want)
		}
	}
}

// testRepeatWindow: where a repeated append is recognised, for each expectation.
func testRepeatWindow(t *testing.T, s annals.Store) {
	const stream = "rules_repeat-1"
	first := newEvents(2, "A")
	res := mustAppend(t, s, stream, annals.NoStream, first...)
	second := newEvents(1, "B")
	mustAppend(t, s, stream, annals.Exact(1), second...)
	// Exact(r) looks after r, NoStream at the start, Any at the end.
	for _, tc := range []struct {
		e      annals.ExpectedRevision
		events []annals.Event
		want   annals.AppendResult
	}{
		{annals.NoStream, first, res},
		{annals.Exact(1), second, annals.AppendResult{Revision: 2}},
		{annals.Any, second, annals.AppendResult{Revision: 2}},
		{annals.StreamExists, second, annals.AppendResult{Revision: 2}},
	} {
		got, err := s.Append(t.Context(), stream, tc.e, tc.events...)
		if err != nil || got.Revision != tc.want.Revision {
			t.Fatalf("repeat with %v: %+v, %v; want revision %d", tc.e, got, err, tc.want.Revision)
		}
	}
	// Any at the end: the first append is no longer the stream's last events, so it is
	// written again (with new revisions) rather than recognised.
	got, err := s.Append(t.Context(), stream, annals.Any, first...)
	if err != nil || got.Revision != 4 {
		t.Fatalf("Any with IDs not at the stream's end: %+v, %v; want written at revision 4", got, err)
	}
	// Exact with only part of the IDs in place is a conflict.
	_, err = s.Append(t.Context(), stream, annals.Exact(1), second[0], newEvent("C"))
	checkConflict(t, "partial repeat with Exact(1)", err, stream, annals.Exact(1), annals.Exact(4))
}
