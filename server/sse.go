package server

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/annalsdb/annals"
)

// The SSE routes (Server-Sent Events, for browsers' EventSource).
const (
	sseStreamRoute = "GET /v1/sse/streams/{stream...}"
	sseAllRoute    = "GET /v1/sse/all"
)

// SSEEvent is the JSON of the data of each SSE message: a recorded event. Data and Metadata
// are inlined as JSON when the content type is JSON and the bytes are valid JSON, and given in
// base64 otherwise.
type SSEEvent struct {
	ID             string          `json:"id"`
	Stream         string          `json:"stream"`
	Type           string          `json:"type"`
	Revision       uint64          `json:"revision"`
	Position       uint64          `json:"position"`
	Time           time.Time       `json:"time"`
	ContentType    string          `json:"contentType"`
	Data           json.RawMessage `json:"data,omitempty"`
	DataBase64     []byte          `json:"dataBase64,omitempty"`
	Metadata       json.RawMessage `json:"metadata,omitempty"`
	MetadataBase64 []byte          `json:"metadataBase64,omitempty"`
}

func newSSEEvent(e *annals.RecordedEvent) SSEEvent {
	v := SSEEvent{
		ID: e.ID.String(), Stream: e.Stream, Type: e.Type, Revision: e.Revision, Position: e.Position,
		Time: e.Time, ContentType: e.ContentType,
	}
	isJSON := e.ContentType == annals.ContentTypeJSON || strings.HasSuffix(e.ContentType, "+json")
	inline := func(b []byte) (json.RawMessage, []byte) {
		switch {
		case len(b) == 0:
			return nil, nil
		case isJSON && json.Valid(b):
			var c bytes.Buffer
			if json.Compact(&c, b) == nil {
				return c.Bytes(), nil
			}
		}
		return nil, b
	}
	v.Data, v.DataBase64 = inline(e.Data)
	v.Metadata, v.MetadataBase64 = inline(e.Metadata)
	return v
}

// ErrorBody is the JSON body of an error of the server's own HTTP routes (SSE, JSON reads and
// appends), sent with the table's HTTP status; an SSE stream that fails after it started
// sends it as the data of its last message, "event: annals.error". Code is the Connect code
// ("not_found"), Reason the ErrorDetail reason ("STREAM_NOT_FOUND").
type ErrorBody struct {
	Code    string `json:"code"`
	Reason  string `json:"reason,omitempty"`
	Message string `json:"message"`
	// Stream, Expected and Actual are set for a conflict (WRONG_EXPECTED_VERSION): the
	// expectation the append gave and the stream's state, "no-stream" or its last revision,
	// in the forms of the Annals-Expected-Revision header ([annals.ExpectedRevision.String]).
	Stream   string `json:"stream,omitempty"`
	Expected string `json:"expected,omitempty"`
	Actual   string `json:"actual,omitempty"`
}

func (s *Server) serveSSEStream(w http.ResponseWriter, r *http.Request) {
	s.serveSSE(w, r, target{stream: r.PathValue("stream")}, sseStreamRoute)
}

func (s *Server) serveSSEAll(w http.ResponseWriter, r *http.Request) {
	s.serveSSE(w, r, target{all: true}, sseAllRoute)
}

