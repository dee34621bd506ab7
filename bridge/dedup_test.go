package bridge

import (
	"encoding/binary"
	"sync"
	"testing"

	"github.com/annalsdb/annals"
)

func idN(n int) annals.UUID {
	var u annals.UUID
	binary.BigEndian.PutUint64(u[8:], uint64(n)+1)
	return u
}

func TestDedupKeepsTheLastN(t *testing.T) {
	for _, size := range []int{1, 2, 7, 100} {
		d := NewDedup(size)
		const shown = 250
		for i := range shown {
			if d.Seen(idN(i)) {
				t.Fatalf("size %d: id %d seen before it was shown", size, i)
			}
			if !d.Seen(idN(i)) {
				t.Fatalf("size %d: id %d not seen right after it was shown", size, i)
			}
		}
		// Exactly the last size ids are remembered. Asking about a remembered id changes
		// nothing, so check those first; then each older id is new (asking remembers it, which
		// forgets one of the last ones, never one of the older ones not yet asked about).
		for i := shown - size; i < shown; i++ {
			if !d.Seen(idN(i)) {
				t.Errorf("size %d: id %d of the last %d is forgotten", size, i, size)
			}
		}
		for i := range shown - size {
			if d.Seen(idN(i)) {
				t.Errorf("size %d: id %d, older than the last %d, is remembered", size, i, size)
			}
		}
		d.mu.Lock()
		n, m := len(d.mu.ring), len(d.mu.set)
		d.mu.Unlock()
		if n != size || m != size {
			t.Errorf("size %d: holds %d ids in the ring and %d in the set", size, n, m)
		}
	}
}

func TestDedupExactWindow(t *testing.T) {
	const size = 10
	d := NewDedup(size)
	for i := range 25 {
		d.Seen(idN(i))
	}
	// The last 10 (15..24) are remembered; asking about them does not change the set.
	for i := 15; i < 25; i++ {
		if !d.Seen(idN(i)) {
			t.Errorf("id %d of the last %d is forgotten", i, size)
		}
	}
	// 14 was forgotten: asking remembers it and forgets the oldest, 15.
	if d.Seen(idN(14)) {
		t.Error("id 14, shown 11 ids ago, is remembered")
	}
	if d.Seen(idN(15)) {
		t.Error("id 15 is remembered after 14 took its place")
	}
	if !d.Seen(idN(24)) {
		t.Error("id 24 is forgotten")
	}
}

func TestDedupZeroAndDefault(t *testing.T) {
	d := NewDedup(0)
	if d.size != DefaultDedupSize {
		t.Errorf("NewDedup(0) size %d, want %d", d.size, DefaultDedupSize)
	}
	for range 2 {
		if d.Seen(annals.UUID{}) {
			t.Error("the zero id is seen")
		}
	}
}

func TestDedupConcurrent(t *testing.T) {
	d := NewDedup(1000)
	var wg sync.WaitGroup
	var mu sync.Mutex
	firsts := 0
	for range 4 {
		wg.Go(func() {
			n := 0
			for i := range 500 {
				if !d.Seen(idN(i)) {
					n++
				}
			}
			mu.Lock()
			firsts += n
			mu.Unlock()
		})
	}
	wg.Wait()
	if firsts != 500 {
		t.Errorf("%d ids reported new across 4 goroutines, want 500 (each once)", firsts)
	}
}
