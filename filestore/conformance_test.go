package filestore

import (
	"os"
	"path/filepath"
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

// TestRandomizedReopen runs the randomized test with reopens of the store in the sequence,
// half of them after deleting the index, which Open then rebuilds from the log.
func TestRandomizedReopen(t *testing.T) {
	dir := t.TempDir()
	rebuild := false
	storetest.RunRandomizedWith(t, func(t *testing.T) annals.Store {
		s, err := Open(dir, nil)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { s.Close() })
		return s
	}, &storetest.RandomOptions{Reopen: func(t *testing.T, s annals.Store) annals.Store {
		if err := s.Close(); err != nil {
			t.Fatalf("close before reopening: %v", err)
		}
		if rebuild = !rebuild; rebuild {
			if err := os.RemoveAll(filepath.Join(dir, "index")); err != nil {
				t.Fatal(err)
			}
		}
		s, err := Open(dir, nil)
		if err != nil {
			t.Fatalf("reopen (index rebuilt: %v): %v", rebuild, err)
		}
		t.Cleanup(func() { s.Close() })
		return s
	}})
}

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
