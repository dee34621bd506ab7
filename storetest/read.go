package storetest

import (
	"encoding/json"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/annalsdb/annals"
	"github.com/google/go-cmp/cmp"
)

// seedReads writes stream "read-1" (10 events, types A and B alternating by revision) and
// "other-1" (2 events) interleaved, so that revisions and positions differ:
//
//	read-1 revisions 0-3 → positions 1-4, other-1 0 → 5, read-1 4-6 → 6-8, other-1 1 → 9,
//	read-1 7-9 → 10-12.
func seedReads(t *testing.T, s annals.Store) {
	typed := func(from, n int) []annals.Event {
		var evs []annals.Event
		for r := from; r < from+n; r++ {
			evs = append(evs, newEvent([]string{"A", "B"}[r%2]))
		}
		return evs
	}
	mustAppend(t, s, "read-1", annals.NoStream, typed(0, 4)...)
	mustAppend(t, s, "other-1", annals.NoStream, newEvent("O"))
	mustAppend(t, s, "read-1", annals.Exact(3), typed(4, 3)...)
	mustAppend(t, s, "other-1", annals.Exact(0), newEvent("O"))
	mustAppend(t, s, "read-1", annals.Exact(6), typed(7, 3)...)
}

func testRead(t *testing.T, open func(t *testing.T) annals.Store) {
	s := open(t)
	seedReads(t, s)
	end := annals.End

	t.Run("Stream", func(t *testing.T) {
		tests := []struct {
			name string
			opts *annals.ReadOptions
			want []uint64 // revisions
		}{
			{"Nil", nil, seq(0, 9)},
			{"Zero", &annals.ReadOptions{}, seq(0, 9)},
			{"From", &annals.ReadOptions{From: 4}, seq(4, 9)},
			{"FromLast", &annals.ReadOptions{From: 9}, []uint64{9}},
			{"FromPastEnd", &annals.ReadOptions{From: 10}, nil},
			{"FromFarPastEnd", &annals.ReadOptions{From: 1000}, nil},
			{"Limit", &annals.ReadOptions{Limit: 3}, seq(0, 2)},
			{"FromLimit", &annals.ReadOptions{From: 2, Limit: 3}, seq(2, 4)},
			{"LimitOverEnd", &annals.ReadOptions{From: 8, Limit: 5}, seq(8, 9)},
			{"Until", &annals.ReadOptions{Until: 5}, seq(0, 4)},
			{"UntilOne", &annals.ReadOptions{Until: 1}, []uint64{0}},
			{"FromUntil", &annals.ReadOptions{From: 3, Until: 5}, seq(3, 4)},
			{"FromAtUntil", &annals.ReadOptions{From: 5, Until: 5}, nil},
			{"UntilPastEnd", &annals.ReadOptions{Until: 100}, seq(0, 9)},
			{"Backwards", &annals.ReadOptions{Backwards: true, From: end}, rseq(9, 0)},
			{"BackwardsFrom", &annals.ReadOptions{Backwards: true, From: 4}, rseq(4, 0)},
			{"BackwardsFromZero", &annals.ReadOptions{Backwards: true}, []uint64{0}},
			{"BackwardsFromPastEnd", &annals.ReadOptions{Backwards: true, From: 100}, rseq(9, 0)},
			{"BackwardsLimit", &annals.ReadOptions{Backwards: true, From: end, Limit: 2}, []uint64{9, 8}},
			{"BackwardsUntil", &annals.ReadOptions{Backwards: true, From: end, Until: 5}, rseq(4, 0)},
			{"BackwardsFromAboveUntil", &annals.ReadOptions{Backwards: true, From: 7, Until: 5}, rseq(4, 0)},
			{"BackwardsFromUntilLimit", &annals.ReadOptions{Backwards: true, From: 3, Until: 5, Limit: 2}, []uint64{3, 2}},
			{"Filter", &annals.ReadOptions{Filter: &annals.Filter{EventTypes: []string{"B"}}}, []uint64{1, 3, 5, 7, 9}},
			{"FilterLimit", &annals.ReadOptions{From: 2, Limit: 2, Filter: &annals.Filter{EventTypes: []string{"B"}}}, []uint64{3, 5}},
			{"FilterBackwards", &annals.ReadOptions{Backwards: true, From: end, Limit: 3, Filter: &annals.Filter{EventTypes: []string{"A"}}}, []uint64{8, 6, 4}},
			{"FilterOtherStream", &annals.ReadOptions{Filter: &annals.Filter{StreamPrefixes: []string{"other"}}}, nil},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				got := readStream(t, s, "read-1", tt.opts)
				if diff := cmp.Diff(tt.want, revisions(got)); diff != "" {
					t.Errorf("ReadStream(%+v) revisions (-want +got):\n%s", tt.opts, diff)
				}
				for _, e := range got {
					if e.Stream != "read-1" {
						t.Errorf("ReadStream: got an event of stream %q", e.Stream)
					}
				}
			})
		}
	})

	t.Run("All", func(t *testing.T) {
		tests := []struct {
			name string
			opts *annals.ReadOptions
			want []uint64 // positions
		}{
			{"Nil", nil, seq(1, 12)},
			{"FromZero", &annals.ReadOptions{From: 0}, seq(1, 12)},
			{"FromOne", &annals.ReadOptions{From: 1}, seq(1, 12)},
			{"From", &annals.ReadOptions{From: 5}, seq(5, 12)},
			{"FromPastEnd", &annals.ReadOptions{From: 13}, nil},
			{"Limit", &annals.ReadOptions{Limit: 4}, seq(1, 4)},
			{"FromLimit", &annals.ReadOptions{From: 9, Limit: 2}, seq(9, 10)},
			{"Until", &annals.ReadOptions{Until: 6}, seq(1, 5)},
			{"UntilOne", &annals.ReadOptions{Until: 1}, nil},
			{"FromUntil", &annals.ReadOptions{From: 4, Until: 6}, seq(4, 5)},
			{"Backwards", &annals.ReadOptions{Backwards: true, From: end}, rseq(12, 1)},
			{"BackwardsFrom", &annals.ReadOptions{Backwards: true, From: 3}, rseq(3, 1)},
			{"BackwardsFromZero", &annals.ReadOptions{Backwards: true}, nil},
			{"BackwardsLimit", &annals.ReadOptions{Backwards: true, From: end, Limit: 2}, []uint64{12, 11}},
			{"BackwardsUntil", &annals.ReadOptions{Backwards: true, From: end, Until: 6}, rseq(5, 1)},
			{"Filter", &annals.ReadOptions{Filter: &annals.Filter{StreamPrefixes: []string{"other"}}}, []uint64{5, 9}},
			{"FilterBackwards", &annals.ReadOptions{Backwards: true, From: end, Filter: &annals.Filter{Categories: []string{"other"}}}, []uint64{9, 5}},
			{"FilterLimit", &annals.ReadOptions{From: 2, Limit: 3, Filter: &annals.Filter{EventTypes: []string{"A"}}}, []uint64{3, 6, 8}},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				if diff := cmp.Diff(tt.want, positions(readAll(t, s, tt.opts))); diff != "" {
					t.Errorf("ReadAll(%+v) positions (-want +got):\n%s", tt.opts, diff)
				}
			})
		}
	})

	t.Run("AsOf", func(t *testing.T) {
		all := readAll(t, s, nil)
		checkTimes(t, all)
		for _, i := range []int{0, 3, 6, 11} {
			asOf := all[i].Time
			var wantAll, wantStream []annals.RecordedEvent
			for _, e := range all {
				if !e.Time.After(asOf) {
					wantAll = append(wantAll, e)
					if e.Stream == "read-1" {
						wantStream = append(wantStream, e)
					}
				}
			}
			opts := &annals.ReadOptions{AsOf: asOf}
			if diff := cmp.Diff(positions(wantAll), positions(readAll(t, s, opts))); diff != "" {
				t.Errorf("ReadAll as of the time of position %d (-want +got):\n%s", i+1, diff)
			}
			if diff := cmp.Diff(positions(wantStream), positions(readStream(t, s, "read-1", opts))); diff != "" {
				t.Errorf("ReadStream as of the time of position %d (-want +got):\n%s", i+1, diff)
			}
			back := &annals.ReadOptions{AsOf: asOf, Backwards: true, From: annals.End}
			slices.Reverse(wantStream)
			if diff := cmp.Diff(positions(wantStream), positions(readStream(t, s, "read-1", back))); diff != "" {
				t.Errorf("ReadStream backwards as of the time of position %d (-want +got):\n%s", i+1, diff)
			}
		}
		before := &annals.ReadOptions{AsOf: all[0].Time.Add(-time.Nanosecond)}
		if got := readAll(t, s, before); len(got) != 0 {
			t.Errorf("ReadAll as of before the first event: got %d events, want none", len(got))
		}
		if got := readStream(t, s, "read-1", before); len(got) != 0 {
			t.Errorf("ReadStream as of before the first event: got %d events, want none", len(got))
		}
	})

	t.Run("WholeEvents", func(t *testing.T) {
		all := readAll(t, s, nil)
		stream := readStream(t, s, "read-1", nil)
		var want []annals.RecordedEvent
		for _, e := range all {
			if e.Stream == "read-1" {
				want = append(want, e)
			}
		}
		if diff := cmp.Diff(want, stream, eventOpts); diff != "" {
			t.Errorf("ReadStream and ReadAll disagree (-ReadAll +ReadStream):\n%s", diff)
		}
		back := readStream(t, s, "read-1", &annals.ReadOptions{Backwards: true, From: annals.End})
		slices.Reverse(back)
		if diff := cmp.Diff(stream, back, eventOpts); diff != "" {
			t.Errorf("ReadStream backwards is not ReadStream reversed (-forwards +backwards reversed):\n%s", diff)
		}
	})

	t.Run("NotFound", func(t *testing.T) {
		evs, err := collect(t, s.ReadStream(t.Context(), "missing-1", nil))
		checkErr(t, "ReadStream of a stream never written", err, annals.ErrStreamNotFound)
		if len(evs) != 0 {
			t.Errorf("ReadStream of a stream never written: got %d events, want none", len(evs))
		}
		mustSetMetadata(t, s, "meta-only-1", annals.NoStream, annals.StreamMetadata{MaxCount: 3})
		_, err = collect(t, s.ReadStream(t.Context(), "meta-only-1", nil))
		checkErr(t, "ReadStream of a stream with metadata only", err, annals.ErrStreamNotFound)
	})

	t.Run("SystemStream", func(t *testing.T) {
		meta := annals.StreamMetadata{MaxCount: 100}
		res := mustSetMetadata(t, s, "other-1", annals.Any, meta)
		got := readStream(t, s, annals.MetaStream("other-1"), nil)
		if len(got) != 1 {
			t.Fatalf("ReadStream(%q): got %d events, want 1", annals.MetaStream("other-1"), len(got))
		}
		e := got[0]
		if e.Type != annals.MetadataEventType || e.Stream != annals.MetaStream("other-1") || e.Revision != res.Revision || e.Position != res.Position {
			t.Errorf("metadata event: got type %q stream %q revision %d position %d, want %q %q %d %d",
				e.Type, e.Stream, e.Revision, e.Position, annals.MetadataEventType, annals.MetaStream("other-1"), res.Revision, res.Position)
		}
		var decoded annals.StreamMetadata
		if err := json.Unmarshal(e.Data, &decoded); err != nil {
			t.Errorf("metadata event data %s: %v", e.Data, err)
		}
		if diff := cmp.Diff(meta, decoded); diff != "" {
			t.Errorf("metadata event data (-set +decoded):\n%s", diff)
		}
	})

	t.Run("StopEarly", func(t *testing.T) {
		// Breaking out of the loop must stop the iterator (the runtime panics otherwise).
		for _, seq := range []func() int{
			func() (n int) {
				for range s.ReadStream(t.Context(), "read-1", nil) {
					if n++; n == 2 {
						break
					}
				}
				return n
			},
			func() (n int) {
				for range s.ReadAll(t.Context(), &annals.ReadOptions{Backwards: true, From: annals.End}) {
					if n++; n == 2 {
						break
					}
				}
				return n
			},
			func() (n int) {
				for range s.ListStreams(t.Context(), nil) {
					if n++; n == 1 {
						break
					}
				}
				return n
			},
		} {
			seq()
		}
	})

	t.Run("Snapshot", func(t *testing.T) {
		// A read that runs while events are appended never returns a later event out of order
		// or a gap; it may or may not see the new events.
		var got []uint64
		appended := false
		for e, err := range s.ReadAll(t.Context(), nil) {
			if err != nil {
				t.Fatal(err)
			}
			got = append(got, e.Position)
			if !appended {
				mustAppend(t, s, "read-2", annals.Any, newEvent("During"))
				appended = true
			}
		}
		if !slices.Equal(got, seq(1, uint64(len(got)))) {
			t.Errorf("ReadAll while appending: got positions %v, want 1 to %d", got, len(got))
		}
	})
}

