package filestore

import (
	"context"
	"errors"
	"testing"

	"github.com/annalsdb/annals"
	"github.com/annalsdb/annals/internal/testwait"
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

	ctx, cancel := context.WithCancel(testwait.Context(t))
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
		g := testwait.Recv(t, "a stored event from $all", all)
		if g.err != nil || g.ev.Position != want {
			t.Fatalf("follow $all: got %+v, %v; want position %d", g.ev, g.err, want)
		}
	}
	// Then live. The stream follower starts at the end of the log as it finds it when it
	// opens: probes appended to cart-1 until it delivers one show that it has taken its
	// starting point, and it delivers every probe after that one.
	next := uint64(3) // cart-1's next revision
	var first uint64  // the first probe the stream follower delivers
	testwait.Until(t, "the follower from the end to deliver a probe", func() bool {
		select {
		case g := <-stream:
			if g.err != nil || g.ev.Stream != "cart-1" || g.ev.Revision < 3 || g.ev.Revision >= next {
				t.Fatalf("follow cart-1 from the end: got %s@%d, %v; want a probe, cart-1@3…%d", g.ev.Stream, g.ev.Revision, g.err, next-1)
			}
			first = g.ev.Revision
			return true
		default:
			appendN(t, s, "cart-1", 1)
			next++
			return false
		}
	})
	for want := first + 1; want < next; want++ {
		if g := testwait.Recv(t, "a probe", stream); g.err != nil || g.ev.Revision != want {
			t.Fatalf("follow cart-1: got %s@%d, %v; want the probe cart-1@%d", g.ev.Stream, g.ev.Revision, g.err, want)
		}
	}
	// A stream follower sees only new events of its stream, and a large append crosses into a
	// new segment.
	appendN(t, s, "order-1", 1)
	big := make([]annals.Event, 17)
	for i := range big {
		big[i] = annals.Event{Type: "Big", Data: make([]byte, 900<<10)}
	}
	var head uint64
	for range 3 {
		res, err := s.Append(context.Background(), "cart-1", annals.Any, big...)
		if err != nil {
			t.Fatal(err)
		}
		head = res.Position
	}
	if segs := len(*s.segs.Load()); segs < 2 {
		t.Fatalf("%d segment, want the big appends to have started a second", segs)
	}
	for i := range uint64(51) {
		g := testwait.Recv(t, "a live event of cart-1", stream)
		if g.err != nil || g.ev.Stream != "cart-1" || g.ev.Revision != next+i {
			t.Fatalf("follow cart-1 event %d: got %s@%d, %v; want cart-1@%d", i, g.ev.Stream, g.ev.Revision, g.err, next+i)
		}
	}
	for want := uint64(6); want <= head; want++ {
		if g := testwait.Recv(t, "a live event of $all", all); g.err != nil || g.ev.Position != want {
			t.Fatalf("follow $all: got position %d, %v; want %d", g.ev.Position, g.err, want)
		}
	}
	cancel()
	if g := testwait.Recv(t, "the end of $all", all); !errors.Is(g.err, context.Canceled) {
		t.Fatalf("after cancel: got %v, want context.Canceled", g.err)
	}
}
