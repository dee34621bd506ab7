package filestore

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/annalsdb/annals"
)

func TestFollowFromAnotherOpen(t *testing.T) {
	dir := t.TempDir()
	s, err := Open(dir, &Options{SegmentSize: 33 << 20})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	appendN(t, s, "cart-1", 3)
	appendN(t, s, "order-1", 2)

	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	type got struct {
		ev  annals.RecordedEvent
		err error
	}
	follow := func(opts *FollowOptions) chan got {
		ch := make(chan got, 100)
		go func() {
			defer close(ch)
			for ev, err := range Follow(ctx, dir, opts) {
				ch <- got{ev, err}
				if err != nil {
					return
				}
			}
		}()
		return ch
	}
	all := follow(&FollowOptions{From: 2})
	stream := follow(&FollowOptions{Stream: "cart-1", From: annals.End})
	// Stored events first, from position 2.
	for want := uint64(2); want <= 5; want++ {
		g := <-all
		if g.err != nil || g.ev.Position != want {
			t.Fatalf("follow $all: got %+v, %v; want position %d", g.ev, g.err, want)
		}
	}
	// Then live: a stream follower from the end sees only new events of its stream, and a large
	// append crosses into a new segment.
	time.Sleep(50 * time.Millisecond) // let the End follower take its starting point
	appendN(t, s, "order-1", 1)
	big := make([]annals.Event, 17)
	for i := range big {
		big[i] = annals.Event{Type: "Big", Data: make([]byte, 900<<10)}
	}
	for range 3 {
		if _, err := s.Append(context.Background(), "cart-1", annals.Any, big...); err != nil {
			t.Fatal(err)
		}
	}
	if segs := len(*s.segs.Load()); segs < 2 {
		t.Fatalf("%d segment, want the big appends to have started a second", segs)
	}
	for i := range 51 {
		g := <-stream
		if g.err != nil || g.ev.Stream != "cart-1" || g.ev.Revision != uint64(3+i) {
			t.Fatalf("follow cart-1 event %d: got %s@%d, %v; want cart-1@%d", i, g.ev.Stream, g.ev.Revision, g.err, 3+i)
		}
	}
	for want := uint64(6); want <= 57; want++ {
		if g := <-all; g.err != nil || g.ev.Position != want {
			t.Fatalf("follow $all: got position %d, %v; want %d", g.ev.Position, g.err, want)
		}
	}
	cancel()
	if g := <-all; !errors.Is(g.err, context.Canceled) {
		t.Fatalf("after cancel: got %v, want context.Canceled", g.err)
	}
}
