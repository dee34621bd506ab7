package pgstore_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"testing"
	"time"

	"github.com/annalsdb/annals"
	"github.com/annalsdb/annals/internal/teststores"
	"github.com/annalsdb/annals/pgstore"
	"github.com/annalsdb/annals/storetest"
)

// testDatabase returns the connection string of the test database (see
// teststores.PostgresURL): it skips the test when the database cannot be reached, or fails it
// when ANNALS_REQUIRE_POSTGRES=1.
func testDatabase(t testing.TB) string {
	t.Helper()
	return teststores.PostgresURL(t)
}

// newSchema returns a fresh schema name and drops the schema (and those of its projections'
// generations) when the test ends, after the stores opened on it are closed, since cleanups
// run last-registered first.
func newSchema(t testing.TB) string {
	t.Helper()
	url := testDatabase(t)
	b := make([]byte, 6)
	rand.Read(b)
	schema := "test_" + hex.EncodeToString(b)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if err := pgstore.Drop(ctx, url, schema); err != nil {
			t.Errorf("drop schema %s: %v", schema, err)
		}
	})
	return schema
}

// openStore opens a store in a fresh schema; opts may be nil. The store is closed and its
// schema dropped when the test ends.
func openStore(t testing.TB, opts *pgstore.Options) *pgstore.Store {
	t.Helper()
	var o pgstore.Options
	if opts != nil {
		o = *opts
	}
	o.Schema = newSchema(t)
	if o.MaxConns == 0 {
		o.MaxConns = 6
	}
	s, err := pgstore.Open(t.Context(), testDatabase(t), &o)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func open(t *testing.T) annals.Store { return openStore(t, nil) }

func TestConformance(t *testing.T) { storetest.Run(t, open) }

func TestRandomizedAgainstMemstore(t *testing.T) { storetest.RunRandomized(t, open) }

// TestRandomizedReopen runs the randomized test with reopens of the store on its schema in the
// sequence.
func TestRandomizedReopen(t *testing.T) {
	schema := newSchema(t)
	openOn := func(t *testing.T) annals.Store {
		s, err := pgstore.Open(t.Context(), testDatabase(t), &pgstore.Options{Schema: schema, MaxConns: 6})
		if err != nil {
			t.Fatalf("Open: %v", err)
		}
		t.Cleanup(func() { s.Close() })
		return s
	}
	storetest.RunRandomizedWith(t, openOn, &storetest.RandomOptions{Reopen: func(t *testing.T, s annals.Store) annals.Store {
		if err := s.Close(); err != nil {
			t.Fatalf("close before reopening: %v", err)
		}
		return openOn(t)
	}})
}

// TestConformanceUnbatched runs the suite with one append per transaction and small pages, so
// that reads cross many page boundaries.
func TestConformanceSmallPages(t *testing.T) {
	storetest.Run(t, func(t *testing.T) annals.Store {
		return openStore(t, &pgstore.Options{MaxBatch: 1, Writers: 1, ReadBatch: 7})
	})
}
