// Package teststores opens the event stores that the toolkit's tests run on, so that every
// toolkit test runs alike on each backend: the toolkit speaks only annals.Store and must behave
// the same on all of them.
package teststores

import (
	"testing"

	"github.com/annalsdb/annals"
	"github.com/annalsdb/annals/filestore"
	"github.com/annalsdb/annals/memstore"
)

// Each runs fn as a subtest on a fresh, empty store of each backend: memstore and filestore
// (in t.TempDir). The stores are closed when the subtests end.
func Each(t *testing.T, fn func(t *testing.T, s annals.Store)) {
	t.Helper()
	t.Run("memstore", func(t *testing.T) {
		s := memstore.New(nil)
		t.Cleanup(func() { s.Close() })
		fn(t, s)
	})
	t.Run("filestore", func(t *testing.T) {
		s, err := filestore.Open(t.TempDir(), nil)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { s.Close() })
		fn(t, s)
	})
}
