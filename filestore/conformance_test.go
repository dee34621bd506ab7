package filestore

import (
	"testing"

	"github.com/annalsdb/annals"
	"github.com/annalsdb/annals/storetest"
)

func openTestStore(t *testing.T) annals.Store {
	t.Helper()
	s, err := Open(t.TempDir(), nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func TestConformance(t *testing.T) { storetest.Run(t, openTestStore) }

func TestRandomizedAgainstMemstore(t *testing.T) { storetest.RunRandomized(t, openTestStore) }

// TestConformanceEvictingCache runs the suite with a writer that keeps almost no stream states
// in memory, so that states are evicted and reloaded from the index all the time.
func TestConformanceEvictingCache(t *testing.T) {
	storetest.Run(t, func(t *testing.T) annals.Store {
		s, err := Open(t.TempDir(), &Options{CachedStreams: 2})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { s.Close() })
		return s
	})
}
