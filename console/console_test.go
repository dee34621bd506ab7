package console_test

import (
	"html"
	"io"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/annalsdb/annals/console"
)

func get(t *testing.T, h http.Handler, method, path string, header http.Header) (*http.Response, string) {
	t.Helper()
	req := httptest.NewRequest(method, path, nil)
	for k, v := range header {
		req.Header[k] = v
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	res := rec.Result()
	b, _ := io.ReadAll(res.Body)
	return res, string(b)
}

// TestHandler checks the page, its files, caching, the security headers and what is not
// served.
func TestHandler(t *testing.T) {
	h := console.Handler(&console.Options{Title: `Shop <prod> & "co"`, PollInterval: 1500 * time.Millisecond})
	res, page := get(t, h, "GET", "/", nil)
	if res.StatusCode != 200 || res.Header.Get("Content-Type") != "text/html; charset=utf-8" {
		t.Fatalf("GET /: got %d %q", res.StatusCode, res.Header.Get("Content-Type"))
	}
	if !strings.Contains(page, "<title>Shop &lt;prod&gt; &amp; &#34;co&#34;</title>") {
		t.Errorf("the title is not in the page, escaped:\n%s", page)
	}
	m := regexp.MustCompile(`<meta name="annals-config" content="([^"]*)">`).FindStringSubmatch(page)
	if m == nil {
		t.Fatalf("no config in the page:\n%s", page)
	}
	if got, want := html.UnescapeString(m[1]), `{"title":"Shop \u003cprod\u003e \u0026 \"co\"","pollMillis":1500}`; got != want {
		t.Errorf("config: got %s, want %s", got, want)
	}
	for _, hd := range []string{"Content-Security-Policy", "X-Content-Type-Options", "Referrer-Policy", "ETag"} {
		if res.Header.Get(hd) == "" {
			t.Errorf("GET /: no %s header", hd)
		}
	}
	if csp := res.Header.Get("Content-Security-Policy"); !strings.Contains(csp, "script-src 'self'") || strings.Contains(csp, "unsafe") {
		t.Errorf("Content-Security-Policy %q", csp)
	}

	// Every file the page and the modules refer to is served, with its type.
	refs := regexp.MustCompile(`(?:href|src)="(/console/[^"]+)"`).FindAllStringSubmatch(page, -1)
	if len(refs) < 3 {
		t.Fatalf("the page refers to %d files", len(refs))
	}
	seen := map[string]bool{}
	queue := []string{}
	for _, r := range refs {
		queue = append(queue, r[1])
	}
	imports := regexp.MustCompile(`(?m)^import .* from "\./([a-z]+\.js)";$`)
	for len(queue) > 0 {
		p := queue[0]
		queue = queue[1:]
		if seen[p] {
			continue
		}
		seen[p] = true
		res, body := get(t, h, "GET", p, nil)
		if res.StatusCode != 200 {
			t.Errorf("GET %s: status %d", p, res.StatusCode)
			continue
		}
		want := map[string]string{".js": "text/javascript; charset=utf-8", ".css": "text/css; charset=utf-8", ".svg": "image/svg+xml"}[p[strings.LastIndex(p, "."):]]
		if ct := res.Header.Get("Content-Type"); ct != want {
			t.Errorf("GET %s: Content-Type %q, want %q", p, ct, want)
		}
		if strings.HasSuffix(p, ".js") {
			for _, m := range imports.FindAllStringSubmatch(body, -1) {
				queue = append(queue, p[:strings.LastIndex(p, "/")+1]+m[1])
			}
		}
	}
	for _, p := range []string{"/console/js/app.js", "/console/js/api.js", "/console/js/streams.js", "/console/js/tail.js", "/console/js/overview.js", "/console/js/chart.js", "/console/js/login.js"} {
		if !seen[p] {
			t.Errorf("%s is not reached from the page's imports", p)
		}
	}

	// Revalidation answers 304 while the file is the same.
	res, _ = get(t, h, "GET", "/console/app.css", nil)
	etag := res.Header.Get("ETag")
	if res, _ := get(t, h, "GET", "/console/app.css", http.Header{"If-None-Match": {etag}}); res.StatusCode != http.StatusNotModified {
		t.Errorf("GET with If-None-Match %s: got %d, want 304", etag, res.StatusCode)
	}
	if res, body := get(t, h, "HEAD", "/", nil); res.StatusCode != 200 || body != "" {
		t.Errorf("HEAD /: got %d with %d bytes", res.StatusCode, len(body))
	}

	for _, c := range []struct {
		method, path string
		status       int
	}{
		{"GET", "/index.html", 404},
		{"GET", "/console/index.html", 404},
		{"GET", "/console/", 404},
		{"GET", "/console/js/nope.js", 404},
		{"GET", "/console/../console.go", 404},
		{"GET", "/v1/other", 404},
		{"POST", "/", 405},
		{"DELETE", "/console/app.css", 405},
	} {
		if res, _ := get(t, h, c.method, c.path, nil); res.StatusCode != c.status {
			t.Errorf("%s %s: got %d, want %d", c.method, c.path, res.StatusCode, c.status)
		}
	}
}

// TestHandlerDefaults checks the defaults of a nil *Options.
func TestHandlerDefaults(t *testing.T) {
	_, page := get(t, console.Handler(nil), "GET", "/", nil)
	if !strings.Contains(page, "<title>Annals</title>") || !strings.Contains(page, "&#34;pollMillis&#34;:2000") {
		t.Errorf("defaults not in the page:\n%s", page)
	}
}
