package rules_test

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/annalsdb/annals"
	"github.com/annalsdb/annals/internal/rules"
)

func TestVisibleFrom(t *testing.T) {
	for _, tc := range []struct {
		name       string
		next, base uint64
		meta       annals.StreamMetadata
		want       uint64
	}{
		{"none", 5, 0, annals.StreamMetadata{}, 0},
		{"soft deleted", 5, 3, annals.StreamMetadata{}, 3},
		{"truncateBefore", 5, 0, annals.StreamMetadata{TruncateBefore: 2}, 2},
		{"truncateBefore beyond the end", 2, 0, annals.StreamMetadata{TruncateBefore: 100}, 2},
		{"maxCount", 5, 0, annals.StreamMetadata{MaxCount: 2}, 3},
		{"maxCount above the count", 2, 0, annals.StreamMetadata{MaxCount: 5}, 0},
		{"highest wins", 10, 4, annals.StreamMetadata{TruncateBefore: 6, MaxCount: 3}, 7},
		{"empty stream", 0, 0, annals.StreamMetadata{TruncateBefore: 9}, 0},
	} {
		s := rules.Stream{Next: tc.next, Base: tc.base}
		if got := rules.VisibleFrom(&s, &tc.meta); got != tc.want {
			t.Errorf("%s: VisibleFrom = %d, want %d", tc.name, got, tc.want)
		}
	}
}

func TestSubscribeStart(t *testing.T) {
	s := rules.Stream{Next: 2}
	meta := annals.StreamMetadata{TruncateBefore: 100}
	for _, tc := range []struct{ from, want uint64 }{{0, 2}, {1, 2}, {annals.End, 2}, {7, 7}} {
		if got := rules.SubscribeStart(&s, &meta, tc.from); got != tc.want {
			t.Errorf("SubscribeStart(from %d) with truncateBefore 100 on 2 events = %d, want %d", tc.from, got, tc.want)
		}
	}
}

func TestAge(t *testing.T) {
	now := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	if _, ok := rules.AgeCutoff(&annals.StreamMetadata{}, now); ok {
		t.Fatal("AgeCutoff without maxAge reports a cutoff")
	}
	cutoff, ok := rules.AgeCutoff(&annals.StreamMetadata{MaxAge: time.Hour}, now)
	if !ok || !cutoff.Equal(now.Add(-time.Hour)) {
		t.Fatalf("AgeCutoff = %v, %v; want %v", cutoff, ok, now.Add(-time.Hour))
	}
	if rules.Young(cutoff, cutoff) || !rules.Young(cutoff.Add(time.Nanosecond), cutoff) || !rules.Young(cutoff, time.Time{}) {
		t.Fatal("Young: an event at the cutoff is hidden, one after it is not, and no cutoff hides nothing")
	}
}

func TestRepeatWindow(t *testing.T) {
	id := annals.NewUUID()
	for _, tc := range []struct {
		name     string
		s        rules.Stream
		e        annals.ExpectedRevision
		n        int
		from     uint64
		possible bool
	}{
		{"exact after r", rules.Stream{Next: 5}, annals.Exact(1), 2, 2, true},
		{"exact at the end", rules.Stream{Next: 5}, annals.Exact(4), 1, 0, false},
		{"exact past the end", rules.Stream{Next: 5}, annals.Exact(3), 2, 0, false},
		{"exact before the incarnation", rules.Stream{Next: 5, Base: 3}, annals.Exact(0), 1, 0, false},
		{"exact at the incarnation", rules.Stream{Next: 5, Base: 3}, annals.Exact(2), 1, 3, true},
		{"no stream: the incarnation's first", rules.Stream{Next: 5, Base: 3}, annals.NoStream, 2, 3, true},
		{"no stream when none", rules.Stream{Next: 3, Base: 3}, annals.NoStream, 1, 0, false},
		{"any: the last", rules.Stream{Next: 5}, annals.Any, 2, 3, true},
		{"any: last id differs", rules.Stream{Next: 5, LastID: annals.NewUUID()}, annals.Any, 1, 0, false},
		{"any: last id matches", rules.Stream{Next: 5, LastID: id}, annals.StreamExists, 1, 4, true},
		{"any: more than the incarnation", rules.Stream{Next: 5, Base: 4}, annals.Any, 2, 0, false},
	} {
		from, ok := tc.s.RepeatWindow(tc.e, tc.n, id)
		if ok != tc.possible || (ok && from != tc.from) {
			t.Errorf("%s: RepeatWindow = %d, %v; want %d, %v", tc.name, from, ok, tc.from, tc.possible)
		}
	}
}

func TestAppendOrder(t *testing.T) {
	events := []annals.Event{{ID: annals.NewUUID(), Type: "A"}}
	stored := func(ids ...annals.UUID) func(uint64, int) ([]annals.UUID, []uint64, error) {
		return func(from uint64, n int) ([]annals.UUID, []uint64, error) {
			return ids, []uint64{42}, nil
		}
	}
	// A tombstone first, even for a repeat.
	s := rules.Stream{Name: "s", Next: 1, Tombstoned: true}
	if _, write, err := rules.Append(&s, annals.NoStream, events, stored(events[0].ID)); write || !errors.Is(err, annals.ErrStreamDeleted) {
		t.Fatalf("append to a tombstoned stream: write %v, %v", write, err)
	}
	// Then a repeat, which wins over the failed expectation.
	s = rules.Stream{Name: "s", Next: 1}
	res, write, err := rules.Append(&s, annals.NoStream, events, stored(events[0].ID))
	if write || err != nil || res != (annals.AppendResult{Revision: 0, Position: 42}) {
		t.Fatalf("repeat: %+v, write %v, %v", res, write, err)
	}
	// Then the expectation.
	_, write, err = rules.Append(&s, annals.NoStream, events, stored(annals.NewUUID()))
	if wev, ok := errors.AsType[*annals.WrongExpectedVersionError](err); write || !ok || wev.Actual != annals.Exact(0) {
		t.Fatalf("conflict: write %v, %v", write, err)
	}
	if _, write, err = rules.Append(&s, annals.Exact(0), events, stored()); !write || err != nil {
		t.Fatalf("append: write %v, %v", write, err)
	}
}

