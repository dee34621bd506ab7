package filestore

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/annalsdb/annals"
	"github.com/cockroachdb/pebble/v2"
)

// longReadStore fills a store of several small segments with two streams of single-event
// appends, interleaved (so that every one of their events is an index run of its own), and a
// stream of one append longer than a read batch. It returns the events written, by position
// (index 0 is position 1).
func longReadStore(t *testing.T) (*Store, string, []annals.RecordedEvent) {
	t.Helper()
	dir := t.TempDir()
	s, err := Open(dir, &Options{Limits: annals.Limits{MaxEventSize: 64 << 10, MaxAppendSize: 256 << 10}, SegmentSize: 1536 << 10})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	ctx := context.Background()
	var want []annals.RecordedEvent
	event := func(stream string, rev uint64) annals.Event {
		typ := "Common"
		if rev%50 == 7 {
			typ = "Rare"
		}
		data := fmt.Appendf(nil, `{"stream":%q,"rev":%d,"pad":"%s"}`, stream, rev, strings.Repeat("x", 1500))
		return annals.Event{Type: typ, Data: data}
	}
	record := func(stream string, res annals.AppendResult, events []annals.Event) {
		first := res.Revision + 1 - uint64(len(events))
		for i, e := range events {
			want = append(want, annals.RecordedEvent{Stream: stream, Type: e.Type, Data: e.Data, Revision: first + uint64(i), Position: res.Position + 1 - uint64(len(events)) + uint64(i)})
		}
	}
	const single = 1100 // beyond readBatch*4, for the scan limit of filtered reads
	for rev := range uint64(single) {
		for _, stream := range []string{"a-1", "b-1"} {
			e := event(stream, rev)
			res, err := s.Append(ctx, stream, annals.Any, e)
			if err != nil {
				t.Fatal(err)
			}
			record(stream, res, []annals.Event{e})
		}
		if rev == single/2 {
			events := make([]annals.Event, 150)
			for i := range events {
				events[i] = event("c-1", uint64(i))
			}
			res, err := s.Append(ctx, "c-1", annals.NoStream, events...)
			if err != nil {
				t.Fatal(err)
			}
			record("c-1", res, events)
		}
	}
	if n := len(*s.segs.Load()); n < 3 {
		t.Fatalf("%d segments, want the test to span several", n)
	}
	return s, dir, want
}

func collect(t *testing.T, seq func(func(annals.RecordedEvent, error) bool)) []annals.RecordedEvent {
	t.Helper()
	var out []annals.RecordedEvent
	for ev, err := range seq {
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, ev)
	}
	return out
}

// sameEvents compares what a read returned with the events expected, in order.
func sameEvents(t *testing.T, what string, got, want []annals.RecordedEvent) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("%s: %d events, want %d", what, len(got), len(want))
	}
	for i := range got {
		g, w := got[i], want[i]
		if g.Stream != w.Stream || g.Type != w.Type || g.Revision != w.Revision || g.Position != w.Position || string(g.Data) != string(w.Data) {
			t.Fatalf("%s: event %d is %s@%d (position %d, %q), want %s@%d (position %d, %q)", what, i,
				g.Stream, g.Revision, g.Position, g.Type, w.Stream, w.Revision, w.Position, w.Type)
		}
	}
}

