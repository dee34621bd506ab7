package server_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"connectrpc.com/connect"
	"github.com/annalsdb/annals"
	annalsv1 "github.com/annalsdb/annals/internal/gen/annals/v1"
	"github.com/annalsdb/annals/internal/gen/annals/v1/annalsv1connect"
	"github.com/annalsdb/annals/internal/testwait"
	"github.com/annalsdb/annals/memstore"
	"github.com/annalsdb/annals/server"
)

const waitTimeout = 15 * time.Second

func h2c() *http.Protocols {
	var p http.Protocols
	p.SetHTTP1(true)
	p.SetUnencryptedHTTP2(true)
	return &p
}

// fixture is a server over a memstore on a loopback port, with its log captured.
type fixture struct {
	store annals.Store
	srv   *server.Server
	url   string
	logMu sync.Mutex
	log   bytes.Buffer
}

func (f *fixture) Write(b []byte) (int, error) {
	f.logMu.Lock()
	defer f.logMu.Unlock()
	return f.log.Write(b)
}

func (f *fixture) logged() string {
	f.logMu.Lock()
	defer f.logMu.Unlock()
	return f.log.String()
}

func newFixture(t *testing.T, store annals.Store, opts *server.Options) *fixture {
	t.Helper()
	if store == nil {
		store = memstore.New(nil)
	}
	t.Cleanup(func() { store.Close() })
	f := &fixture{store: store}
	if opts == nil {
		opts = &server.Options{}
	}
	opts.Logger = slog.New(slog.NewTextHandler(f, nil))
	f.srv = server.New(store, opts)
	hs := httptest.NewUnstartedServer(f.srv.Handler())
	hs.Config.Protocols = h2c()
	hs.Start()
	t.Cleanup(func() {
		f.srv.Close()
		hs.Close()
	})
	f.url = hs.URL
	return f
}

// rpc returns a Connect client of the fixture speaking gRPC over h2c.
func (f *fixture) rpc(opts ...connect.ClientOption) annalsv1connect.EventStoreServiceClient {
	var p http.Protocols
	p.SetUnencryptedHTTP2(true)
	hc := &http.Client{Transport: &http.Transport{Protocols: &p}}
	return annalsv1connect.NewEventStoreServiceClient(hc, f.url, append([]connect.ClientOption{connect.WithGRPC()}, opts...)...)
}

