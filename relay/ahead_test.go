package relay

import (
	"context"
	"errors"
	"testing"
	"testing/synctest"
	"time"
)

// TestAheadOrderAndBound checks that the queue between reader and publisher keeps the order
// of what is put, holds at most aheadMaxN items (put waits past that), lets a single item
// larger than aheadMaxBytes pass alone, and that both sides stop when their context is done.
func TestAheadOrderAndBound(t *testing.T) {
	ctx := t.Context()
	a := newAhead()
	for i := range aheadMaxN {
		if err := a.put(ctx, item{position: uint64(i)}, 1); err != nil {
			t.Fatal(err)
		}
	}
	short, cancel := context.WithTimeout(ctx, 20*time.Millisecond) // how long a full queue is seen to refuse
	defer cancel()
	if err := a.put(short, item{position: aheadMaxN}, 1); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("put into a full queue: %v, want it to wait until the context is done", err)
	}
	items, err := a.take(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(items) != aheadMaxN {
		t.Fatalf("took %d items, want %d", len(items), aheadMaxN)
	}
	for i, it := range items {
		if it.position != uint64(i) {
			t.Fatalf("item %d is at position %d", i, it.position)
		}
	}
	if err := a.put(ctx, item{position: 1}, aheadMaxBytes+1); err != nil {
		t.Fatalf("a large item into an empty queue: %v", err)
	}
	if err := a.put(short, item{position: 2}, 1); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("put behind a large item: %v, want it to wait", err)
	}
	if items, err = a.take(ctx, items); err != nil || len(items) != 1 || items[0].position != 1 {
		t.Fatalf("take = %v, %v; want the large item alone", items, err)
	}
	done, cancelDone := context.WithCancel(ctx)
	cancelDone()
	if _, err := a.take(done, items); !errors.Is(err, context.Canceled) {
		t.Fatalf("take from an empty queue with a done context: %v", err)
	}
}

// TestAheadWakes checks that a taker waiting on an empty queue wakes for an item put later,
// and a putter waiting on a full queue wakes when the items are taken. It runs in a synctest
// bubble, so that each side is known to be blocked (synctest.Wait) before the other acts.
func TestAheadWakes(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ctx := t.Context()
		a := newAhead()
		got := make(chan []item)
		go func() {
			items, _ := a.take(ctx, nil)
			got <- items
		}()
		synctest.Wait() // the taker waits on the empty queue
		if err := a.put(ctx, item{position: 7}, 1); err != nil {
			t.Fatal(err)
		}
		if items := <-got; len(items) != 1 || items[0].position != 7 {
			t.Fatalf("took %v", items)
		}
		for range aheadMaxN {
			if err := a.put(ctx, item{}, 1); err != nil {
				t.Fatal(err)
			}
		}
		put := make(chan error)
		go func() { put <- a.put(ctx, item{position: 9}, 1) }()
		synctest.Wait() // the putter waits on the full queue
		if _, err := a.take(ctx, nil); err != nil {
			t.Fatal(err)
		}
		if err := <-put; err != nil {
			t.Fatalf("put after a take: %v", err)
		}
		if items, err := a.take(ctx, nil); err != nil || len(items) != 1 || items[0].position != 9 {
			t.Fatalf("take = %v, %v", items, err)
		}
	})
}