// testFilter checks Filter on ReadAll (both ways), SubscribeAll and ReadStream, with system
// events in the log.
func testFilter(t *testing.T, open func(t *testing.T) annals.Store) {
	t.Run("Cases", func(t *testing.T) { testFilterCases(t, open(t)) })
	t.Run("ManyEvents", func(t *testing.T) { testFilterMany(t, open(t)) })
}

// testFilterMany checks filtered reads and subscriptions over more events than a backend
// would read in one batch, against the filter applied to the whole log.
func testFilterMany(t *testing.T, s annals.Store) {
	for i := range 80 {
		evs := make([]annals.Event, 10)
		for j := range evs {
			evs[j] = newEvent([]string{"X", "Y", "Z", "X", "Y"}[(i+j)%5])
		}
		stream := fmt.Sprintf("%s-%d", []string{"cata", "catb", "catb", "cata", "catc"}[i%5], i%7)
		mustAppend(t, s, stream, annals.Any, evs...)
		if i%9 == 0 {
			mustSetMetadata(t, s, stream, annals.Any, annals.StreamMetadata{MaxCount: 1000})
		}
	}
	all := readAll(t, s, nil)
	filters := map[string]*annals.Filter{
		"Category":       {Categories: []string{"cata"}},
		"Type":           {EventTypes: []string{"X"}},
		"Prefix":         {StreamPrefixes: []string{"catb-1"}},
		"CategoryTypes":  {Categories: []string{"catb", "catc"}, EventTypes: []string{"Y", "Z"}},
		"PrefixCategory": {StreamPrefixes: []string{"cata-2"}, Categories: []string{"catc"}},
		"Rare":           {Categories: []string{"catc"}, EventTypes: []string{"Z"}},
		"System":         {EventTypes: []string{annals.MetadataEventType}},
	}
	for name, f := range filters {
		t.Run(name, func(t *testing.T) {
			var want []annals.RecordedEvent
			for _, e := range all {
				if f.Match(e.Stream, e.Type) {
					want = append(want, e)
				}
			}
			if diff := diffEvents(want, readAll(t, s, &annals.ReadOptions{Filter: f})); diff != "" {
				t.Errorf("ReadAll (-want +got):\n%s", diff)
			}
			back := readAll(t, s, &annals.ReadOptions{Filter: f, Backwards: true, From: annals.End})
			slices.Reverse(back)
			if diff := diffEvents(want, back); diff != "" {
				t.Errorf("ReadAll backwards, reversed (-want +got):\n%s", diff)
			}
			mid := want[len(want)/3]
			var fromMid []annals.RecordedEvent
			for _, e := range want {
				if e.Position >= mid.Position && len(fromMid) < len(want)/2 {
					fromMid = append(fromMid, e)
				}
			}
			opts := &annals.ReadOptions{Filter: f, From: mid.Position, Limit: len(want) / 2}
			if diff := diffEvents(fromMid, readAll(t, s, opts)); diff != "" {
				t.Errorf("ReadAll(%+v) (-want +got):\n%s", opts, diff)
			}
			c := subscribe(t, func(ctx contextT) eventSeq { return s.SubscribeAll(ctx, &annals.SubscribeOptions{Filter: f}) })
			c.waitCount(t, "SubscribeAll", len(want))
			c.stop()
			got, _, _ := c.state()
			if diff := diffEvents(want, got); diff != "" {
				t.Errorf("SubscribeAll (-want +got):\n%s", diff)
			}
		})
	}
}