// post sends body to a method with the Connect protocol's plain JSON (or another content type)
// and returns the status and the decoded JSON answer.
func (f *fixture) post(t *testing.T, method, contentType, body string) (int, map[string]any) {
	t.Helper()
	res, err := http.Post(f.url+"/annals.v1.EventStoreService/"+method, contentType, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	var v map[string]any
	if len(b) > 0 && json.Unmarshal(b, &v) != nil {
		v = map[string]any{"raw": string(b)}
	}
	return res.StatusCode, v
}

func mustAppend(t *testing.T, s annals.Store, stream string, n int) annals.AppendResult {
	t.Helper()
	evs := make([]annals.Event, n)
	for i := range evs {
		evs[i] = annals.Event{Type: "E", Data: fmt.Appendf(nil, `{"i":%d}`, i)}
	}
	res, err := s.Append(t.Context(), stream, annals.Any, evs...)
	if err != nil {
		t.Fatal(err)
	}
	return res
}

func detail(t *testing.T, err error) *annalsv1.ErrorDetail {
	t.Helper()
	ce, ok := errors.AsType[*connect.Error](err)
	if !ok {
		t.Fatalf("error %v is no *connect.Error", err)
	}
	for _, d := range ce.Details() {
		if v, err := d.Value(); err == nil {
			if ed, ok := v.(*annalsv1.ErrorDetail); ok {
				return ed
			}
		}
	}
	return nil
}

// TestJSON checks the plain HTTP/JSON path: good requests, and each kind of bad input with its
// code, status and message, the server going on serving.
func TestJSON(t *testing.T) {
	f := newFixture(t, nil, &server.Options{MaxRequestBytes: 4096})
	status, v := f.post(t, "Append", "application/json",
		`{"stream":"order-1","expected":{"noStream":{}},"events":[{"type":"OrderPlaced","data":"eyJ0b3RhbCI6NDJ9"}]}`)
	if status != 200 || v["position"] != "1" {
		t.Fatalf("Append: got %d %v, want 200 with position 1", status, v)
	}
	if _, tomb := f.store.Tombstone(t.Context(), "gone-1", annals.Any); tomb != nil {
		t.Fatal(tomb)
	}

	tests := []struct {
		name, method, contentType, body string
		status                          int
		code, reason, message           string
	}{
		{name: "Conflict", method: "Append", body: `{"stream":"order-1","expected":{"noStream":{}},"events":[{"type":"E"}]}`,
			status: 409, code: "aborted", reason: "WRONG_EXPECTED_VERSION", message: "expected no-stream, actual 0"},
		{name: "ExactConflict", method: "Append", body: `{"stream":"order-1","expected":{"revision":"7"},"events":[{"type":"E"}]}`,
			status: 409, code: "aborted", reason: "WRONG_EXPECTED_VERSION", message: "expected 7, actual 0"},
		{name: "MetadataOfSystemStream", method: "GetMetadata", body: `{"stream":"$custom"}`, status: 200},
		{name: "DeleteMissing", method: "Delete", body: `{"stream":"nobody-1"}`,
			status: 404, code: "not_found", reason: "STREAM_NOT_FOUND", message: "not found"},
		{name: "Tombstoned", method: "Append", body: `{"stream":"gone-1","events":[{"type":"E"}]}`,
			status: 400, code: "failed_precondition", reason: "STREAM_DELETED", message: "deleted"},
		{name: "InvalidStream", method: "Append", body: `{"stream":"a\nb","events":[{"type":"E"}]}`,
			status: 400, code: "invalid_argument", reason: "INVALID_ARGUMENT", message: "control character"},
		{name: "ReservedStream", method: "Append", body: `{"stream":"$x","events":[{"type":"E"}]}`,
			status: 400, code: "invalid_argument", reason: "INVALID_ARGUMENT", message: "reserved"},
		{name: "NoEvents", method: "Append", body: `{"stream":"a-1"}`,
			status: 400, code: "invalid_argument", reason: "INVALID_ARGUMENT", message: "no events"},
		{name: "BadExpected", method: "Append", body: `{"stream":"a-1","expected":{"revision":"18446744073709551615"},"events":[{"type":"E"}]}`,
			status: 400, code: "invalid_argument", reason: "INVALID_ARGUMENT", message: "expected revision"},
		{name: "BadEventID", method: "Append", body: `{"stream":"a-1","events":[{"id":"nope","type":"E"}]}`,
			status: 400, code: "invalid_argument", reason: "INVALID_ARGUMENT", message: "not a UUID"},
		{name: "TypeTooLong", method: "Append", body: `{"stream":"a-1","events":[{"type":"` + strings.Repeat("t", 300) + `"}]}`,
			status: 400, code: "invalid_argument", reason: "INVALID_ARGUMENT", message: "longer than 256"},
		{name: "BadMetadata", method: "SetMetadata", body: `{"stream":"a-1","metadata":{"customJson":"{nope"}}`,
			status: 400, code: "invalid_argument", reason: "INVALID_ARGUMENT", message: "not valid JSON"},
		{name: "MalformedJSON", method: "Append", body: `{"stream":`, status: 400, code: "invalid_argument"},
		{name: "WrongFieldType", method: "Append", body: `{"stream":42}`, status: 400, code: "invalid_argument"},
		{name: "UnknownField", method: "Append", body: `{"strem":"a-1"}`, status: 400, code: "invalid_argument"},
		{name: "BadBase64", method: "Append", body: `{"stream":"a-1","events":[{"type":"E","data":"!!"}]}`, status: 400, code: "invalid_argument"},
		{name: "WrongContentType", method: "Append", contentType: "text/plain", body: `{}`, status: 415},
		{name: "UnknownMethod", method: "Frobnicate", body: `{}`, status: 404},
		{name: "Oversize", method: "Append", body: `{"stream":"a-1","events":[{"type":"E","data":"` + strings.Repeat("QUFB", 2000) + `"}]}`,
			status: 429, code: "resource_exhausted"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ct := tt.contentType
			if ct == "" {
				ct = "application/json"
			}
			status, v := f.post(t, tt.method, ct, tt.body)
			if status != tt.status {
				t.Errorf("status: got %d (%v), want %d", status, v, tt.status)
			}
			if got, _ := v["code"].(string); got != tt.code {
				t.Errorf("code: got %q, want %q (answer %v)", got, tt.code, v)
			}
			if msg, _ := v["message"].(string); !strings.Contains(msg, tt.message) {
				t.Errorf("message: got %q, want it to contain %q", msg, tt.message)
			}
			if tt.reason != "" {
				details, _ := v["details"].([]any)
				if len(details) != 1 || !strings.Contains(fmt.Sprint(details[0]), tt.reason) {
					t.Errorf("details: got %v, want an annals.v1.ErrorDetail with reason %s", details, tt.reason)
				}
			}
		})
	}
	// Nothing of the bad requests was written, and the server goes on.
	var n int
	for _, err := range f.store.ReadAll(t.Context(), nil) {
		if err != nil {
			t.Fatal(err)
		}
		n++
	}
	if n != 2 {
		t.Errorf("log after the bad requests: %d events, want 2 (the append and the tombstone)", n)
	}
	if status, v := f.post(t, "Append", "application/json", `{"stream":"order-1","expected":{"revision":"0"},"events":[{"type":"E"}]}`); status != 200 || v["revision"] != "1" {
		t.Errorf("Append after the bad requests: got %d %v, want 200 with revision 1", status, v)
	}
}