func TestDeleteOrder(t *testing.T) {
	gone := rules.Stream{Name: "s", Next: 3, Base: 3}
	if err := rules.Delete(&gone, annals.Exact(7)); !errors.Is(err, annals.ErrWrongExpectedVersion) {
		t.Fatalf("delete of a deleted stream with a wrong expectation: %v, want a conflict first", err)
	}
	if err := rules.Delete(&gone, annals.Any); !errors.Is(err, annals.ErrStreamNotFound) {
		t.Fatalf("delete of a deleted stream: %v", err)
	}
	dead := rules.Stream{Name: "s", Tombstoned: true}
	for _, err := range []error{rules.Delete(&dead, annals.Exact(7)), rules.Tombstone(&dead, annals.Any), rules.SetMetadata(&dead, &rules.Stream{}, annals.Exact(9))} {
		if !errors.Is(err, annals.ErrStreamDeleted) {
			t.Fatalf("on a tombstoned stream: %v, want ErrStreamDeleted first", err)
		}
	}
	if err := rules.Tombstone(&rules.Stream{Name: "never"}, annals.NoStream); err != nil {
		t.Fatalf("tombstone of a stream that never existed: %v", err)
	}
}

func TestMetadataEvent(t *testing.T) {
	big := annals.StreamMetadata{Custom: []byte(`"` + strings.Repeat("x", 1<<20) + `"`)}
	if _, err := rules.MetadataEvent(annals.Limits{}, "s", annals.Any, big); !errors.Is(err, annals.ErrTooLarge) {
		t.Fatalf("1 MiB of custom JSON: %v, want ErrTooLarge", err)
	}
	ev, err := rules.MetadataEvent(annals.Limits{}, "s", annals.Any, annals.StreamMetadata{MaxCount: 3})
	if err != nil || ev.ID.IsZero() || ev.Type != annals.MetadataEventType || ev.ContentType != annals.ContentTypeJSON {
		t.Fatalf("MetadataEvent = %+v, %v", ev, err)
	}
	for _, tc := range []struct {
		stream string
		e      annals.ExpectedRevision
		meta   annals.StreamMetadata
	}{
		{"$meta-s", annals.Any, annals.StreamMetadata{}},
		{"s", annals.ExpectedRevision(-9), annals.StreamMetadata{}},
		{"s", annals.Any, annals.StreamMetadata{MaxAge: -1}},
	} {
		if _, err := rules.MetadataEvent(annals.Limits{}, tc.stream, tc.e, tc.meta); !errors.Is(err, annals.ErrInvalidArgument) {
			t.Errorf("MetadataEvent(%q, %v, %+v): %v, want ErrInvalidArgument", tc.stream, tc.e, tc.meta, err)
		}
	}
}

func TestMetadataRevision(t *testing.T) {
	if got := rules.MetadataRevision(&rules.Stream{}); got != annals.NoStream {
		t.Fatalf("no metadata stream: %v", got)
	}
	if got := rules.MetadataRevision(&rules.Stream{Next: 1}); got != annals.Exact(0) {
		t.Fatalf("after one system event: %v", got)
	}
}

func TestOptions(t *testing.T) {
	for _, tc := range []struct {
		name string
		err  error
		want error
	}{
		{"large limit", func() error { _, err := rules.ReadOptions(&annals.ReadOptions{Limit: int(^uint(0) >> 1)}); return err }(), nil},
		{"negative limit", func() error { _, err := rules.ReadOptions(&annals.ReadOptions{Limit: -1}); return err }(), annals.ErrInvalidArgument},
		{"bad stream", func() error { _, err := rules.StreamReadOptions("", nil); return err }(), annals.ErrInvalidArgument},
		{"invalid UTF-8 prefix", func() error {
			_, err := rules.SubscribeOptions(&annals.SubscribeOptions{Filter: &annals.Filter{StreamPrefixes: []string{"\xff"}}})
			return err
		}(), annals.ErrInvalidArgument},
		{"control character in a type", func() error {
			_, err := rules.ReadOptions(&annals.ReadOptions{Filter: &annals.Filter{EventTypes: []string{"a\x00"}}})
			return err
		}(), annals.ErrInvalidArgument},
		{"invalid UTF-8 list prefix", func() error { _, err := rules.ListOptions(&annals.ListOptions{Prefix: "\xc3"}); return err }(), annals.ErrInvalidArgument},
		{"invalid UTF-8 list start", func() error { _, err := rules.ListOptions(&annals.ListOptions{After: "\xc3"}); return err }(), annals.ErrInvalidArgument},
		{"negative list limit", func() error { _, err := rules.ListOptions(&annals.ListOptions{Limit: -1}); return err }(), annals.ErrInvalidArgument},
		{"nil options", func() error { _, err := rules.StreamSubscribeOptions("s", nil); return err }(), nil},
	} {
		if (tc.want == nil) != (tc.err == nil) || !errors.Is(tc.err, tc.want) {
			t.Errorf("%s: %v, want %v", tc.name, tc.err, tc.want)
		}
	}
}
