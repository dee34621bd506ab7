// Package storetest is the conformance suite of Annals: the tests that define what it means for
// a backend to implement [annals.Store]. Every backend runs it from its own tests:
//
//	func TestConformance(t *testing.T) {
//		storetest.Run(t, func(t *testing.T) annals.Store {
//			s, err := mystore.Open(t.TempDir(), nil)
//			if err != nil {
//				t.Fatal(err)
//			}
//			t.Cleanup(func() { s.Close() })
//			return s
//		})
//	}
//
//	func TestRandomized(t *testing.T) {
//		storetest.RunRandomized(t, open)
//	}
//
// [Run] checks the documented behaviour case by case; [RunRandomized] runs a random sequence of
// operations on the store under test and on memstore, the reference implementation, and demands
// the same results.
//
// The suite uses the [annals.Store] interface, and [annals.SystemAppender] when the store
// implements it (the tests of system appends skip on a store that does not). It expects each
// store from open to be empty, with the default limits (1 MiB per event, 16 MiB per append),
// and it waits for conditions (a subscription catching up, goroutines ending) with deadlines,
// never with fixed sleeps.
package storetest

import (
	"testing"

	"github.com/annalsdb/annals"
)

// Run runs the conformance suite against the stores that open returns. open must return a
// fresh, empty store with the default limits and register its Close with t.Cleanup; Run calls
// it once per group of tests. The subtests do not run in parallel, because one of them counts
// goroutines to find leaks.
func Run(t *testing.T, open func(t *testing.T) annals.Store) {
	t.Run("Append", func(t *testing.T) { testAppend(t, open) })
	t.Run("ExpectedRevision", func(t *testing.T) { testExpectedRevision(t, open) })
	t.Run("Idempotency", func(t *testing.T) { testIdempotency(t, open) })
	t.Run("Concurrency", func(t *testing.T) { testConcurrency(t, open) })
	t.Run("Read", func(t *testing.T) { testRead(t, open) })
	t.Run("Filter", func(t *testing.T) { testFilter(t, open) })
	t.Run("Metadata", func(t *testing.T) { testMetadata(t, open) })
	t.Run("Delete", func(t *testing.T) { testDelete(t, open) })
	t.Run("Tombstone", func(t *testing.T) { testTombstone(t, open) })
	t.Run("ListStreams", func(t *testing.T) { testListStreams(t, open) })
	t.Run("Subscribe", func(t *testing.T) { testSubscribe(t, open) })
	t.Run("Cancel", func(t *testing.T) { testCancel(t, open) })
	t.Run("Close", func(t *testing.T) { testClose(t, open) })
	t.Run("BadInput", func(t *testing.T) { testBadInput(t, open) })
	t.Run("Limits", func(t *testing.T) { testLimits(t, open) })
	t.Run("Rules", func(t *testing.T) { testRules(t, open) })
	t.Run("Refusals", func(t *testing.T) { testRefusals(t, open) })
	t.Run("SystemAppend", func(t *testing.T) { testSystemAppend(t, open) })
}
