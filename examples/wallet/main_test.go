package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/annalsdb/annals/filestore"
	"github.com/annalsdb/annals/internal/teststores"
	"github.com/annalsdb/annals/internal/testwait"
	"github.com/annalsdb/annals/lease"
	"github.com/annalsdb/annals/pgstore"
	"github.com/annalsdb/annals/tables"
)

// TestService runs the service as main does, drives it over HTTP, and stops it as SIGINT
// would: run returns nil and leaves no goroutine behind.
func TestService(t *testing.T) {
	before := runtime.NumGoroutine()
	runService(t, true, "--data", t.TempDir())
	testwait.Until(t, "the service's goroutines to end", func() bool { return runtime.NumGoroutine() <= before })
}

// TestServiceOnPostgres runs it with the events and the read model in PostgreSQL.
func TestServiceOnPostgres(t *testing.T) {
	url := teststores.PostgresURL(t)
	b := make([]byte, 6)
	rand.Read(b)
	schema := "test_wallet_" + hex.EncodeToString(b)
	t.Cleanup(func() {
		if err := pgstore.Drop(context.Background(), url, schema); err != nil {
			t.Errorf("drop schema %s: %v", schema, err)
		}
	})
	_, leases := any((*pgstore.Store)(nil)).(lease.Keeper)
	runService(t, leases, "--postgres", url, "--schema", schema)
}

// runService runs the service on the store args name, checks what its API answers, and stops it.
// With leases (the store keeps them), the status names the replica holding them.
func runService(t *testing.T, leases bool, args ...string) {
	ctx, cancel := context.WithCancel(testwait.Context(t))
	defer cancel()
	addrs := make(chan string, 1)
	done := make(chan error, 1)
	go func() {
		done <- run(ctx, append(args, "--addr", "127.0.0.1:0", "--replica", "r1"), logger(t), func(a string) { addrs <- a })
	}()
	c := &client{t: t, base: "http://" + testwait.Recv(t, "the service to listen", addrs)}

	c.want("POST", "/wallets/ann/open", `{"owner": "Ann"}`, 200, `"position"`)
	pos := c.position("POST", "/wallets/ann/deposit", `{"amount": 1000}`)
	c.want("GET", fmt.Sprintf("/wallets/ann?position=%d", pos), "", 200, `"balance":1000`) // read-your-writes

	// Strict input, clear refusals.
	for _, tc := range []struct {
		method, path, body string
		code               int
		want               string
	}{
		{"POST", "/wallets/ann/deposit", `{"amont": 5}`, 400, `unknown field \"amont\"`},
		{"POST", "/wallets/ann/deposit", `{"amount": "5"}`, 400, `cannot unmarshal string into Go struct field Deposit.amount of type int64`},
		{"POST", "/wallets/ann/deposit", `{"amount": 5} {}`, 400, `more than one JSON value`},
		{"POST", "/wallets/ann/deposit", `{"amount": -5}`, 400, `amount -5: want 1 to 10^12 cents`},
		{"POST", "/wallets/Ann!/deposit", `{"amount": 5}`, 400, `wallet id \"Ann!\"`},
		{"POST", "/wallets/ann/transfer", `{"to": "", "amount": 5}`, 400, `to: wallet id \"\"`},
		{"POST", "/wallets/ann/transfer", `{"to": "bob", "amount": 5000}`, 409, `wallet: insufficient funds`},
		{"POST", "/wallets/ann/open", `{"owner": "Ann"}`, 409, `wallet: already open`},
		{"POST", "/wallets/zed/deposit", `{"amount": 5}`, 409, `wallet: not open`},
		{"GET", "/wallets/zed", ``, 404, `wallet zed: query: not found`},
		{"GET", "/wallets/Zed", ``, 400, `wallet id \"Zed\"`},
		{"GET", "/wallets/ann?position=x", ``, 400, `query parameter position=[\"x\"]`},
		{"GET", "/wallets/ann?page=2", ``, 400, `query parameter page=[\"2\"]`},
	} {
		c.want(tc.method, tc.path, tc.body, tc.code, tc.want)
	}

	// The same request again with its idempotency key is written once.
	c.header = http.Header{"Idempotency-Key": {"deposit-1"}}
	c.want("POST", "/wallets/ann/deposit", `{"amount": 1}`, 200, `"duplicate":false`)
	pos = c.position("POST", "/wallets/ann/deposit", `{"amount": 1}`)
	c.header = nil
	c.want("GET", fmt.Sprintf("/wallets/ann?position=%d", pos), "", 200, `"balance":1001`)

	// The transfer process credits bob, and returns what zed (not open) refuses.
	c.want("POST", "/wallets/bob/open", `{"owner": "Bob"}`, 200, "")
	c.position("POST", "/wallets/ann/transfer", `{"to": "bob", "amount": 300}`)
	c.position("POST", "/wallets/ann/transfer", `{"to": "zed", "amount": 200}`)
	c.await("/wallets/bob", `"balance":300`)
	c.await("/wallets/ann", `"balance":701,"revision":5`) // opened, 2 deposits, 2 sent, 1 returned

	holder := ""
	if leases {
		holder = `,"holder":"r1"`
	}
	c.want("GET", "/status", "", 200, `{"name":"balances","state":"live"`+holder)
	c.want("GET", "/status", "", 200, `{"name":"transfer","state":"running"`+holder)

	cancel()
	if err := testwait.Recv(t, "run to return", done); err != nil {
		t.Fatalf("run: %v", err)
	}
	c.hc.CloseIdleConnections()
}

