package server

import (
	"encoding/json"
	"fmt"
	"maps"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"

	"github.com/annalsdb/annals"
	"github.com/annalsdb/annals/internal/rules"
)

// The plain JSON read routes, for curl and scripts: Connect's server-streaming reads need
// enveloped messages, which a plain HTTP client does not speak. Their write is the JSON
// append (rest_append.go); the other writes are Connect's unary methods, plain JSON POSTs.
const (
	restStreamRoute = "GET /v1/streams/{stream...}"
	restAllRoute    = "GET /v1/all"
)

// Page sizes of the JSON read routes.
const (
	defaultPageSize = 100
	maxPageSize     = 1000
)

// Page is the JSON answer of the read routes: up to limit events, and Next, the from of the
// next page, when the page is full (the next page may be empty).
type Page struct {
	Events []SSEEvent `json:"events"`
	Next   *uint64    `json:"next,omitempty"`
}

func (s *Server) serveRESTStream(w http.ResponseWriter, r *http.Request) {
	s.serveREST(w, r, target{stream: r.PathValue("stream")}, restStreamRoute)
}

func (s *Server) serveRESTAll(w http.ResponseWriter, r *http.Request) {
	s.serveREST(w, r, target{all: true}, restAllRoute)
}

// serveREST answers one page of a read. Query: from=N or from=end, backwards=true, limit=N
// (default 100, at most 1000), and for $all prefix=, category=, type= (repeatable).
func (s *Server) serveREST(w http.ResponseWriter, r *http.Request, t target, route string) {
	ctx := r.Context()
	opts, err := restReadOptions(r.URL.Query(), t)
	if err != nil {
		s.writeHTTPError(w, r, route, err)
		return
	}
	if err := s.authorize(ctx, Access{Op: OpRead, Procedure: route, Stream: t.stream, Filter: opts.Filter}); err != nil {
		s.writeHTTPError(w, r, route, err)
		return
	}
	seq := s.store.ReadAll(ctx, opts)
	if !t.all {
		seq = s.store.ReadStream(ctx, t.stream, opts)
	}
	page := Page{Events: []SSEEvent{}}
	var last uint64
	s.stats.add(cReads, 1)
	for e, err := range seq {
		if err != nil {
			s.writeHTTPError(w, r, route, err)
			return
		}
		page.Events = append(page.Events, newSSEEvent(&e))
		last = e.Position
		if !t.all {
			last = e.Revision
		}
	}
	s.stats.add(cEventsRead, len(page.Events))
	if len(page.Events) == opts.Limit {
		switch {
		case !opts.Backwards:
			next := last + 1
			page.Next = &next
		case last > 0:
			next := last - 1
			page.Next = &next
		}
	}
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(page)
}

// restReadOptions parses the query of a read of t and checks it with the store's rules; its
// errors match [annals.ErrInvalidArgument].
func restReadOptions(q url.Values, t target) (*annals.ReadOptions, error) {
	if err := checkQuery(q, "from", "backwards", "limit", "prefix", "category", "type"); err != nil {
		return nil, err
	}
	opts := &annals.ReadOptions{Limit: defaultPageSize}
	if f := (annals.Filter{StreamPrefixes: q["prefix"], Categories: q["category"], EventTypes: q["type"]}); len(f.StreamPrefixes)+len(f.Categories)+len(f.EventTypes) > 0 {
		opts.Filter = &f
	}
	bad := func(format string, args ...any) error {
		return fmt.Errorf("%w: "+format, append([]any{annals.ErrInvalidArgument}, args...)...)
	}
	switch v := q.Get("backwards"); v {
	case "", "false":
	case "true":
		opts.Backwards = true
	default:
		return nil, bad("backwards %q: want true or false", v)
	}
	switch v := q.Get("from"); {
	case v == "end":
		opts.From = annals.End
	case v == "" && opts.Backwards:
		opts.From = annals.End
	case v != "":
		n, err := strconv.ParseUint(v, 10, 64)
		if err != nil {
			return nil, bad("from %q: want a number or end", v)
		}
		opts.From = n
	}
	if v := q.Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > maxPageSize {
			return nil, bad("limit %q: want 1 to %d", v, maxPageSize)
		}
		opts.Limit = n
	}
	var err error
	if t.all {
		_, err = rules.ReadOptions(opts)
	} else {
		_, err = rules.StreamReadOptions(t.stream, opts)
	}
	return opts, err
}

// checkQuery returns an error matching [annals.ErrInvalidArgument] that names the first
// parameter of q not in known: a misspelt parameter ("limt") is refused, not ignored.
func checkQuery(q url.Values, known ...string) error {
	for _, k := range slices.Sorted(maps.Keys(q)) {
		if !slices.Contains(known, k) {
			return fmt.Errorf("%w: unknown query parameter %q (want %s)", annals.ErrInvalidArgument, k, strings.Join(known, ", "))
		}
	}
	return nil
}
