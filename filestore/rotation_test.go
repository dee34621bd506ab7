package filestore

import (
	"context"
	"fmt"
	"sync"
	"testing"

	"github.com/annalsdb/annals"
)

// TestManySegments writes across many small segments from concurrent writers, reopening in
// between, and checks every read path and Check.
func TestManySegments(t *testing.T) {
	dir := t.TempDir()
	opts := &Options{Limits: annals.Limits{MaxEventSize: 64 << 10, MaxAppendSize: 256 << 10}, SegmentSize: 1536 << 10}
	const writers, appends = 8, 60
	data := make([]byte, 3000)
	for round := range 2 {
		s, err := Open(dir, opts)
		if err != nil {
			t.Fatal(err)
		}
		var wg sync.WaitGroup
		for w := range writers {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := range appends {
					events := make([]annals.Event, 1+i%5)
					for j := range events {
						events[j] = annals.Event{Type: fmt.Sprintf("T%d", j%2), Data: data}
					}
					if _, err := s.Append(context.Background(), fmt.Sprintf("w%d-%d", w, round), annals.Any, events...); err != nil {
						t.Error(err)
						return
					}
				}
			}()
		}
		wg.Wait()
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
	}
	s, err := Open(dir, opts)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if n := len(*s.segs.Load()); n < 5 {
		t.Fatalf("%d segments, want the test to span several", n)
	}
	perAppender := 0
	for i := range appends {
		perAppender += 1 + i%5
	}
	total := 2 * writers * perAppender
	if got := len(readAllEvents(t, s)); got != total {
		t.Fatalf("ReadAll: %d events, want %d", got, total)
	}
	count := func(seq func(func(annals.RecordedEvent, error) bool)) int {
		n := 0
		for _, err := range seq {
			if err != nil {
				t.Fatal(err)
			}
			n++
		}
		return n
	}
	if got := count(s.ReadStream(context.Background(), "w3-1", nil)); got != perAppender {
		t.Fatalf("ReadStream: %d, want %d", got, perAppender)
	}
	if got := count(s.ReadStream(context.Background(), "w3-1", &annals.ReadOptions{Backwards: true, From: annals.End})); got != perAppender {
		t.Fatalf("ReadStream backwards: %d, want %d", got, perAppender)
	}
	if got := count(s.ReadAll(context.Background(), &annals.ReadOptions{Filter: &annals.Filter{Categories: []string{"w5"}}})); got != 2*perAppender {
		t.Fatalf("category w5: %d, want %d", got, 2*perAppender)
	}
	if got := count(s.ReadAll(context.Background(), &annals.ReadOptions{Backwards: true, From: annals.End, Filter: &annals.Filter{EventTypes: []string{"T1"}}})); got == 0 || got >= total {
		t.Fatalf("type T1 backwards: %d of %d", got, total)
	}
	s.Close()
	if _, err := Check(context.Background(), dir); err != nil {
		t.Fatal(err)
	}
}
