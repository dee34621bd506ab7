package main

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"connectrpc.com/connect"
	"github.com/annalsdb/annals"
	"github.com/annalsdb/annals/client"
	annalsv1 "github.com/annalsdb/annals/internal/gen/annals/v1"
	"github.com/annalsdb/annals/internal/gen/annals/v1/annalsv1connect"
	"github.com/annalsdb/annals/internal/testwait"
	"github.com/annalsdb/annals/server"
	"github.com/annalsdb/annals/storetest"
)

// TestServeConformance runs the conformance suite through the client against "annals serve"
// processes with auth on (as the admin token, so that every request goes through the auth
// middleware and Authorize with its stream ACL lookups).
func TestServeConformance(t *testing.T) {
	auth := writeTestAuth(t)
	storetest.Run(t, func(t *testing.T) annals.Store {
		p := startServer(t, t.TempDir(), nil, "--auth", auth.file)
		return dialServer(t, p.url, auth.adminToken, nil)
	})
}

// httpDo sends a request with an optional bearer token and returns the status and body.
func httpDo(t *testing.T, hc *http.Client, method, url, token, body string) (int, string, http.Header) {
	t.Helper()
	var r io.Reader
	if body != "" {
		r = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, url, r)
	if err != nil {
		t.Fatal(err)
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	res, err := hc.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	return res.StatusCode, string(b), res.Header
}

// login posts to /v1/login and returns the token.
func login(t *testing.T, url, user, password string) string {
	t.Helper()
	b, _ := json.Marshal(server.LoginRequest{Username: user, Password: password})
	status, body, _ := httpDo(t, http.DefaultClient, "POST", url+"/v1/login", "", string(b))
	if status != http.StatusOK {
		t.Fatalf("login %s: %d %s", user, status, body)
	}
	var res server.LoginResponse
	if err := json.Unmarshal([]byte(body), &res); err != nil || res.Token == "" || res.ExpiresAt.IsZero() {
		t.Fatalf("login %s: %q: %v", user, body, err)
	}
	return res.Token
}

func TestServeAuth(t *testing.T) {
	auth := writeTestAuth(t)
	const key = "0123456789abcdef0123456789abcdef-test-key"
	data := t.TempDir()
	p := startServer(t, data, []string{"ANNALS_TOKEN_KEY=" + key}, "--auth", auth.file)
	ctx := context.Background()
	hc := http.DefaultClient

	if logs := p.logs.String(); strings.Contains(logs, key) || !strings.Contains(logs, `"token-key":{"value":"***","from":"env"}`) {
		t.Errorf("the configuration log shows the token key, or not as masked:\n%s", logs)
	}

	// No credentials, or wrong ones: Unauthenticated over gRPC, 401 over HTTP.
	for _, token := range []string{"", "not-a-token", "annals1.e30.AAAA"} {
		_, err := client.Open(ctx, p.url, &client.Options{Token: token})
		if got := connect.CodeOf(err); got != connect.CodeUnauthenticated {
			t.Errorf("client with token %q: %v (code %v), want Unauthenticated", token, err, got)
		}
		for _, path := range []string{"/v1/streams/cart-1", "/v1/all", "/v1/streams", "/v1/stats", "/metrics", "/v1/sse/all", "/nothing/here"} {
			status, body, h := httpDo(t, hc, "GET", p.url+path, token, "")
			if status != http.StatusUnauthorized || !strings.Contains(body, `"unauthenticated"`) || h.Get("WWW-Authenticate") == "" {
				t.Errorf("GET %s with token %q: %d %s (WWW-Authenticate %q), want 401", path, token, status, body, h.Get("WWW-Authenticate"))
			}
		}
		status, body, _ := httpDo(t, hc, "POST", p.url+"/annals.v1.EventStoreService/Append", token, `{"stream":"cart-1","events":[{"type":"X"}]}`)
		if status != http.StatusUnauthorized || !strings.Contains(body, `"code":"unauthenticated"`) {
			t.Errorf("Connect JSON append with token %q: %d %s, want 401 unauthenticated", token, status, body)
		}
	}
	// Public: health, readiness and the console's own files.
	for _, path := range []string{"/healthz", "/readyz", "/"} {
		if status, body, _ := httpDo(t, hc, "GET", p.url+path, "", ""); status != http.StatusOK {
			t.Errorf("GET %s without credentials: %d %s, want 200", path, status, body)
		}
	}

	// Login: a wrong password is 401; a right one gives a token.
	if status, body, _ := httpDo(t, hc, "POST", p.url+"/v1/login", "", `{"username":"bob","password":"wrong"}`); status != http.StatusUnauthorized {
		t.Errorf("login with a wrong password: %d %s, want 401", status, body)
	}
	if status, body, _ := httpDo(t, hc, "POST", p.url+"/v1/login", "", `{"username":"nobody","password":"x"}`); status != http.StatusUnauthorized {
		t.Errorf("login of an unknown user: %d %s, want 401", status, body)
	}
	if status, body, _ := httpDo(t, hc, "POST", p.url+"/v1/login", "", `{"user":"bob"}`); status != http.StatusBadRequest {
		t.Errorf("login with a malformed body: %d %s, want 400", status, body)
	}
	bobToken := login(t, p.url, "bob", auth.passwords["bob"])
	bob := dialServer(t, p.url, bobToken, nil)
	admin := dialServer(t, p.url, auth.adminToken, nil)

	// bob may write and read cart- streams, nothing else.
	if _, err := bob.Append(ctx, "cart-1", annals.Any, annals.Event{Type: "ItemAdded", Data: []byte(`{"sku":"A1"}`)}); err != nil {
		t.Fatalf("bob appends to cart-1: %v", err)
	}
	if _, err := admin.Append(ctx, "order-1", annals.Any, annals.Event{Type: "OrderPlaced"}); err != nil {
		t.Fatalf("admin appends to order-1: %v", err)
	}
	_, err := bob.Append(ctx, "order-1", annals.Any, annals.Event{Type: "OrderPlaced"})
	if got := connect.CodeOf(err); got != connect.CodePermissionDenied {
		t.Errorf("bob appends to order-1: %v, want PermissionDenied", err)
	}
	if _, err := bob.Delete(ctx, "cart-1", annals.Any); connect.CodeOf(err) != connect.CodePermissionDenied {
		t.Errorf("bob deletes cart-1: %v, want PermissionDenied", err)
	}
	readAll := func(c *client.Client, f *annals.Filter) (int, error) {
		n := 0
		for _, err := range c.ReadAll(ctx, &annals.ReadOptions{Filter: f}) {
			if err != nil {
				return n, err
			}
			n++
		}
		return n, nil
	}
	if _, err := readAll(bob, nil); connect.CodeOf(err) != connect.CodePermissionDenied {
		t.Errorf("bob reads all of $all: %v, want PermissionDenied", err)
	}
	if n, err := readAll(bob, &annals.Filter{StreamPrefixes: []string{"cart-"}}); err != nil || n != 1 {
		t.Errorf("bob reads $all filtered to cart-: %d events, %v; want 1, nil", n, err)
	}
	status, body, _ := httpDo(t, hc, "GET", p.url+"/v1/streams/order-1", bobToken, "")
	if status != http.StatusForbidden || !strings.Contains(body, "PERMISSION_DENIED") {
		t.Errorf("bob GETs order-1: %d %s, want 403", status, body)
	}
	if status, body, _ := httpDo(t, hc, "GET", p.url+"/v1/streams/cart-1", bobToken, ""); status != http.StatusOK || !strings.Contains(body, `"sku":"A1"`) {
		t.Errorf("bob GETs cart-1: %d %s, want 200 with the event", status, body)
	}

	// SSE: ?access_token= works on the SSE routes only.
	sse := func(path string) (int, string) {
		t.Helper()
		ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
		req, _ := http.NewRequestWithContext(ctx, "GET", p.url+path, nil)
		res, err := hc.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer res.Body.Close()
		if res.StatusCode != http.StatusOK {
			b, _ := io.ReadAll(res.Body)
			return res.StatusCode, string(b)
		}
		sc := bufio.NewScanner(res.Body)
		for sc.Scan() {
			if strings.HasPrefix(sc.Text(), "data: ") {
				return res.StatusCode, sc.Text()
			}
		}
		return res.StatusCode, ""
	}
	if status, body := sse("/v1/sse/streams/cart-1?from=0"); status != http.StatusUnauthorized {
		t.Errorf("SSE without a token: %d %s, want 401", status, body)
	}
	if status, body := sse("/v1/sse/streams/cart-1?from=0&access_token=" + bobToken); status != http.StatusOK || !strings.Contains(body, `"sku":"A1"`) {
		t.Errorf("SSE with ?access_token=: %d %q, want 200 and the event", status, body)
	}
	if status, body := sse("/v1/sse/streams/order-1?from=0&access_token=" + bobToken); status != http.StatusForbidden {
		t.Errorf("SSE of a forbidden stream: %d %s, want 403", status, body)
	}
	if status, body, _ := httpDo(t, hc, "GET", p.url+"/v1/streams/cart-1?access_token="+bobToken, "", ""); status != http.StatusUnauthorized {
		t.Errorf("?access_token= on a JSON read route: %d %s, want 401 (SSE only)", status, body)
	}

	// Metrics: behind auth, for the metrics permission.
	if status, body, _ := httpDo(t, hc, "GET", p.url+"/metrics", bobToken, ""); status != http.StatusForbidden {
		t.Errorf("bob GETs /metrics: %d %s, want 403", status, body)
	}
	status, body, _ = httpDo(t, hc, "GET", p.url+"/metrics", auth.metricsToken, "")
	for _, want := range []string{`annals_appends_total{code="ok"} 2`, `annals_appends_total{code="permission_denied"} 1`, "annals_appended_events_total 2", "annals_storage_bytes", "annals_head_position 2", "annals_append_duration_seconds_count"} {
		if status != http.StatusOK || !strings.Contains(body, want) {
			t.Errorf("GET /metrics as the scraper: %d, no %q in\n%s", status, want, body)
		}
	}

	// A stream ACL narrows the grants where it is set: bob (read:cart-, not in cart-2's ACL)
	// may not read cart-2; the auditor (in the ACL, but no grant at all) may not either: an
	// ACL never widens what the grants allow.
	if _, err := admin.Append(ctx, "cart-2", annals.Any, annals.Event{Type: "ItemAdded"}); err != nil {
		t.Fatal(err)
	}
	if _, err := admin.SetMetadata(ctx, "cart-2", annals.Any, annals.StreamMetadata{ACL: &annals.ACL{Read: []string{"auditor"}}}); err != nil {
		t.Fatal(err)
	}
	auditor := dialServer(t, p.url, auth.auditorToken, nil)
	readStream := func(c *client.Client, stream string) error {
		for _, err := range c.ReadStream(ctx, stream, nil) {
			if err != nil {
				return err
			}
		}
		return nil
	}
	if err := readStream(bob, "cart-2"); connect.CodeOf(err) != connect.CodePermissionDenied {
		t.Errorf("bob reads cart-2 (ACL read: auditor): %v, want PermissionDenied", err)
	}
	if err := readStream(auditor, "cart-2"); connect.CodeOf(err) != connect.CodePermissionDenied {
		t.Errorf("the auditor reads cart-2 (in the ACL, no grant): %v, want PermissionDenied", err)
	}
	if _, err := admin.SetMetadata(ctx, "cart-2", annals.Any, annals.StreamMetadata{ACL: &annals.ACL{Read: []string{"auditor", "cart"}}}); err != nil {
		t.Fatal(err)
	}
	if err := readStream(bob, "cart-2"); err != nil {
		t.Errorf("bob reads cart-2 (a grant, and his role in the ACL): %v", err)
	}
	if err := readStream(auditor, "cart-1"); connect.CodeOf(err) != connect.CodePermissionDenied {
		t.Errorf("the auditor reads cart-1 (no ACL, no grant): %v, want PermissionDenied", err)
	}
	if _, err := bob.Append(ctx, "cart-2", annals.Any, annals.Event{Type: "ItemAdded"}); err != nil {
		t.Errorf("bob appends to cart-2 (the ACL has no write list): %v", err)
	}

	// The CLI over the network, with and without the token.
	e := newEnv(t)
	out := e.ok("", "--server", p.url, "--token", bobToken, "read", "cart-1")
	if !strings.Contains(out, "cart-1@0  ItemAdded") {
		t.Errorf("annals --server --token read cart-1: %q", out)
	}
	if r := e.run(ctx, "", "--server", p.url, "read", "cart-1"); r.code != 1 || !strings.Contains(r.line, "unauthenticated") {
		t.Errorf("annals --server without a token: exit %d, %q; want 1 and unauthenticated", r.code, r.line)
	}

	// A token signed with the configured key outlives a restart.
	p.stop()
	p = startServer(t, data, []string{"ANNALS_TOKEN_KEY=" + key}, "--auth", auth.file)
	if err := readStream(dialServer(t, p.url, bobToken, nil), "cart-1"); err != nil {
		t.Errorf("bob's token after a restart with the same key: %v", err)
	}
	p.stop()

	// An expired token is refused.
	p = startServer(t, data, nil, "--auth", auth.file, "--token-ttl", "1s")
	short := login(t, p.url, "bob", auth.passwords["bob"])
	testwait.Until(t, "the 1s token to expire", func() bool {
		status, body, _ := httpDo(t, hc, "GET", p.url+"/v1/streams/cart-1", short, "")
		return status == http.StatusUnauthorized && strings.Contains(body, "expired")
	})
	if _, err := client.Open(ctx, p.url, &client.Options{Token: short}); connect.CodeOf(err) != connect.CodeUnauthenticated {
		t.Errorf("client with an expired token: %v, want Unauthenticated", err)
	}
}

func TestServeNoAuthLocalhost(t *testing.T) {
	// Without --auth and --listen, the default address is on localhost; the log says why.
	for auth, want := range map[string]string{"": "127.0.0.1:" + defaultPort, "auth.yaml": ":" + defaultPort} {
		if got := defaultListen(auth); got != want {
			t.Errorf("default --listen with --auth %q: %s, want %s", auth, got, want)
		}
	}
	p := startServer(t, t.TempDir(), nil)
	if !strings.Contains(p.logs.String(), "listening on localhost only") {
		t.Errorf("no word of localhost only in the log:\n%s", p.logs.String())
	}
	if status, body, _ := httpDo(t, http.DefaultClient, "GET", p.url+"/metrics", "", ""); status != http.StatusOK || !strings.Contains(body, "annals_head_position 0") {
		t.Errorf("GET /metrics without auth: %d\n%s", status, body)
	}
}

func TestServeTLSDev(t *testing.T) {
	data := t.TempDir()
	p := startServer(t, data, nil, "--dev")
	if !strings.HasPrefix(p.url, "https://") {
		t.Fatalf("--dev serves %s, want https", p.url)
	}
	cert := filepath.Join(data, devCertDir, "cert.pem")
	if !strings.Contains(p.logs.String(), "--cacert "+cert) {
		t.Errorf("the log does not say how to trust %s:\n%s", cert, p.logs.String())
	}
	pem, err := os.ReadFile(cert)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(pem)
	url := strings.Replace(p.url, "127.0.0.1", "localhost", 1)

	// Without trusting the certificate, TLS fails; trusting it, HTTP/1 and gRPC work.
	if _, err := http.Get(url + "/healthz"); err == nil || !strings.Contains(err.Error(), "certificate") {
		t.Errorf("GET over TLS without trusting the dev certificate: %v, want a certificate error", err)
	}
	hc := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
	if status, _, _ := httpDo(t, hc, "GET", url+"/healthz", "", ""); status != http.StatusOK {
		t.Errorf("GET /healthz over TLS: %d", status)
	}
	e := newEnv(t)
	e.ok("", "--server", url, "--tls-ca", cert, "append", "cart-1", "ItemAdded", `{"sku":"A1"}`)
	if out := e.ok("", "--server", url, "--tls-ca", cert, "read", "cart-1"); !strings.Contains(out, `{"sku":"A1"}`) {
		t.Errorf("read over TLS: %q", out)
	}
	if r := e.run(context.Background(), "", "--server", url, "read", "cart-1"); r.code != 1 {
		t.Errorf("annals --server https without --tls-ca: exit %d (%s), want 1", r.code, r.line)
	}

	// The certificate is kept: a restart serves the same one.
	p.stop()
	startServer(t, data, nil, "--dev")
	again, err := os.ReadFile(cert)
	if err != nil || string(again) != string(pem) {
		t.Errorf("the dev certificate changed across a restart (%v)", err)
	}
}

// load appends from several clients until stop is closed or an append fails, and returns
// the ids of the events of every append that succeeded, and of those that failed.
type loadResult struct {
	acked, failed [][]annals.UUID // events per append
}

// dialClients opens n clients of url, each on a connection of its own.
func dialClients(t *testing.T, url string, n int) []*client.Client {
	cs := make([]*client.Client, n)
	for i := range cs {
		cs[i] = dialServer(t, url, "", &client.Options{ReconnectTimeout: -1})
	}
	return cs
}

func runLoad(clients []*client.Client, stop <-chan struct{}, progress func(int)) loadResult {
	var (
		mu  sync.Mutex
		res loadResult
		wg  sync.WaitGroup
	)
	for i, c := range clients {
		wg.Go(func() {
			stream := fmt.Sprintf("load-%d", i)
			for n := 0; n < 100_000; n++ {
				select {
				case <-stop:
					return
				default:
				}
				size := 1 + n%5 // 1 to 5 events: atomic appends of several
				evs := make([]annals.Event, size)
				ids := make([]annals.UUID, size)
				for j := range evs {
					ids[j] = annals.NewUUID()
					evs[j] = annals.Event{ID: ids[j], Type: "Loaded", Data: []byte(fmt.Sprintf(`{"client":%d,"n":%d}`, i, n))}
				}
				ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
				_, err := c.Append(ctx, stream, annals.Any, evs...)
				cancel()
				mu.Lock()
				if err != nil {
					res.failed = append(res.failed, ids)
					mu.Unlock()
					return
				}
				res.acked = append(res.acked, ids)
				k := len(res.acked)
				mu.Unlock()
				progress(k)
			}
		})
	}
	wg.Wait()
	return res
}

// checkLoad fails the test unless every acknowledged event is in the log of the server at
// url, and every failed append is there whole or not at all.
func checkLoad(t *testing.T, url string, res loadResult) {
	t.Helper()
	c := dialServer(t, url, "", nil)
	have := make(map[annals.UUID]bool)
	for e, err := range c.ReadAll(context.Background(), nil) {
		if err != nil {
			t.Fatal(err)
		}
		have[e.ID] = true
	}
	lost := 0
	for _, ids := range res.acked {
		for _, id := range ids {
			if !have[id] {
				lost++
			}
		}
	}
	if lost > 0 {
		t.Errorf("%d acknowledged events of %d appends are missing after the restart", lost, len(res.acked))
	}
	for _, ids := range res.failed {
		n := 0
		for _, id := range ids {
			if have[id] {
				n++
			}
		}
		if n != 0 && n != len(ids) {
			t.Errorf("a failed append of %d events left %d of them: appends must be atomic", len(ids), n)
		}
	}
	if len(res.acked) == 0 {
		t.Error("no append succeeded: the test tested nothing")
	}
}

// TestServeKill9 is the bar's test: the server process under load from several clients is
// SIGKILLed; after a restart, every append that got a success answer is there.
func TestServeKill9(t *testing.T) {
	data := t.TempDir()
	p := startServer(t, data, nil)
	stop := make(chan struct{})
	reached := make(chan struct{})
	var once sync.Once
	done := make(chan loadResult)
	clients := dialClients(t, p.url, 4)
	go func() {
		done <- runLoad(clients, stop, func(n int) {
			if n >= 1000 {
				once.Do(func() { close(reached) })
			}
		})
	}()
	select {
	case <-reached:
	case <-time.After(60 * time.Second):
		close(stop)
		<-done
		t.Fatal("the load did not reach 1000 appends within 60s")
	}
	p.kill9() // mid-load: the clients' next appends fail
	close(stop)
	res := <-done

	// The data directory is sound (a torn tail is not damage), and the restarted server has
	// every acknowledged append.
	e := &env{t: t, dir: data}
	if out := e.ok("", "check"); !strings.HasPrefix(out, "ok:") {
		t.Errorf("annals check after kill -9: %q", out)
	}
	checkLoad(t, startServer(t, data, nil).url, res)
	t.Logf("%d appends acknowledged, %d failed at the kill", len(res.acked), len(res.failed))
}

// TestServeGracefulShutdown stops the server with SIGTERM under load: it exits cleanly, and
// every acknowledged append is there after a restart. A subscription open at the time ends
// with the server's clean status and the client reconnects to the next server.
func TestServeGracefulShutdown(t *testing.T) {
	data := t.TempDir()
	p := startServer(t, data, nil)
	stop := make(chan struct{})
	reached := make(chan struct{})
	var once sync.Once
	done := make(chan loadResult)
	clients := dialClients(t, p.url, 4)
	go func() {
		done <- runLoad(clients, stop, func(n int) {
			if n >= 200 {
				once.Do(func() { close(reached) })
			}
		})
	}()
	select {
	case <-reached:
	case <-time.After(60 * time.Second):
		close(stop)
		<-done
		t.Fatal("the load did not reach 200 appends within 60s")
	}
	// A subscription open at the stop ends with Unavailable / SHUTTING_DOWN (with no
	// reconnection allowed, the client reports it).
	sub := dialServer(t, p.url, "", &client.Options{ReconnectTimeout: -1})
	subErr := make(chan error, 1)
	go func() {
		for _, err := range sub.SubscribeAll(context.Background(), &annals.SubscribeOptions{From: annals.End}) {
			if err != nil {
				subErr <- err
				return
			}
		}
		subErr <- nil
	}()
	testwait.Until(t, "the subscription to run", func() bool {
		st, err := sub.Info(context.Background())
		return err == nil && st.Subscriptions > 0
	})
	p.stop() // fails the test unless the process exits with status 0
	close(stop)
	res := <-done
	if err := <-subErr; connect.CodeOf(err) != connect.CodeUnavailable || !strings.Contains(err.Error(), "shutting down") {
		t.Errorf("subscription at shutdown ended with %v, want Unavailable: shutting down", err)
	}
	logs := p.logs.String()
	for _, want := range []string{"shutting down", `"msg":"` + shutdownLogMessage + `"`} {
		if !strings.Contains(logs, want) {
			t.Errorf("no %q in the log:\n%s", want, logs)
		}
	}
	checkLoad(t, startServer(t, data, nil).url, res)
}

// TestServeConfigPrecedence: a flag beats the environment, which beats the config file,
// which beats the default.
func TestServeConfigPrecedence(t *testing.T) {
	dir := t.TempDir()
	conf := filepath.Join(dir, "annals.yaml")
	os.WriteFile(conf, []byte(`# annals serve configuration
listen: 127.0.0.1:0
log-format: json
log-level: warn
max-streams: 7
token-ttl: 5m
read-timeout: 11s
max-request-bytes-in-flight: 100000000
`), 0o600)
	env := map[string]string{
		"ANNALS_CONFIG":       conf,
		"ANNALS_LOG_LEVEL":    "info",
		"ANNALS_MAX_STREAMS":  "8",
		"ANNALS_READ_TIMEOUT": "12s",
		"ANNALS_SERVER":       "http://ignored.invalid:1", // for the other commands, not serve
	}
	ctx, cancel := context.WithCancel(context.Background())
	var stderr syncBuffer
	m := &Main{
		Args:   []string{"--data", filepath.Join(dir, "data"), "serve", "--max-streams", "9"},
		Stderr: &stderr,
		Getenv: func(k string) string { return env[k] },
	}
	errc := make(chan error, 1)
	go func() { errc <- m.Run(ctx) }()
	var conf0 map[string]json.RawMessage
	testwait.Until(t, "the server to serve", func() bool {
		for l := range strings.Lines(stderr.String()) {
			var rec map[string]json.RawMessage
			if json.Unmarshal([]byte(l), &rec) == nil && string(rec["msg"]) == `"configuration"` {
				conf0 = rec
			}
			if strings.Contains(l, `"msg":"`+servingLogMessage+`"`) {
				return true
			}
		}
		select {
		case err := <-errc:
			t.Fatalf("serve ended: %v\n%s", err, stderr.String())
		default:
		}
		return false
	})
	cancel()
	if err := <-errc; err != nil {
		t.Fatalf("serve: %v", err)
	}
	want := map[string]string{
		"listen":        `{"value":"127.0.0.1:0","from":"file"}`,
		"log-format":    `{"value":"json","from":"file"}`,
		"log-level":     `{"value":"info","from":"env"}`,
		"max-streams":   `{"value":"9","from":"flag"}`,
		"read-timeout":  `{"value":"12s","from":"env"}`,
		"token-ttl":     `{"value":"5m0s","from":"file"}`,
		"write-timeout": `{"value":"1m0s","from":"default"}`,

		"max-request-bytes-in-flight": `{"value":"100000000","from":"file"}`,
	}
	for k, v := range want {
		if got := string(conf0[k]); got != v {
			t.Errorf("configuration %s: %s, want %s", k, got, v)
		}
	}

	// Unknown keys and bad values in the file are usage errors.
	for _, bad := range []string{"listen: [1, 2]\n", "no-such-setting: 1\n", "max-streams: many\n"} {
		os.WriteFile(conf, []byte(bad), 0o600)
		m := &Main{Args: []string{"--data", filepath.Join(dir, "data"), "serve", "--config", conf}, Getenv: func(string) string { return "" }}
		err := m.Run(context.Background())
		if err == nil || !strings.Contains(err.Error(), "config file") {
			t.Errorf("config file %q: %v, want an error naming the config file", bad, err)
		}
	}
}

// TestRemoteCommands runs the store commands against servers with --server: append (one
// event and JSON lines), read, tail, streams, export from one server and import into
// another; check refuses --server.
func TestRemoteCommands(t *testing.T) {
	src := startServer(t, t.TempDir(), nil)
	dst := startServer(t, t.TempDir(), nil)
	e := newEnv(t)
	on := func(p *serverProc, args ...string) []string { return append([]string{"--server", p.url}, args...) }

	if out := e.ok("", on(src, "append", "cart-1", "ItemAdded", `{"sku":"A1"}`, "--expected", "no-stream")...); out != "appended 1 event to cart-1: revision 0, position 1\n" {
		t.Errorf("append: %q", out)
	}
	e.ok(`{"type":"ItemAdded","data":{"sku":"B2"}}`+"\n"+`{"type":"CheckedOut"}`+"\n", on(src, "append", "cart-1", "-", "--expected", "0")...)
	e.ok("", on(src, "append", "order-1", "OrderPlaced")...)
	r := e.run(context.Background(), "", on(src, "append", "cart-1", "X", "--expected", "0")...)
	if r.code != 1 || !strings.Contains(r.line, `conflict: stream "cart-1" is at revision 2`) {
		t.Errorf("append with a stale --expected over the network: exit %d, %q", r.code, r.line)
	}
	if out := normalize(e.ok("", on(src, "read", "cart-1")...), false); out != ""+
		"1  cart-1@0  ItemAdded  TIME  {\"sku\":\"A1\"}\n"+
		"2  cart-1@1  ItemAdded  TIME  {\"sku\":\"B2\"}\n"+
		"3  cart-1@2  CheckedOut  TIME\n" {
		t.Errorf("read: %q", out)
	}
	if out := e.ok("", on(src, "streams")...); !strings.Contains(out, "order-1") || !slices.ContainsFunc(lines(out), func(l string) bool {
		return slices.Equal(strings.Fields(l), []string{"cart-1", "2", "3"})
	}) {
		t.Errorf("streams: %q", out)
	}
	if out := e.ok("", on(src, "tail", "$all", "--from", "0", "--limit", "4")...); len(lines(out)) != 4 {
		t.Errorf("tail --limit 4: %q", out)
	}
	r = e.run(context.Background(), "", on(src, "read", "nope-1")...)
	if r.code != 1 || !strings.Contains(r.line, `stream "nope-1" not found`) {
		t.Errorf("read of a missing stream: exit %d, %q", r.code, r.line)
	}

	// Live: tail follows the server while another command appends.
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var tailOut syncBuffer
	tailDone := make(chan result, 1)
	go func() {
		tailDone <- e.runTo(ctx, &tailOut, &syncBuffer{}, "", on(src, "tail", "live-1", "--limit", "1")...)
	}()
	testwait.Until(t, "the tail's subscription", func() bool {
		st, err := dialServer(t, src.url, "", nil).Info(ctx)
		return err == nil && st.Subscriptions > 0
	})
	e.ok("", on(src, "append", "live-1", "Pinged")...)
	if r := <-tailDone; r.err != nil || !strings.Contains(tailOut.String(), "live-1@0  Pinged") {
		t.Errorf("tail --server: %v, %q", r.err, tailOut.String())
	}

	// export from src, import into dst.
	export := filepath.Join(t.TempDir(), "export.jsonl")
	e.ok("", on(src, "export", "--out", export)...)
	e.ok("", on(dst, "import", "--in", export)...)
	if a, b := e.ok("", on(src, "read", "cart-1", "--json")...), e.ok("", on(dst, "read", "cart-1", "--json")...); normalize(a, false) != normalize(b, false) || a == "" {
		t.Errorf("cart-1 after export and import:\n%s\nwant\n%s", b, a)
	}

	if r := e.run(context.Background(), "", on(src, "check")...); r.code != 2 || !strings.Contains(r.line, "not over the network") {
		t.Errorf("annals --server check: exit %d, %q; want a usage error", r.code, r.line)
	}
	if r := e.run(context.Background(), "", on(src, "serve")...); r.code != 2 {
		t.Errorf("annals --server serve: exit %d, %q; want a usage error", r.code, r.line)
	}
	// Getenv's ANNALS_SERVER points the commands at the server too.
	m := &Main{Args: []string{"read", "cart-1"}, Stdout: &syncBuffer{}, Getenv: func(k string) string {
		return map[string]string{"ANNALS_SERVER": src.url}[k]
	}}
	if err := m.Run(context.Background()); err != nil || !strings.Contains(m.Stdout.(*syncBuffer).String(), "CheckedOut") {
		t.Errorf("ANNALS_SERVER: %v, %q", err, m.Stdout.(*syncBuffer).String())
	}
}

// TestServeLongSubscriptions: subscriptions (gRPC and SSE over HTTP/1) outlive the read and
// write timeouts, which still apply to ordinary requests.
func TestServeLongSubscriptions(t *testing.T) {
	const timeout = 200 * time.Millisecond
	p := startServer(t, t.TempDir(), nil, "--read-timeout", timeout.String(), "--write-timeout", timeout.String())
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c := dialServer(t, p.url, "", &client.Options{ReconnectTimeout: -1})
	got := make(chan string, 2)
	started := time.Now() // before either subscription's request
	go func() {
		for e, err := range c.SubscribeStream(ctx, "long-1", &annals.SubscribeOptions{From: 0}) {
			if err != nil {
				got <- "grpc: " + err.Error()
				return
			}
			got <- "grpc " + e.Type
			return
		}
	}()
	req, _ := http.NewRequestWithContext(ctx, "GET", p.url+"/v1/sse/streams/long-1?from=0", nil)
	res, err := http.DefaultClient.Do(req) // HTTP/1.1
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	go func() {
		sc := bufio.NewScanner(res.Body)
		for sc.Scan() {
			if strings.HasPrefix(sc.Text(), "data: ") {
				got <- "sse " + sc.Text()
				return
			}
		}
		got <- fmt.Sprintf("sse ended: %v", sc.Err())
	}()
	testwait.Until(t, "both subscriptions", func() bool {
		st, err := c.Info(ctx)
		return err == nil && st.Subscriptions == 2
	})
	// Wait until both subscriptions have outlived both timeouts (the feature under test is
	// clock-based), then append and wait for both deliveries.
	testwait.Until(t, "the subscriptions past the timeouts", func() bool { return time.Since(started) > 3*timeout })
	if _, err := c.Append(ctx, "long-1", annals.Any, annals.Event{Type: "Late"}); err != nil {
		t.Fatalf("append after the subscriptions outlived the timeouts: %v", err)
	}
	for range 2 {
		if g := testwait.Recv(t, "a delivery past the timeouts", got); !strings.Contains(g, "Late") {
			t.Errorf("a subscription past the timeouts: %s", g)
		}
	}
}

// TestServeSlowRequestBody: a request to a long-running route whose body never ends (sent
// slowly, or not read because auth refuses it) is answered once the read timeout passes, with
// or without auth, instead of holding its connection and goroutine for ever.
func TestServeSlowRequestBody(t *testing.T) {
	auth := writeTestAuth(t)
	for _, args := range [][]string{nil, {"--auth", auth.file}} {
		p := startServer(t, t.TempDir(), nil, append([]string{"--read-timeout", "300ms"}, args...)...)
		for _, path := range []string{"/annals.v1.EventStoreService/ReadAll", "/v1/sse/all"} {
			method := "POST"
			if strings.HasPrefix(path, "/v1/sse/") {
				method = "GET"
			}
			conn, err := net.Dial("tcp", strings.TrimPrefix(p.url, "http://"))
			if err != nil {
				t.Fatal(err)
			}
			fmt.Fprintf(conn, "%s %s HTTP/1.1\r\nHost: x\r\nContent-Type: application/connect+json\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello", method, path)
			conn.SetReadDeadline(time.Now().Add(20 * time.Second))
			start := time.Now()
			res, err := http.ReadResponse(bufio.NewReader(conn), nil)
			if err == nil {
				_, err = io.Copy(io.Discard, res.Body) // the whole answer, or the connection closed
				res.Body.Close()
			}
			conn.Close()
			if err != nil && !errors.Is(err, io.ErrUnexpectedEOF) {
				t.Errorf("%v %s %s: no answer: %v", args, method, path, err)
			} else if d := time.Since(start); d > 10*time.Second {
				t.Errorf("%v %s %s: answered only after %v", args, method, path, d)
			}
		}
	}
}

// TestServeLongBatchAppend: a BatchAppend stream over HTTP/2 outlives the read and write
// timeouts, and its appends go on succeeding.
func TestServeLongBatchAppend(t *testing.T) {
	const timeout = time.Second
	p := startServer(t, t.TempDir(), nil, "--read-timeout", timeout.String(), "--write-timeout", timeout.String())
	var protocols http.Protocols
	protocols.SetUnencryptedHTTP2(true)
	hc := &http.Client{Transport: &http.Transport{Protocols: &protocols}}
	rpc := annalsv1connect.NewEventStoreServiceClient(hc, p.url, connect.WithGRPC())
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	started := time.Now() // before the stream's request
	st := rpc.BatchAppend(ctx)
	appendOne := func(id uint64) {
		t.Helper()
		req := &annalsv1.BatchAppendRequest{Appends: []*annalsv1.BatchAppend{{Id: id, Append: &annalsv1.AppendRequest{
			Stream: "long-1", Events: []*annalsv1.Event{{Type: "E"}}}}}}
		if err := st.Send(req); err != nil {
			_, err = st.Receive()
			t.Fatalf("send append %d: %v", id, err)
		}
		m, err := st.Receive()
		if err != nil {
			t.Fatalf("result of append %d: %v", id, err)
		}
		if len(m.Results) != 1 || m.Results[0].Id != id || m.Results[0].GetOk() == nil {
			t.Fatalf("result of append %d: got %v, want ok", id, m.Results)
		}
	}
	appendOne(1)
	// The feature under test is clock-based: wait until the stream has outlived both
	// timeouts.
	testwait.Until(t, "the stream past the timeouts", func() bool { return time.Since(started) > 2*timeout })
	appendOne(2)
	if err := st.CloseRequest(); err != nil {
		t.Fatal(err)
	}
	if _, err := st.Receive(); !errors.Is(err, io.EOF) {
		t.Errorf("end of the stream: got %v, want io.EOF", err)
	}
}
