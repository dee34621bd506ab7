package console_test

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/chromedp/cdproto/runtime"
	"github.com/chromedp/chromedp"
	"golang.org/x/crypto/bcrypt"

	"github.com/annalsdb/annals"
	"github.com/annalsdb/annals/console"
	"github.com/annalsdb/annals/groups"
	"github.com/annalsdb/annals/memstore"
	"github.com/annalsdb/annals/server"
)

// chromium is Debian's Chromium, which .ci/run installs.
const chromium = "/usr/bin/chromium"

// browserTimeout bounds each browser test, start of Chromium included; the tests take a few
// seconds, the bound is for a machine loaded by other tests.
const browserTimeout = 60 * time.Second

// site is a server over a memstore with the console mounted beside the API, on a loopback
// port.
type site struct {
	store annals.Store
	srv   *server.Server
	url   string
}

func newSite(t *testing.T, opts *server.Options, wrap func(*http.ServeMux) http.Handler) *site {
	t.Helper()
	store := memstore.New(nil)
	t.Cleanup(func() { store.Close() })
	srv := server.New(store, opts)
	mux := http.NewServeMux()
	srv.Register(mux)
	mux.Handle("/", console.Handler(&console.Options{Title: "Annals test", PollInterval: 200 * time.Millisecond}))
	var h http.Handler = mux
	if wrap != nil {
		h = wrap(mux)
	}
	hs := httptest.NewServer(h)
	t.Cleanup(func() {
		srv.Close()
		hs.Close()
	})
	return &site{store: store, srv: srv, url: hs.URL}
}

// post calls a unary method with Connect's JSON, as any client of the API does, and decodes
// the answer into out.
func (s *site) post(t *testing.T, token, method string, in, out any) {
	t.Helper()
	b, _ := json.Marshal(in)
	req, _ := http.NewRequestWithContext(t.Context(), "POST", s.url+"/annals.v1.EventStoreService/"+method, bytes.NewReader(b))
	req.Header.Set("Content-Type", "application/json")
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	body, _ := io.ReadAll(res.Body)
	if res.StatusCode != 200 {
		t.Fatalf("%s: %d %s", method, res.StatusCode, body)
	}
	if out != nil {
		if err := json.Unmarshal(body, out); err != nil {
			t.Fatalf("%s: %v in %s", method, err, body)
		}
	}
}

// appendJSON appends one event of type typ with JSON data (and metadata, when not "") to
// stream through the API.
func (s *site) appendJSON(t *testing.T, token, stream, typ, data, metadata string) {
	t.Helper()
	ev := map[string]any{"type": typ, "data": base64.StdEncoding.EncodeToString([]byte(data))}
	if metadata != "" {
		ev["metadata"] = base64.StdEncoding.EncodeToString([]byte(metadata))
	}
	var res struct{ Position string }
	s.post(t, token, "Append", map[string]any{"stream": stream, "events": []any{ev}}, &res)
	if res.Position == "" {
		t.Fatalf("append to %s: no position in the answer", stream)
	}
}

// browser starts a headless Chromium for the test and returns its context, which ends with
// the test or after browserTimeout. It skips the test when Chromium is missing, unless
// ANNALS_REQUIRE_BROWSER=1. JavaScript exceptions and console errors of the page fail the
// test.
func browser(t *testing.T) context.Context {
	t.Helper()
	if _, err := os.Stat(chromium); err != nil {
		if os.Getenv("ANNALS_REQUIRE_BROWSER") == "1" {
			t.Fatalf("ANNALS_REQUIRE_BROWSER=1 but there is no Chromium at %s: %v", chromium, err)
		}
		t.Skipf("no Chromium at %s (apt-get install chromium); the console's browser tests need it", chromium)
	}
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(chromium),
		chromedp.NoSandbox,
		chromedp.DisableGPU,
		chromedp.NoFirstRun,
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.UserDataDir(t.TempDir()),
		chromedp.WindowSize(1280, 1000),
	)
	ctx, cancel := context.WithTimeout(t.Context(), browserTimeout)
	actx, cancelAlloc := chromedp.NewExecAllocator(ctx, opts...)
	bctx, cancelBrowser := chromedp.NewContext(actx)
	t.Cleanup(func() {
		cancelBrowser()
		cancelAlloc()
		cancel()
	})
	var mu sync.Mutex
	var problems []string
	if err := chromedp.Do(bctx); err != nil { // start the browser now, inside the timeout
		t.Fatalf("start Chromium: %v", err)
	}
	err := chromedp.Listen(bctx, func(ev any) {
		var p string
		switch ev := ev.(type) {
		case *runtime.EventExceptionThrown:
			p = "exception: " + ev.ExceptionDetails.Text
			if ev.ExceptionDetails.Exception != nil {
				p += " " + ev.ExceptionDetails.Exception.Description
			}
		case *runtime.EventConsoleAPICalled:
			if ev.Type != runtime.ConsoleAPICalledTypeError {
				return
			}
			var args []string
			for _, a := range ev.Args {
				args = append(args, string(a.Value)+a.Description)
			}
			p = "console.error: " + strings.Join(args, " ")
		default:
			return
		}
		mu.Lock()
		problems = append(problems, p)
		mu.Unlock()
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		mu.Lock()
		defer mu.Unlock()
		for _, p := range problems {
			t.Errorf("the page's JavaScript: %s", p)
		}
	})
	return bctx
}