func TestLongReads(t *testing.T) {
	s, _, all := longReadStore(t)
	ctx := context.Background()
	of := func(stream string, keep func(annals.RecordedEvent) bool) []annals.RecordedEvent {
		var out []annals.RecordedEvent
		for _, ev := range all {
			if ev.Stream == stream && (keep == nil || keep(ev)) {
				out = append(out, ev)
			}
		}
		return out
	}
	rare := func(ev annals.RecordedEvent) bool { return ev.Type == "Rare" }
	backwards := func(evs []annals.RecordedEvent) []annals.RecordedEvent {
		evs = slices.Clone(evs)
		slices.Reverse(evs)
		return evs
	}

	for _, stream := range []string{"a-1", "b-1", "c-1"} {
		evs := of(stream, nil)
		sameEvents(t, stream, collect(t, s.ReadStream(ctx, stream, nil)), evs)
		sameEvents(t, stream+" from 100, limit 10", collect(t, s.ReadStream(ctx, stream, &annals.ReadOptions{From: 100, Limit: 10})), evs[100:110])
		sameEvents(t, stream+" until 140", collect(t, s.ReadStream(ctx, stream, &annals.ReadOptions{Until: 140})), evs[:140])
		sameEvents(t, stream+" of type Rare", collect(t, s.ReadStream(ctx, stream, &annals.ReadOptions{Filter: &annals.Filter{EventTypes: []string{"Rare"}}})), of(stream, rare))
		sameEvents(t, stream+" backwards", collect(t, s.ReadStream(ctx, stream, &annals.ReadOptions{Backwards: true, From: annals.End})), backwards(evs))
		sameEvents(t, stream+" backwards from 120, limit 10", collect(t, s.ReadStream(ctx, stream, &annals.ReadOptions{Backwards: true, From: 120, Limit: 10})), backwards(evs[111:121]))
		sameEvents(t, stream+" backwards until 140", collect(t, s.ReadStream(ctx, stream, &annals.ReadOptions{Backwards: true, From: annals.End, Until: 140})), backwards(evs[:140]))
		sameEvents(t, stream+" backwards of type Rare", collect(t, s.ReadStream(ctx, stream, &annals.ReadOptions{Backwards: true, From: annals.End, Filter: &annals.Filter{EventTypes: []string{"Rare"}}})), backwards(of(stream, rare)))
	}

	sameEvents(t, "$all", collect(t, s.ReadAll(ctx, nil)), all)
	for _, from := range []uint64{1, 2, 1000, 1101, 1102, 1200, uint64(len(all)), uint64(len(all)) + 1} {
		i := min(int(from)-1, len(all))
		sameEvents(t, fmt.Sprintf("$all from %d, limit 300", from), collect(t, s.ReadAll(ctx, &annals.ReadOptions{From: from, Limit: 300})), all[i:min(i+300, len(all))])
	}
	sameEvents(t, "$all until 1150", collect(t, s.ReadAll(ctx, &annals.ReadOptions{From: 900, Until: 1150})), all[899:1149])
	sameEvents(t, "$all of type Rare", collect(t, s.ReadAll(ctx, &annals.ReadOptions{Filter: &annals.Filter{StreamPrefixes: []string{"a-", "c-"}, EventTypes: []string{"Rare"}}})),
		slices.DeleteFunc(slices.Clone(all), func(ev annals.RecordedEvent) bool { return ev.Type != "Rare" || ev.Stream == "b-1" }))
	sameEvents(t, "$all backwards", collect(t, s.ReadAll(ctx, &annals.ReadOptions{Backwards: true, From: annals.End})), backwards(all))
	sameEvents(t, "$all backwards from 1200, limit 300", collect(t, s.ReadAll(ctx, &annals.ReadOptions{Backwards: true, From: 1200, Limit: 300})), backwards(all[900:1200]))
	sameEvents(t, "$all backwards until 1150", collect(t, s.ReadAll(ctx, &annals.ReadOptions{Backwards: true, From: annals.End, Until: 1150})), backwards(all[:1149]))
	inCategories := func(cats ...string) []annals.RecordedEvent {
		return slices.DeleteFunc(slices.Clone(all), func(ev annals.RecordedEvent) bool {
			return !slices.Contains(cats, strings.Split(ev.Stream, "-")[0])
		})
	}
	for _, cats := range [][]string{{"a"}, {"a", "c"}, {"b", "c", "a"}} {
		byIndex := &annals.Filter{Categories: cats}
		sameEvents(t, fmt.Sprintf("$all of categories %v", cats), collect(t, s.ReadAll(ctx, &annals.ReadOptions{Filter: byIndex})), inCategories(cats...))
		sameEvents(t, fmt.Sprintf("$all of categories %v backwards", cats), collect(t, s.ReadAll(ctx, &annals.ReadOptions{Backwards: true, From: annals.End, Filter: byIndex})), backwards(inCategories(cats...)))
		sameEvents(t, fmt.Sprintf("$all of categories %v backwards from 1500, limit 400", cats),
			collect(t, s.ReadAll(ctx, &annals.ReadOptions{Backwards: true, From: 1500, Limit: 400, Filter: byIndex})),
			backwards(slices.DeleteFunc(inCategories(cats...), func(ev annals.RecordedEvent) bool { return ev.Position > 1500 }))[:400])
	}
	sameEvents(t, "$all of type Rare backwards", collect(t, s.ReadAll(ctx, &annals.ReadOptions{Backwards: true, From: annals.End, Filter: &annals.Filter{EventTypes: []string{"Rare"}}})),
		backwards(slices.DeleteFunc(slices.Clone(all), func(ev annals.RecordedEvent) bool { return ev.Type != "Rare" })))

	sub, cancel := context.WithCancel(ctx)
	defer cancel()
	var got []annals.RecordedEvent
	for ev, err := range s.SubscribeAll(sub, &annals.SubscribeOptions{From: 700}) {
		if err != nil {
			t.Fatal(err)
		}
		if got = append(got, ev); len(got) == len(all)-699 {
			break
		}
	}
	sameEvents(t, "subscription to $all from 700", got, all[699:])
}

