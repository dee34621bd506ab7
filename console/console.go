// Package console is the web console of an Annals server: a single-page application, embedded
// in the binary, that shows the streams and their events, a live tail of the log, stream
// metadata, the running subscriptions, the application's projections with their lag and the
// replica that holds each (the runners' leases), the consumer groups with their consumers, lag
// and parked events, and charts of the append and read rates.
//
// The console is plain HTML, CSS and JavaScript modules (no build step) that talk to the
// server's API from the browser: the JSON read routes (GET /v1/streams, /v1/streams/{stream},
// /v1/stats, /v1/projections, /v1/groups), Server-Sent Events (/v1/sse/...) and Connect's
// JSON unary methods (GetMetadata, the GroupService's ReplayParked). Mount [Handler] at "/" on the mux that has the server's routes:
//
//	mux := http.NewServeMux()
//	srv.Register(mux)
//	mux.Handle("/", console.Handler(nil))
//
// With authentication on, the console shows a login form when the API answers 401: it posts
// {"username","password"} to POST /v1/login, keeps the token of the answer in the browser's
// sessionStorage (one tab, until it closes), sends it as "Authorization: Bearer <token>" on
// every request, and as ?access_token=<token> on the SSE routes, since a browser's
// EventSource cannot set headers. The console's own files hold no data and are served to
// anyone, like any login page.
package console

import (
	"bytes"
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"html/template"
	"io/fs"
	"mime"
	"net/http"
	"path"
	"strings"
	"time"
)

//go:embed static
var static embed.FS

// DefaultPollInterval is the default of [Options.PollInterval].
const DefaultPollInterval = 2 * time.Second

// Options configure the console. A nil *Options means all defaults.
type Options struct {
	// Title is shown in the page's header and in the browser's tab; "" means "Annals".
	Title string
	// PollInterval is how often the overview asks the server for its stats and projections;
	// 0 means [DefaultPollInterval].
	PollInterval time.Duration
}

// AssetPrefix is the path under which the console's files are served; the page itself is
// served at "/".
const AssetPrefix = "/console/"

// contentSecurityPolicy lets the page load only its own files and talk only to its origin.
const contentSecurityPolicy = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; " +
	"connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'"

// asset is one file of the console, ready to serve.
type asset struct {
	body        []byte
	contentType string
	etag        string
}

// handler serves the console.
type handler struct {
	index  asset
	assets map[string]asset // by path below AssetPrefix
}

// Handler returns the console's http.Handler: the page at "/" (GET or HEAD), its files under
// [AssetPrefix], 404 for every other path. It is safe for concurrent use.
func Handler(opts *Options) http.Handler {
	var o Options
	if opts != nil {
		o = *opts
	}
	if o.Title == "" {
		o.Title = "Annals"
	}
	if o.PollInterval <= 0 {
		o.PollInterval = DefaultPollInterval
	}
	h := &handler{assets: map[string]asset{}}
	err := fs.WalkDir(static, "static", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || p == "static/index.html" {
			return err
		}
		b, err := static.ReadFile(p)
		if err != nil {
			return err
		}
		h.assets[strings.TrimPrefix(p, "static/")] = newAsset(b, mime.TypeByExtension(path.Ext(p)))
		return nil
	})
	if err != nil {
		panic(fmt.Sprintf("console: the embedded files: %v", err)) // they are compiled in
	}
	page, err := renderIndex(o)
	if err != nil {
		panic(fmt.Sprintf("console: index.html: %v", err)) // a broken template is a build error
	}
	h.index = newAsset(page, "text/html; charset=utf-8")
	return h
}

func newAsset(b []byte, contentType string) asset {
	sum := sha256.Sum256(b)
	if contentType == "" {
		contentType = "application/octet-stream"
	}
	return asset{body: b, contentType: contentType, etag: `"` + hex.EncodeToString(sum[:12]) + `"`}
}

// config is what the page learns from the server, in a <meta> tag (the policy allows no
// inline script).
type config struct {
	Title      string `json:"title"`
	PollMillis int64  `json:"pollMillis"`
}

func renderIndex(o Options) ([]byte, error) {
	tmpl, err := template.ParseFS(static, "static/index.html")
	if err != nil {
		return nil, err
	}
	cfg, err := json.Marshal(config{Title: o.Title, PollMillis: o.PollInterval.Milliseconds()})
	if err != nil {
		return nil, err
	}
	var buf bytes.Buffer
	err = tmpl.Execute(&buf, struct {
		Title, Config, Assets string
	}{o.Title, string(cfg), AssetPrefix})
	return buf.Bytes(), err
}

func (h *handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
		return
	}
	var a asset
	switch p, isAsset := strings.CutPrefix(r.URL.Path, AssetPrefix); {
	case r.URL.Path == "/":
		a = h.index
	case isAsset:
		var ok bool
		if a, ok = h.assets[p]; !ok {
			http.NotFound(w, r)
			return
		}
	default:
		http.NotFound(w, r)
		return
	}
	hd := w.Header()
	hd.Set("Content-Type", a.contentType)
	hd.Set("ETag", a.etag)
	hd.Set("Cache-Control", "no-cache") // revalidate: the ETag changes with each build
	hd.Set("Content-Security-Policy", contentSecurityPolicy)
	hd.Set("X-Content-Type-Options", "nosniff")
	hd.Set("Referrer-Policy", "no-referrer")
	http.ServeContent(w, r, "", time.Time{}, bytes.NewReader(a.body))
}
