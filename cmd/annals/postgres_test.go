package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"strings"
	"testing"
	"time"

	"github.com/annalsdb/annals"
	"github.com/annalsdb/annals/internal/teststores"
	"github.com/annalsdb/annals/pgstore"
	"github.com/annalsdb/annals/storetest"
)

// postgresSchema returns the test database and a fresh schema, dropped when the test ends.
func postgresSchema(t *testing.T) (url, schema string) {
	t.Helper()
	url = teststores.PostgresURL(t)
	b := make([]byte, 6)
	rand.Read(b)
	schema = "test_cli_" + hex.EncodeToString(b)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if err := pgstore.Drop(ctx, url, schema); err != nil {
			t.Errorf("drop schema %s: %v", schema, err)
		}
	})
	return url, schema
}

// TestPostgresCommands runs the store commands with --postgres, as a user would.
func TestPostgresCommands(t *testing.T) {
	url, schema := postgresSchema(t)
	e := newEnv(t)
	e.open = nil // the commands open PostgreSQL themselves
	pg := []string{"--postgres", url, "--postgres-schema", schema}
	run := func(args ...string) string { t.Helper(); return normalize(e.ok("", append(pg, args...)...), true) }

	if got, want := run("append", "cart-1", "ItemAdded", `{"sku":"A1"}`), "appended 1 event to cart-1: revision 0, position 1\n"; got != want {
		t.Errorf("append: got %q, want %q", got, want)
	}
	run("append", "cart-1", "ItemAdded", `{"sku":"B2"}`, "--expected", "0")
	if got, want := run("read", "cart-1"), "1  cart-1@0  ItemAdded  TIME  {\"sku\":\"A1\"}\n2  cart-1@1  ItemAdded  TIME  {\"sku\":\"B2\"}\n"; got != want {
		t.Errorf("read:\ngot:\n%s\nwant:\n%s", got, want)
	}
	if got := run("streams"); !strings.Contains(got, "cart-1") {
		t.Errorf("streams: %q lacks cart-1", got)
	}
	if got := run("check"); !strings.HasPrefix(got, "ok: 2 events in 1 stream") || !strings.Contains(got, "schema "+schema) {
		t.Errorf("check: %q", got)
	}
	r := e.run(context.Background(), "", append(pg, "append", "cart-1", "X", "--expected", "no-stream")...)
	if r.code != 1 || !strings.Contains(r.line, `conflict: stream "cart-1" is at revision 1`) {
		t.Errorf("a conflict: exit %d, %q", r.code, r.line)
	}
	for _, args := range [][]string{
		{"bench", "--quick"},
		{"--server", "http://127.0.0.1:1", "streams"},
	} {
		if r := e.run(context.Background(), "", append(pg, args...)...); r.code != 2 {
			t.Errorf("annals --postgres %q: exit %d (%s), want a usage error", args, r.code, r.line)
		}
	}
	if r := e.run(context.Background(), "", "--postgres", "postgres://nobody@127.0.0.1:1/x", "streams"); r.code != 1 || !strings.Contains(r.line, "unreachable") {
		t.Errorf("an unreachable database: exit %d, %q", r.code, r.line)
	}
}

// TestServePostgres runs the conformance suite through the client against "annals serve
// --postgres".
func TestServePostgres(t *testing.T) {
	storetest.Run(t, func(t *testing.T) annals.Store {
		url, schema := postgresSchema(t)
		p := startServer(t, t.TempDir(), nil, "--postgres", url, "--postgres-schema", schema)
		return dialServer(t, p.url, "", nil)
	})
}