// artifacts is the directory for screenshots: $ANNALS_ARTIFACTS, else the test's temporary
// directory.
func artifacts(t *testing.T) string {
	t.Helper()
	dir := os.Getenv("ANNALS_ARTIFACTS")
	if dir == "" {
		return t.TempDir()
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	return dir
}

// screenshot saves a full-page PNG of what the browser shows as <test>-<name>.png.
func screenshot(t *testing.T, ctx context.Context, dir, name string) {
	t.Helper()
	png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
	if err != nil {
		t.Fatalf("screenshot %s: %v", name, err)
	}
	p := filepath.Join(dir, strings.ReplaceAll(t.Name(), "/", "_")+"-"+name+".png")
	if err := os.WriteFile(p, png, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("screenshot: %s", p)
}

// run runs actions in the browser, failing the test with what it was doing.
func run(t *testing.T, ctx context.Context, what string, actions ...chromedp.Action[chromedp.Void]) {
	t.Helper()
	if err := chromedp.Do(ctx, actions...); err != nil {
		t.Fatalf("%s: %v", what, err)
	}
}

// text returns the text content of the first element that matches sel, waiting for one. It
// finds the element and reads its text in one evaluation in the page, so a view that renders
// again meanwhile (the polled ones do) cannot take the node away between the two.
func text(t *testing.T, ctx context.Context, sel string) string {
	t.Helper()
	q, _ := json.Marshal(sel)
	expr := `(() => { const e = document.querySelector(` + string(q) + `); return e ? [e.textContent] : null; })()` // an array: truthy even for empty text
	s, err := chromedp.Run(ctx, chromedp.Poll[[]string](expr, chromedp.WithPollingInterval(20*time.Millisecond), chromedp.WithPollingTimeout(0)))
	if err != nil {
		t.Fatalf("text of %s: %v", sel, err)
	}
	return s[0]
}

// waitJS waits until the JavaScript expression is true.
func waitJS(t *testing.T, ctx context.Context, what, expr string) {
	t.Helper()
	if _, err := chromedp.Run(ctx, chromedp.Poll[chromedp.Void](expr, chromedp.WithPollingInterval(20*time.Millisecond), chromedp.WithPollingTimeout(0))); err != nil {
		t.Fatalf("wait until %s: %v", what, err)
	}
}

// eval evaluates a JavaScript expression in the page.
func eval[T any](t *testing.T, ctx context.Context, expr string) T {
	t.Helper()
	v, err := chromedp.Run(ctx, chromedp.Evaluate[T](expr))
	if err != nil {
		t.Fatalf("evaluate %s: %v", expr, err)
	}
	return v
}

// wantContains reports each of wants that got lacks.
func wantContains(t *testing.T, what, got string, wants ...string) {
	t.Helper()
	for _, w := range wants {
		if !strings.Contains(got, w) {
			t.Errorf("%s: %q does not contain %q", what, got, w)
		}
	}
}

// TestConsole drives the console in Chromium without auth: an event appended through the API
// appears live in the tail and in its stream's page, with its pretty JSON and the stream's
// metadata; the stream list searches by prefix with counts; the overview charts the rates and
// lists the subscriptions and projections.
func TestConsole(t *testing.T) {
	ctx := browser(t)
	dir := artifacts(t)
	s := newSite(t, &server.Options{Backend: "memstore", Projections: func(context.Context) ([]server.ProjectionStatus, error) {
		return []server.ProjectionStatus{
			{Name: "cart-view", State: "live", Generation: 1, Position: 4, Head: 4},
			{Name: "mailer", State: "failed", Position: 2, Head: 4, LagEvents: 2, LagSeconds: 3, Error: "smtp: connection refused",
				FailedEvent: &server.EventRef{Stream: "cart-42", Type: "ItemAdded", Revision: 0, Position: 3}},
		}, nil
	}}, nil)
	s.appendJSON(t, "", "cart-1", "CartOpened", `{"customer":"ada"}`, "")
	s.appendJSON(t, "", "cart-1", "ItemAdded", `{"sku":"ink","qty":1}`, "")

	t.Run("Tail", func(t *testing.T) {
		run(t, ctx, "open the tail",
			chromedp.Navigate(s.url+"/#/tail"),
			chromedp.WaitVisible(chromedp.CSS(`#tail-state.live`)))
		s.appendJSON(t, "", "cart-42", "ItemAdded", `{"sku":"pen","qty":3,"tags":["blue",null,true]}`, `{"correlationId":"c-7"}`)
		row := `#tail-rows tr.event-row[data-stream="cart-42"]`
		run(t, ctx, "see the event in the tail", chromedp.WaitVisible(chromedp.CSS(row)))
		wantContains(t, "tail row", text(t, ctx, row), "cart-42", "ItemAdded", `"sku":"pen"`, "3")
		if got := text(t, ctx, "#tail-count"); got != "1 event" {
			t.Errorf("tail count: got %q", got)
		}
		// A filter keeps other categories out; the server filters.
		run(t, ctx, "filter the tail by category",
			chromedp.SetValue(chromedp.CSS(`#tail-category`), "order"),
			chromedp.Click(chromedp.CSS(`#tail-filters button[type=submit]`)),
			chromedp.WaitVisible(chromedp.CSS(`#tail-state.live`)))
		waitJS(t, ctx, "the tail restarted empty", `document.querySelectorAll("#tail-rows tr.event-row").length === 0`)
		s.appendJSON(t, "", "cart-42", "ItemAdded", `{"sku":"cap","qty":1}`, "")
		s.appendJSON(t, "", "order-9", "OrderPlaced", `{"total":12.5}`, "")
		run(t, ctx, "see the order", chromedp.WaitVisible(chromedp.CSS(`#tail-rows tr.event-row[data-stream="order-9"]`)))
		if n := text(t, ctx, "#tail-count"); n != "1 event" {
			t.Errorf("filtered tail: got %q, want only the order", n)
		}
		screenshot(t, ctx, dir, "tail")
	})

	t.Run("Stream", func(t *testing.T) {
		s.post(t, "", "SetMetadata", map[string]any{"stream": "cart-42", "metadata": map[string]any{"maxCount": "100", "customJson": `{"owner":"shop"}`}}, nil)
		run(t, ctx, "open cart-42",
			chromedp.Navigate(s.url+"/#/stream/cart-42"),
			chromedp.WaitVisible(chromedp.CSS(`#events article.event[data-revision="1"]`)),
			chromedp.WaitVisible(chromedp.CSS(`#live-state.live`)))
		first := `#events article.event[data-revision="0"]`
		wantContains(t, "event 0", text(t, ctx, first), "ItemAdded", "#0", "position 3", `"sku": "pen"`, `"qty": 3`, `"correlationId": "c-7"`, "application/json")
		wantContains(t, "metadata", text(t, ctx, "#metadata"), "maxCount", "100", "owner", "shop", "metadata revision 0")
		waitJS(t, ctx, "the summary", `document.getElementById("stream-summary").textContent === "2 events · last revision 1"`)
		// Newest first; a new event comes in live at the top.
		s.appendJSON(t, "", "cart-42", "ItemRemoved", `{"sku":"pen"}`, "")
		run(t, ctx, "see the new event live", chromedp.WaitVisible(chromedp.CSS(`#events article.event[data-revision="2"]`)))
		order := eval[[]string](t, ctx, `[...document.querySelectorAll("#events article.event")].map(e => e.dataset.revision)`)
		if strings.Join(order, ",") != "2,1,0" {
			t.Errorf("events shown in order %v, want newest first", order)
		}
		waitJS(t, ctx, "the summary follows", `document.getElementById("stream-summary").textContent === "3 events · last revision 2"`)
		screenshot(t, ctx, dir, "stream")
	})

	t.Run("Paging", func(t *testing.T) {
		for i := range 25 {
			s.appendJSON(t, "", "long-1", "Tick", fmt.Sprintf(`{"n":%d}`, i), "")
		}
		run(t, ctx, "open long-1",
			chromedp.Navigate(s.url+"/#/stream/long-1"),
			chromedp.WaitVisible(chromedp.CSS(`#events article.event[data-revision="24"]`)),
			chromedp.Click(chromedp.CSS(`#older`)),
			chromedp.WaitVisible(chromedp.CSS(`#events article.event[data-revision="4"]`)))
		n := eval[int](t, ctx, `document.querySelectorAll("#events article.event").length`)
		if n != 5 {
			t.Errorf("older page: %d events, want 5 (revisions 4 to 0)", n)
		}
	})

	t.Run("Streams", func(t *testing.T) {
		s.appendJSON(t, "", "shop/order 7?", "Odd", `{}`, "")
		run(t, ctx, "search streams by prefix",
			chromedp.Navigate(s.url+"/#/streams"),
			chromedp.WaitVisible(chromedp.CSS(`#stream-list tr[data-stream="long-1"]`)),
			chromedp.SetValue(chromedp.CSS(`#stream-prefix`), "cart-"),
			chromedp.Click(chromedp.CSS(`#stream-search button[type=submit]`)),
			chromedp.WaitNotPresent(chromedp.CSS(`#stream-list tr[data-stream="long-1"]`)),
			chromedp.WaitVisible(chromedp.CSS(`#stream-list tr[data-stream="cart-42"]`)))
		rows := eval[[]string](t, ctx, `[...document.querySelectorAll("#stream-list tbody tr")].map(r => r.dataset.stream + "=" + r.querySelector(".count").textContent)`)
		if got := strings.Join(rows, " "); got != "cart-1=2 cart-42=3" {
			t.Errorf("streams with prefix cart-: got %s", got)
		}
		// An id with a slash, a space and a question mark goes through the links and routes.
		run(t, ctx, "open the odd stream",
			chromedp.Navigate(s.url+"/#/streams?prefix=shop"),
			chromedp.Click(chromedp.CSS(`#stream-list tr[data-stream="shop/order 7?"] a`)),
			chromedp.WaitVisible(chromedp.CSS(`#events article.event[data-revision="0"]`)))
		if got := text(t, ctx, "#stream-id"); got != "shop/order 7?" {
			t.Errorf("stream page of the odd id: got %q", got)
		}
		// A stream that does not exist yet shows its first event when it comes.
		run(t, ctx, "open a stream that does not exist",
			chromedp.Navigate(s.url+"/#/stream/nobody-1"),
			chromedp.WaitVisible(chromedp.CSS(`#events .empty`)),
			chromedp.WaitVisible(chromedp.CSS(`#live-state.live`)))
		s.appendJSON(t, "", "nobody-1", "Born", `{"at":"now"}`, "")
		run(t, ctx, "see its first event", chromedp.WaitVisible(chromedp.CSS(`#events article.event[data-revision="0"]`)), chromedp.WaitNotPresent(chromedp.CSS(`#events .empty`)))
		waitJS(t, ctx, "its summary", `document.getElementById("stream-summary").textContent === "1 event · last revision 0"`)
	})

	t.Run("Overview", func(t *testing.T) {
		// A subscriber of another kind, held open during the test, is listed.
		req, _ := http.NewRequestWithContext(t.Context(), "GET", s.url+"/v1/sse/all?from=0&category=cart", nil)
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer res.Body.Close()
		// Replicas hold the leases of a projection and of a process manager.
		pl, err := s.srv.Leases().Acquire(t.Context(), "projection/cart-view", "replica-1", time.Minute)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := s.srv.Leases().Acquire(t.Context(), "process/shipping", "replica-2", time.Minute); err != nil {
			t.Fatal(err)
		}
		run(t, ctx, "open the overview",
			chromedp.Navigate(s.url+"/#/"),
			chromedp.WaitVisible(chromedp.CSS(`#charts svg.chart polyline[data-series="events appended"]`)),
			chromedp.WaitVisible(chromedp.CSS(`#projections tr[data-name="mailer"]`)),
			chromedp.WaitVisible(chromedp.CSS(`#subscriptions tbody tr`)))
		// The per-second series have each append once its second is over: 2 + 1 + 2 + 1 + 25 + 1 + 1.
		waitJS(t, ctx, "the appends in the chart", `document.querySelector('li[data-series="events appended"]')?.dataset.total === "33"`)
		waitJS(t, ctx, "the deliveries in the chart", `Number(document.querySelector('li[data-series="events delivered"]')?.dataset.total) > 0`)
		wantContains(t, "head", text(t, ctx, "#head-position"), "34")
		wantContains(t, "subscriptions", text(t, ctx, "#subscriptions"), "sse", "$all", "category cart")
		wantContains(t, "projections", text(t, ctx, "#projections"), "cart-view", "live", "mailer", "failed", "smtp: connection refused", "cart-42")
		run(t, ctx, "see the leases", chromedp.WaitVisible(chromedp.CSS(`#leases tr[data-name="projection/cart-view"]`)))
		if got := text(t, ctx, `#projections tr[data-name="cart-view"] .holder`); got != "replica-1" {
			t.Errorf("cart-view held by %q, want replica-1", got)
		}
		if got := text(t, ctx, `#projections tr[data-name="mailer"] .holder`); got != "—" {
			t.Errorf("mailer held by %q, want nobody", got)
		}
		// The token in full: it exceeds the integers JavaScript holds exactly.
		if got := text(t, ctx, `#leases tr[data-name="projection/cart-view"] .token`); got != fmt.Sprint(pl.Token) {
			t.Errorf("token of cart-view's lease: got %q, want %d", got, pl.Token)
		}
		wantContains(t, "leases", text(t, ctx, "#leases"), "process/shipping", "replica-2", "projection/cart-view", "replica-1")
		screenshot(t, ctx, dir, "overview")
	})
}

// authSite is a site with the server's authentication on, wired as a server with auth is:
// the login endpoint and the console public, every API route behind [server.Auth.Middleware]
// and [server.Auth.Authorize]. ada is an admin, bob may read every stream. Its clock can be
// moved, to expire tokens; it counts how the credentials of the requests came.
type authSite struct {
	*site
	auth *server.Auth
	skew atomic.Int64 // nanoseconds added to the clock

	mu struct {
		sync.Mutex
		bearer, sseQuery, otherQuery int
	}
}

var passwords = map[string]string{"ada": "lovelace", "bob": "builder"}

func newAuthSite(t *testing.T) *authSite {
	t.Helper()
	a := &authSite{}
	var users []server.User
	for _, name := range []string{"ada", "bob"} {
		h, err := bcrypt.GenerateFromPassword([]byte(passwords[name]), bcrypt.MinCost)
		if err != nil {
			t.Fatal(err)
		}
		role := "admin"
		if name == "bob" {
			role = "reader"
		}
		users = append(users, server.User{Name: name, PasswordHash: string(h), Roles: []string{role}})
	}
	auth, err := server.NewAuth(&server.AuthOptions{
		Users:  users,
		Roles:  map[string][]server.Grant{"reader": {{Op: server.OpRead}, {Op: server.OpMetaRead}}},
		Now:    func() time.Time { return time.Now().Add(time.Duration(a.skew.Load())) },
		Logger: slog.New(slog.DiscardHandler),
	})
	if err != nil {
		t.Fatal(err)
	}
	a.auth = auth
	a.site = newSite(t, &server.Options{Authorize: auth.Authorize}, func(mux *http.ServeMux) http.Handler {
		root := http.NewServeMux()
		auth.Register(root)
		root.Handle("/", mux) // the console
		protected := auth.Middleware(mux)
		root.Handle("/annals.v1.EventStoreService/", protected)
		root.Handle("/v1/", protected)
		return a.count(root)
	})
	return a
}

// count records how each request carries its credentials.
func (a *authSite) count(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		sse := r.Method == "GET" && strings.HasPrefix(r.URL.Path, "/v1/sse/")
		query := r.URL.Query().Has("access_token")
		a.mu.Lock()
		switch {
		case r.Header.Get("Authorization") != "":
			a.mu.bearer++
		case query && sse:
			a.mu.sseQuery++
		case query:
			a.mu.otherQuery++
		}
		a.mu.Unlock()
		next.ServeHTTP(w, r)
	})
}

