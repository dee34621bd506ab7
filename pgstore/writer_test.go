package pgstore_test

import (
	"context"
	"sync/atomic"
	"testing"

	"github.com/annalsdb/annals"
	"github.com/annalsdb/annals/internal/testwait"
	"github.com/annalsdb/annals/pgstore"
)

// cancelledOnceQueued is a context that is live for its first check (the one an append makes
// before queuing its request) and cancelled from then on: a caller that gives up just after
// its append was queued.
type cancelledOnceQueued struct {
	context.Context
	checks atomic.Int64
	done   chan struct{}
}

func (c *cancelledOnceQueued) Err() error {
	if c.checks.Add(1) == 1 {
		return nil
	}
	return context.Canceled
}

func (c *cancelledOnceQueued) Done() <-chan struct{} { return c.done }

// TestWriterOutlivesCancelledAppends: a writer that finds only cancelled requests waiting
// drops them and goes on waiting. It used to take them for an empty batch and stop, so that
// once every writer had, each later append waited for ever (seen as a process runner's
// journal append that never returned, after runners were killed).
func TestWriterOutlivesCancelledAppends(t *testing.T) {
	s := openStore(t, &pgstore.Options{Writers: 1})
	for range 3 {
		c := &cancelledOnceQueued{Context: context.Background(), done: make(chan struct{})}
		close(c.done)
		if _, err := s.Append(c, "s", annals.Any, annals.Event{Type: "E", Data: []byte(`{}`)}); err == nil {
			t.Fatal("an append whose caller gave up succeeded")
		}
	}
	if _, err := s.Append(testwait.Context(t), "s", annals.Any, annals.Event{Type: "E", Data: []byte(`{}`)}); err != nil {
		t.Fatalf("append after cancelled ones: %v", err)
	}
}
