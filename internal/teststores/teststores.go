// Package teststores opens the event stores that the toolkit's tests run on, so that every
// toolkit test runs alike on each backend: the toolkit speaks only annals.Store and must behave
// the same on all of them.
package teststores

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/annalsdb/annals"
	"github.com/annalsdb/annals/filestore"
	"github.com/annalsdb/annals/memstore"
	"github.com/annalsdb/annals/pgstore"
	"github.com/jackc/pgx/v5"
)

// Each runs fn as a subtest on a fresh, empty store of each backend: memstore, filestore (in
// t.TempDir) and pgstore (see [Postgres]). The stores are closed when the subtests end.
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
	t.Run("pgstore", func(t *testing.T) {
		fn(t, Postgres(t, nil))
	})
}

// DefaultPostgres is the test database when ANNALS_TEST_POSTGRES is not set.
const DefaultPostgres = "postgres://postgres@127.0.0.1:5432/test?sslmode=disable"

var (
	reachOnce sync.Once
	reachErr  error
)

// PostgresURL returns the connection string of the test database: ANNALS_TEST_POSTGRES, or
// [DefaultPostgres]. When the database cannot be reached it skips the test with a message
// that says so, or fails it when ANNALS_REQUIRE_POSTGRES=1 (as in CI).
func PostgresURL(t testing.TB) string {
	t.Helper()
	url := os.Getenv("ANNALS_TEST_POSTGRES")
	if url == "" {
		url = DefaultPostgres
	}
	reachOnce.Do(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		conn, err := pgx.Connect(ctx, url)
		if err == nil {
			err = conn.Ping(ctx)
			conn.Close(ctx)
		}
		reachErr = err
	})
	if reachErr != nil {
		msg := "PostgreSQL at ANNALS_TEST_POSTGRES (default " + DefaultPostgres + ") is not reachable: " + reachErr.Error()
		if os.Getenv("ANNALS_REQUIRE_POSTGRES") == "1" {
			t.Fatal(msg + " (ANNALS_REQUIRE_POSTGRES=1: not skipping)")
		}
		t.Skip(msg + "; set ANNALS_TEST_POSTGRES to run the PostgreSQL cases")
	}
	return url
}

// Postgres opens a pgstore.Store in a fresh schema of the test database (see [PostgresURL]),
// with opts (nil for the defaults; Schema is replaced, MaxConns defaults to 6). The store is
// closed, and its schema and those of its projections' generations dropped, when the test
// ends.
func Postgres(t testing.TB, opts *pgstore.Options) *pgstore.Store {
	t.Helper()
	url := PostgresURL(t)
	var o pgstore.Options
	if opts != nil {
		o = *opts
	}
	b := make([]byte, 6)
	rand.Read(b)
	o.Schema = "test_" + hex.EncodeToString(b)
	if o.MaxConns == 0 {
		o.MaxConns = 6
	}
	t.Cleanup(func() { // runs after the store's Close, registered below
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if err := pgstore.Drop(ctx, url, o.Schema); err != nil {
			t.Errorf("drop schema %s: %v", o.Schema, err)
		}
	})
	s, err := pgstore.Open(context.Background(), url, &o)
	if err != nil {
		t.Fatalf("pgstore.Open: %v", err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}
