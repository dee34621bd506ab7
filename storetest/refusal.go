package storetest

import (
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/annalsdb/annals"
	"github.com/annalsdb/annals/internal/testwait"
)

// testRefusals checks that a refused write reports only state that reads already show: a
// conflict that names revision r is never answered before revision r is durable and visible,
// and the same holds for a stream reported deleted. A store that answers a refusal from state
// still in flight reveals a write that a crash could take back.
func testRefusals(t *testing.T, open func(t *testing.T) annals.Store) {
	t.Run("ConflictIsVisible", func(t *testing.T) {
		s := open(t)
		const writers, streams = 4, 200
		var wg sync.WaitGroup
		for range writers {
			wg.Go(func() {
				for i := range streams {
					stream := fmt.Sprintf("refuse-%d", i)
					// Each writer tries to create every stream, then to extend it at the
					// revision it saw: most tries lose a race against another writer.
					expected := annals.NoStream
					for range 2 {
						res, err := s.Append(t.Context(), stream, expected, newEvent("Refused"))
						if err == nil {
							expected = annals.Exact(res.Revision)
							continue
						}
						wev, ok := errors.AsType[*annals.WrongExpectedVersionError](err)
						if !ok {
							t.Errorf("Append(%q, %v): %v, want success or a conflict", stream, expected, err)
							return
						}
						checkConflictVisible(t, s, stream, wev)
						expected = wev.Actual
					}
				}
			})
		}
		wg.Wait()
	})

	t.Run("DeletedIsVisible", func(t *testing.T) {
		// One writer tombstones each stream while another appends to it: an append refused
		// because the stream is deleted finds it deleted when it reads. Once a Tombstone has
		// returned, the next append to its stream must be refused; the appender stops at the
		// test's wait deadline all the same, so that a store that never refuses fails the test
		// instead of spinning until the binary times out.
		s := open(t)
		const streams = 100
		for i := range streams {
			mustAppend(t, s, fmt.Sprintf("gone-%d", i), annals.NoStream, newEvent("Created"))
		}
		tombstoned := make([]chan bool, streams) // receives whether the Tombstone succeeded
		for i := range tombstoned {
			tombstoned[i] = make(chan bool, 1)
		}
		deadline := time.Now().Add(testwait.Timeout(t))
		var wg sync.WaitGroup
		wg.Go(func() {
			for i := range streams {
				_, err := s.Tombstone(t.Context(), fmt.Sprintf("gone-%d", i), annals.Any)
				if err != nil {
					t.Errorf("Tombstone(gone-%d): %v", i, err)
				}
				tombstoned[i] <- err == nil
			}
		})
		wg.Go(func() {
			for i := range streams {
				stream := fmt.Sprintf("gone-%d", i)
				done, ok := false, false // the Tombstone has returned; it succeeded
				for {
					if !done {
						select {
						case ok = <-tombstoned[i]:
							done = true
						default:
						}
					}
					if done && !ok {
						return // the tombstoner reported its failure
					}
					_, err := s.Append(t.Context(), stream, annals.Any, newEvent("Late"))
					if err == nil {
						if done {
							t.Errorf("Append(%q) succeeded after Tombstone(%q) returned, want ErrStreamDeleted", stream, stream)
							return
						}
						if time.Now().After(deadline) {
							t.Errorf("Append(%q) still succeeds at the wait deadline, while Tombstone(%q) has not returned", stream, stream)
							return
						}
						continue
					}
					if !errors.Is(err, annals.ErrStreamDeleted) {
						t.Errorf("Append(%q): %v, want success or ErrStreamDeleted", stream, err)
						return
					}
					_, rerr := collect(t, s.ReadStream(t.Context(), stream, nil))
					if !errors.Is(rerr, annals.ErrStreamDeleted) {
						t.Errorf("Append(%q) was refused as deleted, but a read right after it returns %v, want ErrStreamDeleted", stream, rerr)
					}
					break
				}
			}
		})
		wg.Wait()
	})
}

// checkConflictVisible reports a failure unless a read of stream shows the revision wev says
// the stream has (or, for NoStream, that it is absent or has moved on).
func checkConflictVisible(t testing.TB, s annals.Store, stream string, wev *annals.WrongExpectedVersionError) {
	t.Helper()
	want, exists := wev.Actual.Revision()
	if !exists {
		return // the stream was reported absent; a later creation is no contradiction
	}
	evs, err := collect(t, s.ReadStream(t.Context(), stream, &annals.ReadOptions{Backwards: true, From: annals.End, Limit: 1}))
	switch {
	case errors.Is(err, annals.ErrStreamNotFound):
		t.Errorf("conflict on %q reports revision %d, but a read right after it finds no stream", stream, want)
	case err != nil:
		t.Errorf("ReadStream(%q) after a conflict: %v", stream, err)
	case len(evs) == 0 || evs[0].Revision < want:
		t.Errorf("conflict on %q reports revision %d, but a read right after it shows %v", stream, want, revisions(evs))
	}
}
