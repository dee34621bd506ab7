package server

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"

	"github.com/annalsdb/annals"
	"github.com/annalsdb/annals/internal/rules"
)

// listRoute lists streams as plain JSON: ListStreams is a server stream, which a browser's
// fetch or curl does not speak without Connect's envelopes.
const listRoute = "GET /v1/streams"

// StreamList is the JSON answer of GET /v1/streams: up to limit streams in byte-wise order,
// and Next, the after of the next page, when the page is full (the next page may be empty).
type StreamList struct {
	Streams []StreamEntry `json:"streams"`
	Next    string        `json:"next,omitempty"`
}

// StreamEntry is one stream of a [StreamList]: its id, the revision of its last event, and
// the number of its events since it was last created.
type StreamEntry struct {
	Stream   string `json:"stream"`
	Revision uint64 `json:"revision"`
	Count    uint64 `json:"count"`
}

// serveList answers one page of the listing of streams. Query: prefix=, after= (a stream id),
// limit=N (default 100, at most 1000).
func (s *Server) serveList(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	q := r.URL.Query()
	if err := checkQuery(q, "prefix", "after", "limit"); err != nil {
		s.writeHTTPError(w, r, listRoute, err)
		return
	}
	opts := &annals.ListOptions{Prefix: q.Get("prefix"), After: q.Get("after"), Limit: defaultPageSize}
	if v := q.Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > maxPageSize {
			s.writeHTTPError(w, r, listRoute, fmt.Errorf("%w: limit %q: want 1 to %d", annals.ErrInvalidArgument, v, maxPageSize))
			return
		}
		opts.Limit = n
	}
	if _, err := rules.ListOptions(opts); err != nil {
		s.writeHTTPError(w, r, listRoute, err)
		return
	}
	if err := s.authorize(ctx, Access{Op: OpRead, Procedure: listRoute, Prefix: opts.Prefix}); err != nil {
		s.writeHTTPError(w, r, listRoute, err)
		return
	}
	out := StreamList{Streams: []StreamEntry{}}
	for info, err := range s.store.ListStreams(ctx, opts) {
		if err != nil {
			s.writeHTTPError(w, r, listRoute, err)
			return
		}
		out.Streams = append(out.Streams, StreamEntry{Stream: info.Stream, Revision: info.Revision, Count: info.Count})
	}
	if len(out.Streams) == opts.Limit {
		out.Next = out.Streams[len(out.Streams)-1].Stream
	}
	writeJSON(w, out)
}

// writeJSON answers v as JSON, not to be cached (it describes the store now).
func writeJSON(w http.ResponseWriter, v any) {
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("Cache-Control", "no-store")
	_ = json.NewEncoder(w).Encode(v)
}