// TestConflictDetail checks that a conflict carries the actual revision over gRPC.
func TestConflictDetail(t *testing.T) {
	f := newFixture(t, nil, nil)
	mustAppend(t, f.store, "c-1", 3)
	_, err := f.rpc().Append(t.Context(), connect.NewRequest(&annalsv1.AppendRequest{
		Stream: "c-1", Expected: &annalsv1.ExpectedRevision{Kind: &annalsv1.ExpectedRevision_Revision{Revision: 0}},
		Events: []*annalsv1.Event{{Type: "E"}},
	}))
	if got := connect.CodeOf(err); got != connect.CodeAborted {
		t.Fatalf("code: got %v (%v), want aborted", got, err)
	}
	d := detail(t, err)
	if d == nil || d.Reason != "WRONG_EXPECTED_VERSION" || d.Stream != "c-1" || d.GetActual().GetRevision() != 2 || d.GetExpected().GetRevision() != 0 {
		t.Errorf("detail: got %v, want WRONG_EXPECTED_VERSION for c-1, expected 0, actual 2", d)
	}
}

// failingStore fails every append with an error the table does not know.
type failingStore struct {
	annals.Store
}

func (failingStore) Append(context.Context, string, annals.ExpectedRevision, ...annals.Event) (annals.AppendResult, error) {
	return annals.AppendResult{}, errors.New("disk on fire: sector 7")
}

// TestInternalError checks that an unknown error is Internal with a generic message, and that
// the log has the full error under the id the message gives.
func TestInternalError(t *testing.T) {
	f := newFixture(t, failingStore{memstore.New(nil)}, nil)
	status, v := f.post(t, "Append", "application/json", `{"stream":"a-1","events":[{"type":"E"}]}`)
	if status != 500 || v["code"] != "internal" {
		t.Fatalf("got %d %v, want 500 internal", status, v)
	}
	msg, _ := v["message"].(string)
	if strings.Contains(msg, "fire") {
		t.Errorf("message %q shows the internal error to the client", msg)
	}
	_, id, ok := strings.Cut(msg, "error id ")
	if !ok || len(id) < 12 {
		t.Fatalf("message %q has no error id", msg)
	}
	id = id[:12]
	if log := f.logged(); !strings.Contains(log, "error_id="+id) || !strings.Contains(log, "disk on fire: sector 7") {
		t.Errorf("log does not have the error under id %s:\n%s", id, log)
	}
}

// TestAuthorize checks that the hook sees every kind of operation and that its errors map
// through the table, on RPCs and on SSE.
func TestAuthorize(t *testing.T) {
	var mu sync.Mutex
	var seen []server.Access
	f := newFixture(t, nil, &server.Options{Authorize: func(ctx context.Context, a server.Access) error {
		mu.Lock()
		seen = append(seen, a)
		mu.Unlock()
		switch {
		case strings.HasPrefix(a.Stream, "secret-"):
			return fmt.Errorf("%w: %s on %s", server.ErrPermissionDenied, a.Op, a.Stream)
		case a.Stream == "anon-1":
			return server.ErrUnauthenticated
		}
		return nil
	}})
	rpc := f.rpc()
	_, err := rpc.Append(t.Context(), connect.NewRequest(&annalsv1.AppendRequest{Stream: "secret-1", Events: []*annalsv1.Event{{Type: "E"}}}))
	if got := connect.CodeOf(err); got != connect.CodePermissionDenied {
		t.Errorf("Append to secret-1: got %v, want permission_denied", err)
	}
	_, err = rpc.Delete(t.Context(), connect.NewRequest(&annalsv1.DeleteRequest{Stream: "anon-1"}))
	if got := connect.CodeOf(err); got != connect.CodeUnauthenticated {
		t.Errorf("Delete of anon-1: got %v, want unauthenticated", err)
	}
	res, err := http.Get(f.url + "/v1/sse/streams/secret-2")
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != http.StatusForbidden {
		t.Errorf("SSE of secret-2: got status %d, want 403", res.StatusCode)
	}
	res, err = http.Get(f.url + "/v1/streams/secret-3")
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != http.StatusForbidden {
		t.Errorf("JSON read of secret-3: got status %d, want 403", res.StatusCode)
	}
	_, err = rpc.SetMetadata(t.Context(), connect.NewRequest(&annalsv1.SetMetadataRequest{Stream: "m-1", Metadata: &annalsv1.StreamMetadata{}}))
	if err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	defer mu.Unlock()
	want := []server.Access{
		{Op: server.OpWrite, Procedure: annalsv1connect.EventStoreServiceAppendProcedure, Stream: "secret-1"},
		{Op: server.OpDelete, Procedure: annalsv1connect.EventStoreServiceDeleteProcedure, Stream: "anon-1"},
		{Op: server.OpRead, Procedure: "GET /v1/sse/streams/{stream...}", Stream: "secret-2"},
		{Op: server.OpRead, Procedure: "GET /v1/streams/{stream...}", Stream: "secret-3"},
		{Op: server.OpMetaWrite, Procedure: annalsv1connect.EventStoreServiceSetMetadataProcedure, Stream: "m-1"},
	}
	if fmt.Sprint(seen) != fmt.Sprint(want) {
		t.Errorf("Authorize saw\n%v\nwant\n%v", seen, want)
	}
}