// TestReplicas runs two replicas of the service on one store, as two processes would on a
// shared database: one works each runner while the other stands by and answers queries; the
// other takes over when the first stops.
func TestReplicas(t *testing.T) {
	t.Run("filestore", func(t *testing.T) {
		dir := t.TempDir()
		events, err := filestore.Open(dir, nil)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { events.Close() })
		db, err := tables.Open(filepath.Join(dir, "tables"), nil)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { db.Close() })
		replicas(t, stores{events: events, tables: db}, true)
	})
	t.Run("pgstore", func(t *testing.T) {
		pg := teststores.Postgres(t, nil)
		_, leases := any(pg).(lease.Keeper)
		replicas(t, stores{events: pg, pg: pg}, leases)
	})
}

// replicas runs the replicas a and b on st. With leases (the store keeps them), a works
// and b stands by until a stops.
func replicas(t *testing.T, st stores, leases bool) {
	start := func(name string) (*client, func()) {
		s, err := newService(st, name, testTTL, logger(t))
		if err != nil {
			t.Fatal(err)
		}
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(testwait.Context(t))
		done := make(chan error, 1)
		go func() { done <- s.serve(ctx, ln) }()
		stop := sync.OnceFunc(func() {
			cancel()
			if err := testwait.Recv(t, name+" to stop", done); err != nil {
				t.Errorf("%s: %v", name, err)
			}
		})
		t.Cleanup(stop)
		return &client{t: t, base: "http://" + ln.Addr().String()}, stop
	}
	a, stopA := start("a")
	if leases { // let a take the leases before b starts
		a.await("/status", `"state":"live","holder":"a"`)
		a.await("/status", `"state":"running","holder":"a"`)
	}
	b, _ := start("b")
	if leases {
		b.await("/status", `{"name":"balances","state":"standing-by","holder":"a"`)
		b.await("/status", `{"name":"transfer","state":"standing-by","holder":"a"`)
	}

	a.want("POST", "/wallets/ann/open", `{"owner": "Ann"}`, 200, "")
	a.want("POST", "/wallets/bob/open", `{"owner": "Bob"}`, 200, "")
	pos := a.position("POST", "/wallets/ann/deposit", `{"amount": 100}`)
	b.want("GET", fmt.Sprintf("/wallets/ann?position=%d", pos), "", 200, `"balance":100`) // a's write, read on b
	b.position("POST", "/wallets/ann/transfer", `{"to": "bob", "amount": 40}`)
	b.await("/wallets/bob", `"balance":40`)

	stopA()
	if leases {
		b.await("/status", `{"name":"balances","state":"live","holder":"b"`)
		b.await("/status", `{"name":"transfer","state":"running","holder":"b"`)
	}
	pos = b.position("POST", "/wallets/bob/transfer", `{"to": "ann", "amount": 15}`)
	b.want("GET", fmt.Sprintf("/wallets/bob?position=%d", pos), "", 200, `"balance":25`)
	b.await("/wallets/ann", `"balance":75`)
}

// testTTL is the replicas' lease time to live: short, so that a test waits little for b to
// notice a's leases released.
const testTTL = 500 * time.Millisecond

// client drives the service's API.
type client struct {
	t      *testing.T
	base   string
	header http.Header
	hc     http.Client
}

// do sends a request and returns the status code and the body.
func (c *client) do(method, path, body string) (int, string) {
	c.t.Helper()
	req, err := http.NewRequest(method, c.base+path, strings.NewReader(body))
	if err != nil {
		c.t.Fatal(err)
	}
	for k, v := range c.header {
		req.Header[k] = v
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		c.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		c.t.Fatal(err)
	}
	if ct := resp.Header.Get("Content-Type"); ct != "application/json" {
		c.t.Errorf("%s %s: Content-Type %q", method, path, ct)
	}
	return resp.StatusCode, string(bytes.TrimSpace(b))
}

// want sends a request and checks that its answer has the status code and holds want.
func (c *client) want(method, path, body string, code int, want string) string {
	c.t.Helper()
	got, text := c.do(method, path, body)
	if got != code || !strings.Contains(text, want) {
		c.t.Errorf("%s %s %s: %d %s\nwant %d and %s", method, path, body, got, text, code, want)
	}
	return text
}

// position sends a command and returns the position it wrote.
func (c *client) position(method, path, body string) uint64 {
	c.t.Helper()
	var res struct{ Position uint64 }
	if err := json.Unmarshal([]byte(c.want(method, path, body, 200, `"position"`)), &res); err != nil || res.Position == 0 {
		c.t.Fatalf("%s %s: position %d, %v", method, path, res.Position, err)
	}
	return res.Position
}

// await waits until GET path answers 200 with a body that holds want.
func (c *client) await(path, want string) {
	c.t.Helper()
	testwait.Until(c.t, "GET "+path+" to hold "+want, func() bool {
		code, text := c.do("GET", path, "")
		return code == 200 && strings.Contains(text, want)
	})
}

func logger(t *testing.T) *slog.Logger { return slog.New(slog.NewTextHandler(t.Output(), nil)) }