// serveSSE follows t as Server-Sent Events. Query: from=N (revision or position, inclusive)
// or from=end; prefix=, category= and type= (each repeatable) filter. A Last-Event-ID header
// overrides from: "N" resumes after event N, "from:N" at N. Each event's SSE id is its
// position ($all) or revision (stream); a first message with only an id ("from:N") tells the
// browser where the subscription starts, so that its reconnection loses nothing.
func (s *Server) serveSSE(w http.ResponseWriter, r *http.Request, t target, route string) {
	ctx := r.Context()
	t.protocol, t.peer = "sse", r.RemoteAddr
	q := r.URL.Query()
	// access_token is the SSE routes' credential; Auth.Middleware removes it when auth is on.
	if err := checkQuery(q, "from", "prefix", "category", "type", "access_token"); err != nil {
		s.writeHTTPError(w, r, route, err)
		return
	}
	if f := (annals.Filter{StreamPrefixes: q["prefix"], Categories: q["category"], EventTypes: q["type"]}); len(f.StreamPrefixes)+len(f.Categories)+len(f.EventTypes) > 0 {
		t.filter = &f
	}
	if err := sseFrom(&t, q.Get("from"), r.Header.Get("Last-Event-ID")); err != nil {
		s.writeHTTPError(w, r, route, err)
		return
	}
	if err := t.validate(); err != nil {
		s.writeHTTPError(w, r, route, err)
		return
	}
	if err := s.authorize(ctx, Access{Op: OpRead, Procedure: route, Stream: t.stream, Filter: t.filter}); err != nil {
		s.writeHTTPError(w, r, route, err)
		return
	}
	sctx, done, err := s.beginSubscription(ctx)
	if err != nil {
		s.writeHTTPError(w, r, route, err)
		return
	}
	defer done()
	from, err := s.prepare(sctx, t)
	if err != nil {
		s.writeHTTPError(w, r, route, err)
		return
	}

	rc := http.NewResponseController(w)
	h := w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-cache")
	h.Set("X-Accel-Buffering", "no")
	w.WriteHeader(http.StatusOK)
	var buf bytes.Buffer
	fmt.Fprintf(&buf, "retry: 1000\nid: from:%d\n\n", from)
	flush := func() error {
		_, err := w.Write(buf.Bytes())
		buf.Reset()
		if err == nil {
			err = rc.Flush()
		}
		return err
	}
	if flush() != nil {
		return
	}
	err = s.follow(sctx, t, from, func(batch []annals.RecordedEvent) error {
		for i := range batch {
			e := &batch[i]
			id := e.Revision
			if t.all {
				id = e.Position
			}
			b, err := json.Marshal(newSSEEvent(e))
			if err != nil {
				return err
			}
			fmt.Fprintf(&buf, "id: %d\ndata: %s\n\n", id, b)
		}
		return flush()
	}, func() error {
		buf.WriteString(": keepalive\n\n")
		return flush()
	})
	if err == nil || ctx.Err() != nil || errors.Is(err, ErrShuttingDown) {
		return // the client left, or the server is closing: the browser reconnects
	}
	body := s.errorBodyOf(r, route, err)
	b, _ := json.Marshal(body)
	fmt.Fprintf(&buf, "event: annals.error\ndata: %s\n\n", b)
	_ = flush()
}

// sseFrom sets t's starting point from the from parameter and the Last-Event-ID header.
func sseFrom(t *target, from, lastID string) error {
	switch {
	case lastID != "":
		if n, ok := strings.CutPrefix(lastID, "from:"); ok {
			v, err := strconv.ParseUint(n, 10, 64)
			if err != nil {
				return fmt.Errorf("%w: Last-Event-ID %q: want N or from:N", annals.ErrInvalidArgument, lastID)
			}
			t.from = v
			return nil
		}
		v, err := strconv.ParseUint(lastID, 10, 64)
		if err != nil || v == annals.End {
			return fmt.Errorf("%w: Last-Event-ID %q: want N or from:N", annals.ErrInvalidArgument, lastID)
		}
		t.from = v + 1
	case from == "" || from == "start":
		t.from = 0
	case from == "end":
		t.end = true
	default:
		v, err := strconv.ParseUint(from, 10, 64)
		if err != nil {
			return fmt.Errorf("%w: from %q: want a number, start or end", annals.ErrInvalidArgument, from)
		}
		t.from = v
	}
	return nil
}

func (s *Server) errorBodyOf(r *http.Request, route string, err error) ErrorBody {
	row := lookup(err)
	msg := err.Error()
	if row.internal {
		msg = s.logInternal(r.Context(), route, err)
	}
	body := ErrorBody{Code: row.code.String(), Reason: row.reason, Message: msg}
	if wev, ok := errors.AsType[*annals.WrongExpectedVersionError](err); ok {
		body.Stream, body.Expected, body.Actual = wev.Stream, wev.Expected.String(), wev.Actual.String()
	}
	return body
}

// writeHTTPError answers a request of the server's own HTTP routes (SSE, JSON reads and
// appends) that failed before anything was sent: the table's HTTP status and a JSON body.
func (s *Server) writeHTTPError(w http.ResponseWriter, r *http.Request, route string, err error) {
	row := lookup(err)
	body := s.errorBodyOf(r, route, err)
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(row.status)
	_ = json.NewEncoder(w).Encode(body)
}