func subscriptions(t *testing.T, f *fixture) uint64 {
	info, err := f.srv.Info(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	return uint64(info.Subscriptions)
}

// TestDisconnectFreesSubscription checks that a client that goes away mid-subscription (its
// context canceled, or its connection closed) ends the subscription on the server.
func TestDisconnectFreesSubscription(t *testing.T) {
	f := newFixture(t, nil, nil)
	mustAppend(t, f.store, "d-1", 10)
	ctx, cancel := context.WithCancel(t.Context())
	rpc := f.rpc()
	var streams []*connect.ServerStreamForClient[annalsv1.SubscribeResponse]
	for i := range 5 {
		st, err := rpc.Subscribe(ctx, connect.NewRequest(&annalsv1.SubscribeRequest{Stream: []string{"d-1", "$all"}[i%2]}))
		if err != nil {
			t.Fatal(err)
		}
		if !st.Receive() {
			t.Fatalf("subscription %d: %v", i, st.Err())
		}
		streams = append(streams, st)
	}
	// A raw connection that subscribes over HTTP/1 and is then closed.
	conn, err := net.Dial("tcp", strings.TrimPrefix(f.url, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	fmt.Fprintf(conn, "GET /v1/sse/all HTTP/1.1\r\nHost: x\r\n\r\n")
	if line, err := bufio.NewReader(conn).ReadString('\n'); err != nil || !strings.Contains(line, "200") {
		t.Fatalf("SSE: got %q, %v", line, err)
	}
	testwait.Until(t, "6 subscriptions running", func() bool { return subscriptions(t, f) == 6 })
	cancel()
	conn.Close()
	for _, st := range streams {
		for st.Receive() {
		}
		st.Close()
	}
	testwait.Until(t, "no subscription running after the clients left", func() bool { return subscriptions(t, f) == 0 })
}

// TestSlowSubscriberDoesNotBlockWriters subscribes and then reads nothing while writers append
// far more than the subscription buffer and the transport's windows hold; the writers must
// finish, and the subscriber must then get every event in order.
func TestSlowSubscriberDoesNotBlockWriters(t *testing.T) {
	f := newFixture(t, nil, &server.Options{SubscriptionBuffer: 8})
	rpc := f.rpc()
	st, err := rpc.Subscribe(t.Context(), connect.NewRequest(&annalsv1.SubscribeRequest{Stream: "$all"}))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	if !st.Receive() || st.Msg().GetStarted() == nil {
		t.Fatalf("first message: got %v, %v; want started", st.Msg(), st.Err())
	}
	const appends, size = 200, 50
	big := bytes.Repeat([]byte("x"), 2000) // 20 MB in all: more than any window
	done := make(chan error, 1)
	go func() {
		for range appends {
			evs := make([]annals.Event, size)
			for i := range evs {
				evs[i] = annals.Event{Type: "E", ContentType: "text/plain", Data: big}
			}
			if _, err := f.store.Append(context.Background(), "slow-1", annals.Any, evs...); err != nil {
				done <- err
				return
			}
		}
		done <- nil
	}()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(waitTimeout):
		t.Fatalf("writers did not finish within %v while a subscriber read nothing", waitTimeout)
	}
	next := uint64(1)
	for next <= appends*size && st.Receive() {
		for _, e := range st.Msg().GetEvents().GetEvents() {
			if e.Position != next {
				t.Fatalf("got position %d, want %d", e.Position, next)
			}
			next++
		}
	}
	if next != appends*size+1 {
		t.Fatalf("subscription ended at position %d: %v", next, st.Err())
	}
}

// TestDisconnectMidAppend sends half an append body and closes the connection: nothing is
// written and the server goes on serving.
func TestDisconnectMidAppend(t *testing.T) {
	f := newFixture(t, nil, nil)
	body := `{"stream":"half-1","events":[{"type":"E"}]}`
	conn, err := net.Dial("tcp", strings.TrimPrefix(f.url, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	fmt.Fprintf(conn, "POST /annals.v1.EventStoreService/Append HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s", len(body), body[:20])
	conn.Close()
	status, v := f.post(t, "Append", "application/json", `{"stream":"whole-1","events":[{"type":"E"}]}`)
	if status != 200 || v["position"] != "1" {
		t.Fatalf("Append after a half one: got %d %v, want 200 at position 1", status, v)
	}
}

// TestServerCloseEndsSubscriptions checks that Close ends a running subscription with
// Unavailable and reason SHUTTING_DOWN, and refuses new ones the same way.
func TestServerCloseEndsSubscriptions(t *testing.T) {
	f := newFixture(t, nil, nil)
	rpc := f.rpc()
	st, err := rpc.Subscribe(t.Context(), connect.NewRequest(&annalsv1.SubscribeRequest{Stream: "$all"}))
	if err != nil {
		t.Fatal(err)
	}
	if !st.Receive() {
		t.Fatal(st.Err())
	}
	closed := make(chan struct{})
	go func() {
		f.srv.Close()
		close(closed)
	}()
	for st.Receive() {
	}
	if d := detail(t, st.Err()); connect.CodeOf(st.Err()) != connect.CodeUnavailable || d == nil || d.Reason != "SHUTTING_DOWN" {
		t.Errorf("subscription at Close: got %v (%v), want unavailable SHUTTING_DOWN", st.Err(), d)
	}
	<-closed
	st, err = rpc.Subscribe(t.Context(), connect.NewRequest(&annalsv1.SubscribeRequest{Stream: "$all"}))
	if err == nil {
		for st.Receive() {
		}
		err = st.Err()
	}
	if connect.CodeOf(err) != connect.CodeUnavailable {
		t.Errorf("subscription after Close: got %v, want unavailable", err)
	}
}

// TestGRPCWeb checks that the same handlers answer gRPC-Web.
func TestGRPCWeb(t *testing.T) {
	f := newFixture(t, nil, nil)
	rpc := annalsv1connect.NewEventStoreServiceClient(http.DefaultClient, f.url, connect.WithGRPCWeb())
	res, err := rpc.Append(t.Context(), connect.NewRequest(&annalsv1.AppendRequest{Stream: "w-1", Events: []*annalsv1.Event{{Type: "E"}, {Type: "F"}}}))
	if err != nil || res.Msg.Position != 2 {
		t.Fatalf("Append over gRPC-Web: %v, %v", res, err)
	}
	st, err := rpc.ReadStream(t.Context(), connect.NewRequest(&annalsv1.ReadStreamRequest{Stream: "w-1"}))
	if err != nil {
		t.Fatal(err)
	}
	var types []string
	for st.Receive() {
		for _, e := range st.Msg().Events {
			types = append(types, e.Type)
		}
	}
	if st.Err() != nil || fmt.Sprint(types) != "[E F]" {
		t.Errorf("ReadStream over gRPC-Web: got %v, %v; want [E F]", types, st.Err())
	}
}

// TestLargeRead checks that a read larger than a batch arrives whole and in order, in more
// than one message.
func TestLargeRead(t *testing.T) {
	f := newFixture(t, nil, nil)
	for range 5 {
		mustAppend(t, f.store, "big-1", 500)
	}
	st, err := f.rpc().ReadAll(t.Context(), connect.NewRequest(&annalsv1.ReadAllRequest{}))
	if err != nil {
		t.Fatal(err)
	}
	msgs, next := 0, uint64(1)
	for st.Receive() {
		msgs++
		for _, e := range st.Msg().Events {
			if e.Position != next {
				t.Fatalf("got position %d, want %d", e.Position, next)
			}
			next++
		}
	}
	if st.Err() != nil || next != 2501 || msgs < 2 {
		t.Errorf("ReadAll: %d messages up to position %d, %v; want 2500 events in several messages", msgs, next-1, st.Err())
	}
}
