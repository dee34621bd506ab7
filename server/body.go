package server

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"sync/atomic"
	"time"

	"connectrpc.com/connect"
	annalsv1 "github.com/annalsdb/annals/internal/gen/annals/v1"
	"golang.org/x/sync/semaphore"
	"google.golang.org/protobuf/reflect/protoreflect"
)

// DefaultMaxRequestBytesInFlight is the default of [Options.MaxRequestBytesInFlight]: eight
// requests of [DefaultMaxRequestBytes].
const DefaultMaxRequestBytesInFlight = 8 * DefaultMaxRequestBytes

// DefaultRequestBudgetWait is the default of [Options.RequestBudgetWait].
const DefaultRequestBudgetWait = 10 * time.Second

// requestSlack is what a request body may carry beyond [Options.MaxRequestBytes]: the
// envelope of a streaming protocol's message. No request holds more of the budget than
// MaxRequestBytes plus this.
const requestSlack = 1 << 10

// budget bounds the bytes of request bodies that the server holds at once, across every
// request. A request takes its share before its body is read:
//   - a compressed body (Content-Encoding, Connect-Content-Encoding or grpc-encoding other
//     than identity) takes the largest share, [Options.MaxRequestBytes] plus an envelope's
//     slack, since its compressed size says nothing of what it decompresses to;
//   - a body with a Content-Length takes that size;
//   - an enveloped body without one (gRPC, Connect's streaming protocol) takes the size its
//     message's envelope declares, once the envelope's five bytes are read;
//   - any other body without a Content-Length (chunked) takes the largest share, and gives
//     back what it did not use once it has been read to its end.
//
// A request of a server-streaming procedure (ReadStream, ReadAll, Subscribe, ListStreams)
// gives its share back once its body has been read to its end, since it may run for hours;
// any other request keeps it until its handler returns, since its decoded message lives that
// long. A request that waits for room holds nothing, or at most the envelope's five bytes, so
// requests waiting for one another cannot hold the budget between them. A request over HTTP/1
// that finds no room waits up to the budget's wait, then fails with ResourceExhausted; one
// over HTTP/2 fails at once: while it waited, the body its client had already sent would sit
// unread in its connection's flow-control window, which every request of the connection
// shares (Go's HTTP/2 server returns window only as handlers read), and stall the requests
// that the budget let in. Its methods are safe for concurrent use.
type budget struct {
	sem  *semaphore.Weighted
	size int64
	wait time.Duration
	// perRequest bounds what one request takes: the largest body the server accepts.
	perRequest int64
	// inFlight is the budget's own accounting of the bytes taken now, peak the most ever.
	inFlight atomic.Int64
	peak     atomic.Int64
}

func newBudget(size int64, wait time.Duration, maxRequest int) *budget {
	per := int64(maxRequest) + requestSlack
	size = max(size, per) // a request of the largest size must fit
	return &budget{sem: semaphore.NewWeighted(size), size: size, wait: wait, perRequest: per}
}

// errBusy is the error of a request that found no room in the budget within its wait.
func (b *budget) errBusy(n int64, wait time.Duration) error {
	return connect.NewError(connect.CodeResourceExhausted, fmt.Errorf(
		"server busy: no room for %d more bytes of request body within %v (max-request-bytes-in-flight is %d bytes across all requests); retry later",
		n, wait, b.size))
}

// acquire takes n bytes of the budget, waiting up to the budget's wait when wait is true. It
// returns ctx's error when ctx ends first, or a ResourceExhausted *connect.Error when there is
// no room in time.
func (b *budget) acquire(ctx context.Context, n int64, wait bool) error {
	if n <= 0 {
		return nil
	}
	if !b.sem.TryAcquire(n) {
		if !wait {
			return b.errBusy(n, 0)
		}
		wctx, cancel := context.WithTimeout(ctx, b.wait)
		err := b.sem.Acquire(wctx, n)
		cancel()
		switch {
		case err == nil:
		case ctx.Err() != nil:
			return ctx.Err()
		default:
			return b.errBusy(n, b.wait)
		}
	}
	now := b.inFlight.Add(n)
	for p := b.peak.Load(); now > p && !b.peak.CompareAndSwap(p, now); p = b.peak.Load() {
	}
	return nil
}

// release gives back n bytes.
func (b *budget) release(n int64) {
	if n > 0 {
		b.inFlight.Add(-n)
		b.sem.Release(n)
	}
}