// TestLongReadsReportCorruption damages a record well inside the log, where a read of $all
// follows the log from the group before rather than looking the group up in the index.
func TestLongReadsReportCorruption(t *testing.T) {
	s, dir, all := longReadStore(t)
	victim := all[1500]
	off, err := s.recordOffset(victim.Stream, victim.Revision)
	if err != nil {
		t.Fatal(err)
	}
	s.Close()
	bases, err := listSegments(filepath.Join(dir, "log"))
	if err != nil {
		t.Fatal(err)
	}
	base := bases[0]
	for _, b := range bases {
		if b <= off {
			base = b
		}
	}
	path := filepath.Join(dir, "log", segmentName(base))
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteAt([]byte{0xFF}, int64(off-base)+recordHeader+fixedPayload+20); err != nil {
		t.Fatal(err)
	}
	f.Close()

	s, err = Open(dir, &Options{Limits: annals.Limits{MaxEventSize: 64 << 10, MaxAppendSize: 256 << 10}, SegmentSize: 1536 << 10})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	ctx := context.Background()
	for what, seq := range map[string]func(func(annals.RecordedEvent, error) bool){
		"$all":             s.ReadAll(ctx, nil),
		"$all from 1400":   s.ReadAll(ctx, &annals.ReadOptions{From: 1400}),
		"stream":           s.ReadStream(ctx, victim.Stream, nil),
		"stream from 600":  s.ReadStream(ctx, victim.Stream, &annals.ReadOptions{From: 600}),
		"$all backwards":   s.ReadAll(ctx, &annals.ReadOptions{Backwards: true, From: annals.End}),
		"stream backwards": s.ReadStream(ctx, victim.Stream, &annals.ReadOptions{Backwards: true, From: annals.End}),
	} {
		var readErr error
		n := 0
		for _, err := range seq {
			if err != nil {
				readErr = err
				break
			}
			n++
		}
		if !errors.Is(readErr, annals.ErrCorrupt) || !strings.Contains(readErr.Error(), "offset") {
			t.Errorf("%s: got %v after %d events, want ErrCorrupt with the offset", what, readErr, n)
		}
	}
}

// recordOffset returns the log offset of the stream's record at revision rev.
func (s *Store) recordOffset(stream string, rev uint64) (uint64, error) {
	lo, hi := nameBounds(prefixStream, stream)
	it, err := s.db.NewIter(&pebble.IterOptions{LowerBound: lo, UpperBound: hi})
	if err != nil {
		return 0, err
	}
	defer it.Close()
	if !it.SeekLT(nameKey(prefixStream, stream, rev+1)) {
		return 0, fmt.Errorf("revision %d of %s is not in the index", rev, stream)
	}
	r, err := parseStreamRun(it)
	if err != nil {
		return 0, err
	}
	off := r.offset
	for range rev - r.firstRev {
		seg := s.segs.Load().find(off)
		rec, err := decodeRecord(seg.data[off-seg.base:])
		if err != nil {
			return 0, err
		}
		off += uint64(rec.size)
	}
	return off, nil
}