func testFilterCases(t *testing.T, s annals.Store) {
	label := map[annals.UUID]string{}
	add := func(stream, eventType string) {
		e := newEvent(eventType)
		label[e.ID] = stream + "/" + eventType
		mustAppend(t, s, stream, annals.Any, e)
	}
	add("cart-1", "ItemAdded")
	add("cart-2", "ItemAdded")
	add("cartography-1", "MapDrawn")
	add("order-1", "OrderPlaced")
	add("cart-1", "CheckedOut")
	add("cart", "ItemAdded")
	mustSetMetadata(t, s, "cart-1", annals.NoStream, annals.StreamMetadata{MaxCount: 10})
	add("order-1", "ItemAdded")
	mustDelete(t, s, "cart-2", annals.Any)
	add("ordering-1", "OrderPlaced")

	labels := func(evs []annals.RecordedEvent) []string {
		var out []string
		for _, e := range evs {
			l, ok := label[e.ID]
			if !ok {
				l = e.Stream + "/" + e.Type // a system event
			}
			out = append(out, l)
		}
		return out
	}
	tests := []struct {
		name   string
		filter annals.Filter
		want   []string
	}{
		{"Prefix", annals.Filter{StreamPrefixes: []string{"cart"}},
			[]string{"cart-1/ItemAdded", "cart-2/ItemAdded", "cartography-1/MapDrawn", "cart-1/CheckedOut", "cart/ItemAdded"}},
		{"PrefixWithDash", annals.Filter{StreamPrefixes: []string{"cart-"}},
			[]string{"cart-1/ItemAdded", "cart-2/ItemAdded", "cart-1/CheckedOut"}},
		{"Prefixes", annals.Filter{StreamPrefixes: []string{"cart-2", "order"}},
			[]string{"cart-2/ItemAdded", "order-1/OrderPlaced", "order-1/ItemAdded", "ordering-1/OrderPlaced"}},
		{"Category", annals.Filter{Categories: []string{"cart"}},
			[]string{"cart-1/ItemAdded", "cart-2/ItemAdded", "cart-1/CheckedOut", "cart/ItemAdded"}},
		{"Categories", annals.Filter{Categories: []string{"order", "cartography"}},
			[]string{"cartography-1/MapDrawn", "order-1/OrderPlaced", "order-1/ItemAdded"}},
		{"Type", annals.Filter{EventTypes: []string{"ItemAdded"}},
			[]string{"cart-1/ItemAdded", "cart-2/ItemAdded", "cart/ItemAdded", "order-1/ItemAdded"}},
		{"Types", annals.Filter{EventTypes: []string{"OrderPlaced", "CheckedOut"}},
			[]string{"order-1/OrderPlaced", "cart-1/CheckedOut", "ordering-1/OrderPlaced"}},
		{"CategoryAndType", annals.Filter{Categories: []string{"order"}, EventTypes: []string{"ItemAdded"}},
			[]string{"order-1/ItemAdded"}},
		{"PrefixOrCategoryAndTypes", annals.Filter{StreamPrefixes: []string{"ordering"}, Categories: []string{"cart"}, EventTypes: []string{"OrderPlaced", "CheckedOut"}},
			[]string{"cart-1/CheckedOut", "ordering-1/OrderPlaced"}},
		{"NoMatch", annals.Filter{Categories: []string{"nothing"}}, nil},
		{"SystemType", annals.Filter{EventTypes: []string{annals.MetadataEventType, annals.DeletedEventType}},
			[]string{"$meta-cart-1/$metadata", "$meta-cart-2/$deleted"}},
		{"SystemCategory", annals.Filter{Categories: []string{"$meta"}},
			[]string{"$meta-cart-1/$metadata", "$meta-cart-2/$deleted"}},
		{"SystemPrefix", annals.Filter{StreamPrefixes: []string{"$meta-cart-2"}},
			[]string{"$meta-cart-2/$deleted"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := readAll(t, s, &annals.ReadOptions{Filter: &tt.filter})
			if diff := cmp.Diff(tt.want, labels(got)); diff != "" {
				t.Errorf("ReadAll (-want +got):\n%s", diff)
			}
			back := readAll(t, s, &annals.ReadOptions{Filter: &tt.filter, Backwards: true, From: annals.End})
			slices.Reverse(back)
			if diff := cmp.Diff(tt.want, labels(back)); diff != "" {
				t.Errorf("ReadAll backwards, reversed (-want +got):\n%s", diff)
			}
			if len(tt.want) > 0 {
				c := subscribe(t, func(ctx contextT) eventSeq {
					return s.SubscribeAll(ctx, &annals.SubscribeOptions{Filter: &tt.filter})
				})
				c.waitCount(t, "SubscribeAll", len(tt.want))
				c.stop()
				evs, _, _ := c.state()
				if diff := cmp.Diff(tt.want, labels(evs)); diff != "" {
					t.Errorf("SubscribeAll (-want +got):\n%s", diff)
				}
			}
			var wantStream []string
			for _, l := range tt.want {
				if len(l) > 7 && l[:7] == "cart-1/" {
					wantStream = append(wantStream, l)
				}
			}
			if diff := cmp.Diff(wantStream, labels(readStream(t, s, "cart-1", &annals.ReadOptions{Filter: &tt.filter}))); diff != "" {
				t.Errorf("ReadStream(cart-1) (-want +got):\n%s", diff)
			}
		})
	}
}