// guard wraps the Connect handler: it holds each request's body within the server's
// [budget], and gives two failures the HTTP status that fits them where Connect's protocol has
// none: a body that stalls past the http.Server's read timeout is 408 Request Timeout (Connect
// says DeadlineExceeded, 504), and a Content-Encoding the server cannot decode is 415
// Unsupported Media Type (Connect says Unimplemented, 501). The Connect code in the body is
// unchanged; gRPC answers, whose HTTP status is always 200, are unchanged.
func (s *Server) guard(next http.Handler) http.Handler {
	errw := connect.NewErrorWriter()
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ctx := r.Context()
		b := &body{
			ReadCloser: r.Body, budget: s.budget, ctx: ctx,
			enveloped: enveloped(r.Header.Get("Content-Type")), wait: r.ProtoMajor < 2,
			streaming: serverStreaming[r.URL.Path],
		}
		var n int64
		switch {
		case bidiStreaming[r.URL.Path]:
			// A bidirectional stream lives for hours: its handler holds the budget for each
			// message it keeps (see [Server.serveBatch]), interrupts its reads and bounds its
			// writes.
			r = r.WithContext(withStreamControl(ctx, w, r))
		case compressed(r.Header):
			n = s.budget.perRequest
		case r.ContentLength >= 0:
			n = min(r.ContentLength, s.budget.perRequest)
		case b.enveloped:
			b.metered = true
		default:
			n, b.trim = s.budget.perRequest, true
		}
		if err := s.budget.acquire(ctx, n, b.wait); err != nil {
			if ce, ok := errors.AsType[*connect.Error](err); ok {
				_ = errw.Write(w, r, ce)
			}
			return
		}
		b.held = n
		defer func() { s.budget.release(b.held) }()
		r.Body = b
		next.ServeHTTP(&answerWriter{ResponseWriter: w, body: b, encoded: r.Header.Get("Content-Encoding") != ""}, r)
	})
}

// serverStreaming holds the paths of the service's server-streaming procedures, whose
// requests give their budget back once their body is read (see [budget]).
var serverStreaming = func() map[string]bool {
	m := make(map[string]bool)
	sd := annalsv1.File_annals_v1_annals_proto.Services().ByName("EventStoreService")
	for i := range sd.Methods().Len() {
		md := sd.Methods().Get(i)
		if md.IsStreamingServer() {
			m["/"+string(sd.FullName())+"/"+string(md.Name())] = true
		}
	}
	return m
}()

// bidiStreaming holds the paths of the services' bidirectional procedures (BatchAppend, and
// the GroupService's Consume), whose handlers hold the budget themselves, message by message
// (a Consume stream holds one small message at a time, under the GroupService's read limit).
var bidiStreaming = func() map[string]bool {
	m := make(map[string]bool)
	for _, name := range []string{"EventStoreService", "GroupService"} {
		sd := annalsv1.File_annals_v1_annals_proto.Services().ByName(protoreflect.Name(name))
		for i := range sd.Methods().Len() {
			md := sd.Methods().Get(i)
			if md.IsStreamingServer() && md.IsStreamingClient() {
				m["/"+string(sd.FullName())+"/"+string(md.Name())] = true
			}
		}
	}
	return m
}()

// streamControl is how a bidirectional stream's handler reaches its HTTP request beyond
// its messages (see [withStreamControl]).
type streamControl struct {
	// interrupt ends, at once, every read of the request's body that is blocked or to come
	// (they fail with os.ErrDeadlineExceeded): a handler that reads its body in a goroutine
	// of its own stops it with that before it returns.
	interrupt func()
	// abortWrites makes every write of the response, blocked or to come, fail at once (over
	// HTTP/2 it resets the stream).
	abortWrites func()
	// wait: the request may wait for room in the budget (HTTP/1; see [budget]).
	wait bool
}

// streamControlKey is the context key of a request's streamControl.
type streamControlKey struct{}

// withStreamControl returns ctx with the streamControl of the request r answered through w.
func withStreamControl(ctx context.Context, w http.ResponseWriter, r *http.Request) context.Context {
	rc := http.NewResponseController(w)
	return context.WithValue(ctx, streamControlKey{}, streamControl{
		interrupt:   func() { _ = rc.SetReadDeadline(time.Now()) },
		abortWrites: func() { _ = rc.SetWriteDeadline(time.Now()) },
		wait:        r.ProtoMajor < 2,
	})
}

// streamControlOf returns the streamControl [withStreamControl] put in ctx, or one that does
// nothing and may wait.
func streamControlOf(ctx context.Context) streamControl {
	if c, ok := ctx.Value(streamControlKey{}).(streamControl); ok {
		return c
	}
	return streamControl{interrupt: func() {}, abortWrites: func() {}, wait: true}
}