// token logs in as user from Go, for appends through the API.
func (a *authSite) token(t *testing.T, user string) string {
	t.Helper()
	b, _ := json.Marshal(map[string]string{"username": user, "password": passwords[user]})
	res, err := http.Post(a.url+"/v1/login", "application/json", bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	var v server.LoginResponse
	if err := json.NewDecoder(res.Body).Decode(&v); err != nil || v.Token == "" {
		t.Fatalf("login as %s: %d %v", user, res.StatusCode, err)
	}
	return v.Token
}

// TestConsoleLogin drives the console with the server's authentication on: a 401 shows the
// login form, a wrong password is refused, a reader sees the streams but not the admin's
// stats, the admin sees them, the live tail sends the token as ?access_token=, and an
// expired token sends the user back to the login form, from an event stream too.
func TestConsoleLogin(t *testing.T) {
	ctx := browser(t)
	dir := artifacts(t)
	s := newAuthSite(t)
	admin := s.token(t, "ada")
	s.appendJSON(t, admin, "cart-1", "CartOpened", `{"customer":"ada"}`, "")

	login := func(user, password string) {
		t.Helper()
		run(t, ctx, "log in as "+user,
			chromedp.WaitVisible(chromedp.CSS(`#login-form`)),
			chromedp.SetValue(chromedp.CSS(`#login-username`), user),
			chromedp.SetValue(chromedp.CSS(`#login-password`), password),
			chromedp.Click(chromedp.CSS(`#login-submit`)))
	}

	run(t, ctx, "open the streams", chromedp.Navigate(s.url+"/#/streams"), chromedp.WaitVisible(chromedp.CSS(`#login-form`)))
	login("bob", "wrong")
	run(t, ctx, "see the refusal", chromedp.WaitVisible(chromedp.CSS(`#login-error`)))
	wantContains(t, "login error", text(t, ctx, "#login-error"), "Wrong username or password")
	screenshot(t, ctx, dir, "login")

	login("bob", "builder")
	run(t, ctx, "see the streams as bob", chromedp.WaitVisible(chromedp.CSS(`#stream-list tr[data-stream="cart-1"]`)), chromedp.WaitVisible(chromedp.CSS(`#logout`)))
	if got := eval[string](t, ctx, `location.hash`); got != "#/streams" {
		t.Errorf("after login: at %q, want back at #/streams", got)
	}
	run(t, ctx, "open the overview as bob", chromedp.Navigate(s.url+"/#/"), chromedp.WaitVisible(chromedp.CSS(`#projections p`)))
	waitJS(t, ctx, "the note about stats", `document.getElementById("server-info").textContent.includes("admin role")`)

	run(t, ctx, "log out", chromedp.Click(chromedp.CSS(`#logout`)), chromedp.WaitVisible(chromedp.CSS(`#login-form`)))
	login("ada", "lovelace")
	run(t, ctx, "see the stats as ada", chromedp.WaitVisible(chromedp.CSS(`#head-position`)))
	if got := text(t, ctx, "#whoami"); got != "ada" {
		t.Errorf("logged in as %q, want ada", got)
	}

	run(t, ctx, "open the tail", chromedp.Navigate(s.url+"/#/tail"), chromedp.WaitVisible(chromedp.CSS(`#tail-state.live`)))
	s.appendJSON(t, admin, "cart-2", "ItemAdded", `{"sku":"pen"}`, "")
	run(t, ctx, "see the event in the tail", chromedp.WaitVisible(chromedp.CSS(`#tail-rows tr.event-row[data-stream="cart-2"]`)))
	screenshot(t, ctx, dir, "tail")

	// The token expires: the next event stream is refused, and the console asks again.
	s.skew.Store(int64(2 * server.DefaultTokenTTL))
	run(t, ctx, "reopen the tail with an expired token", chromedp.Navigate(s.url+"/#/tail?type=ItemAdded"), chromedp.WaitVisible(chromedp.CSS(`#login-form`)))
	if tok := eval[*string](t, ctx, `sessionStorage.getItem("annals.token")`); tok != nil {
		t.Errorf("the expired token is still kept: %q", *tok)
	}
	login("ada", "lovelace")
	run(t, ctx, "back at the tail", chromedp.WaitVisible(chromedp.CSS(`#tail-state.live`)))

	s.mu.Lock()
	defer s.mu.Unlock()
	if s.mu.bearer == 0 || s.mu.sseQuery == 0 || s.mu.otherQuery != 0 {
		t.Errorf("credentials came as bearer %d times, in the SSE query %d, in another query %d; want the header and the SSE query only",
			s.mu.bearer, s.mu.sseQuery, s.mu.otherQuery)
	}
}

// TestConsoleGroups drives the Groups view over a server's real consumer groups: a group on
// $all, a consumer that acks some events and parks others; the list shows the group's
// figures, its page the consumer and the parked events, and Replay parked gives them back,
// which the parked count shows.
func TestConsoleGroups(t *testing.T) {
	ctx := browser(t)
	dir := artifacts(t)
	s := newSite(t, nil, nil)
	gs, err := s.srv.Groups(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := gs.Create(t.Context(), "orders", groups.Settings{Stream: annals.AllStream, Filter: &annals.Filter{Categories: []string{"order"}}, MaxRetries: 3}); err != nil {
		t.Fatal(err)
	}
	c, err := gs.Join(t.Context(), "orders", &groups.JoinOptions{Name: "worker", Window: 10})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	for i := range 5 {
		s.appendJSON(t, "", fmt.Sprintf("order-%d", i), "OrderPlaced", fmt.Sprintf(`{"n":%d}`, i), "")
	}
	s.appendJSON(t, "", "cart-1", "ItemAdded", `{}`, "") // not the group's
	for i := range 5 {
		m, err := c.Receive(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		if i < 2 {
			err = c.Nack(t.Context(), groups.Nack{Action: groups.Park, Reason: "bad order"}, m.Event.ID)
		} else {
			err = c.Ack(t.Context(), m.Event.ID)
		}
		if err != nil {
			t.Fatal(err)
		}
	}

	row := `#groups-list tr[data-name="orders"]`
	run(t, ctx, "open the groups", chromedp.Navigate(s.url+"/#/groups"), chromedp.WaitVisible(chromedp.CSS(row)))
	waitJS(t, ctx, "the parked events in the list", `document.querySelector('`+row+` .parked')?.textContent === "2"`)
	wantContains(t, "group row", text(t, ctx, row), "orders", "$all", "category order", "round-robin")
	if got := text(t, ctx, row+" .consumers"); got != "1" {
		t.Errorf("consumers: %q, want 1", got)
	}
	if got := text(t, ctx, row+" .in-flight"); got != "0" {
		t.Errorf("in flight: %q, want 0", got)
	}
	screenshot(t, ctx, dir, "groups")

	run(t, ctx, "open the group", chromedp.Click(chromedp.CSS(row+" a")), chromedp.WaitVisible(chromedp.CSS(`#group-consumers tbody tr`)))
	waitJS(t, ctx, "two parked events listed", `document.querySelectorAll('#parked-events tr.parked-row[data-state="parked"]').length === 2`)
	if got := text(t, ctx, "#group-parked .card-value"); got != "2" {
		t.Errorf("parked count on the group page: %q, want 2", got)
	}
	wantContains(t, "consumer", text(t, ctx, "#group-consumers tbody tr"), "worker")
	if got := text(t, ctx, "#group-consumers tbody tr .acked"); got != "3" {
		t.Errorf("consumer acked %q, want 3", got)
	}
	if got := text(t, ctx, "#group-consumers tbody tr .delivered"); got != "5" {
		t.Errorf("consumer delivered %q, want 5", got)
	}
	wantContains(t, "parked events", text(t, ctx, "#parked-events"), "order-0", "order-1", "bad order", "OrderPlaced")
	wantContains(t, "settings", text(t, ctx, "#group-settings"), "category order", "30s", "max retries3")
	screenshot(t, ctx, dir, "group")

	run(t, ctx, "replay the parked events", chromedp.Click(chromedp.CSS(`#replay-parked`)))
	waitJS(t, ctx, "the replay's answer", `document.getElementById("replay-result").dataset.replayed === "2"`)
	wantContains(t, "replay result", text(t, ctx, "#replay-result"), "Gave back 2 parked events")
	// The consumer gets them again, marked as parked; once acked nothing waits.
	for range 2 {
		m, err := c.Receive(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		if !m.Parked {
			t.Errorf("event %s after the replay: not marked parked", m.Event.Stream)
		}
		if err := c.Ack(t.Context(), m.Event.ID); err != nil {
			t.Fatal(err)
		}
	}
	waitJS(t, ctx, "the parked count after the replay", `document.querySelector("#group-parked .card-value")?.textContent === "0"`)
	waitJS(t, ctx, "the consumer's acks after the replay", `document.querySelector("#group-consumers tbody tr .acked")?.textContent === "5"`)
	screenshot(t, ctx, dir, "replayed")
}