// compressed reports whether a request declares a compressed body in any of the headers of
// the protocols Connect serves.
func compressed(h http.Header) bool {
	for _, k := range []string{"Content-Encoding", "Connect-Content-Encoding", "Grpc-Encoding"} {
		if v := h.Get(k); v != "" && !strings.EqualFold(v, "identity") {
			return true
		}
	}
	return false
}

// enveloped reports whether a request of this content type frames its messages in envelopes
// (a flags byte and a 4-byte big-endian length): gRPC, gRPC-Web and Connect's streaming
// protocol.
func enveloped(contentType string) bool {
	if strings.HasPrefix(contentType, "application/grpc-web-text") {
		return false // base64: the envelope's bytes are not readable as they come
	}
	return strings.HasPrefix(contentType, "application/grpc") || strings.HasPrefix(contentType, "application/connect+")
}

// body is a request body under the server's budget. Only the handler's goroutine reads it.
type body struct {
	io.ReadCloser
	budget *budget
	ctx    context.Context
	// metered: the request is enveloped and declared no Content-Length, so the budget is
	// taken as the body is read: up to the bytes read, or the size the envelope declares when
	// it is larger.
	metered   bool
	enveloped bool
	// trim: the request took the largest share for a body of unknown size, and gives back
	// what it did not read at its end.
	trim bool
	// streaming: the request is of a server-streaming procedure, and gives everything back
	// at the end of its body.
	streaming bool
	// ended: the body was read to its end.
	ended bool
	// wait: the request may wait for room (HTTP/1; see [budget]).
	wait     bool
	read     int64
	declared int64
	prefix   [5]byte // the first envelope's, while fewer than five bytes were read
	held     int64
	// stalled: a read failed at the connection's read deadline.
	stalled bool
}

func (b *body) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	if err != nil && isTimeout(err) {
		b.stalled = true
		err = connect.NewError(connect.CodeDeadlineExceeded, fmt.Errorf("request body not received in time (the server's read timeout): %w", err))
	}
	if b.trim {
		b.read += int64(n)
	}
	if b.metered && n > 0 {
		if b.enveloped && b.read < 5 {
			k := copy(b.prefix[b.read:], p[:n])
			if b.read+int64(k) == 5 {
				b.declared = 5 + int64(binary.BigEndian.Uint32(b.prefix[1:]))
			}
		}
		b.read += int64(n)
		need := b.read
		if b.enveloped && b.read < 5 {
			need = 0 // the envelope's size comes with its fifth byte
		}
		need = min(max(need, b.declared), b.budget.perRequest)
		if need > b.held {
			if aerr := b.budget.acquire(b.ctx, need-b.held, b.wait); aerr != nil {
				return 0, aerr
			}
			b.held = need
		}
	}
	if err == io.EOF && !b.ended {
		b.ended = true
		b.end()
	}
	return n, err
}

// end gives back, at the end of the body, what the request no longer needs: everything for
// a server-streaming procedure, what was not read for a body of unknown size.
func (b *body) end() {
	keep := b.held
	switch {
	case b.streaming:
		keep = 0
	case b.trim:
		keep = min(b.held, b.read)
	}
	b.budget.release(b.held - keep)
	b.held = keep
}

// isTimeout reports whether err is a read that reached its deadline.
func isTimeout(err error) bool {
	if errors.Is(err, os.ErrDeadlineExceeded) {
		return true
	}
	ne, ok := errors.AsType[net.Error](err)
	return ok && ne.Timeout()
}

// answerWriter rewrites the HTTP status of the answers that [Server.guard] describes.
type answerWriter struct {
	http.ResponseWriter
	body    *body
	encoded bool // the request has a Content-Encoding
}

func (w *answerWriter) WriteHeader(code int) {
	switch {
	case code == http.StatusGatewayTimeout && w.body.stalled:
		code = http.StatusRequestTimeout
	case code == http.StatusNotImplemented && w.encoded:
		// Connect answers Unimplemented before the handler runs only for a compression it
		// does not support; every method of the service is implemented.
		code = http.StatusUnsupportedMediaType
	}
	w.ResponseWriter.WriteHeader(code)
}

// Flush lets Connect stream its answers through the writer.
func (w *answerWriter) Flush() {
	if f, ok := w.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

// Unwrap lets http.ResponseController reach the connection's deadlines.
func (w *answerWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }
