package server_test

import (
	"context"
	"errors"
	"fmt"
	"io"
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
	"github.com/annalsdb/annals/internal/wire"
	"github.com/annalsdb/annals/lease"
	"github.com/annalsdb/annals/memstore"
	"github.com/annalsdb/annals/server"
	"google.golang.org/protobuf/types/known/emptypb"
)

type batchStream = *connect.BidiStreamForClient[annalsv1.BatchAppendRequest, annalsv1.BatchAppendResponse]

// openBatch opens a BatchAppend stream to f, ended at the end of the test.
func openBatch(t *testing.T, f *fixture) batchStream {
	t.Helper()
	ctx, cancel := context.WithCancel(t.Context())
	t.Cleanup(cancel)
	return f.rpc().BatchAppend(ctx)
}

func batchOf(appends ...*annalsv1.BatchAppend) *annalsv1.BatchAppendRequest {
	return &annalsv1.BatchAppendRequest{Appends: appends}
}

func appendOf(id uint64, stream string, expected *annalsv1.ExpectedRevision, types ...string) *annalsv1.BatchAppend {
	req := &annalsv1.AppendRequest{Stream: stream, Expected: expected}
	for _, ty := range types {
		req.Events = append(req.Events, &annalsv1.Event{Type: ty})
	}
	return &annalsv1.BatchAppend{Id: id, Append: req}
}

// results receives until n results came, and returns them by id.
func results(t *testing.T, st batchStream, n int) map[uint64]*annalsv1.BatchAppendResult {
	t.Helper()
	got := make(map[uint64]*annalsv1.BatchAppendResult)
	for len(got) < n {
		m, err := st.Receive()
		if err != nil {
			t.Fatalf("receive after %d of %d results: %v", len(got), n, err)
		}
		for _, r := range m.Results {
			if _, dup := got[r.Id]; dup {
				t.Fatalf("id %d answered twice", r.Id)
			}
			got[r.Id] = r
		}
	}
	return got
}

var exists = &annalsv1.ExpectedRevision{Kind: &annalsv1.ExpectedRevision_StreamExists{StreamExists: &emptypb.Empty{}}}

func revision(r uint64) *annalsv1.ExpectedRevision {
	return &annalsv1.ExpectedRevision{Kind: &annalsv1.ExpectedRevision_Revision{Revision: r}}
}

// TestBatchAppendResults: the appends of one message each get their own result, an error of
// one (conflict, stream deleted, bad input) leaves the others alone, and errors carry the code and
// detail a unary Append gives.
func TestBatchAppendResults(t *testing.T) {
	f := newFixture(t, nil, nil)
	mustAppend(t, f.store, "c-1", 3)
	mustAppend(t, f.store, "t-1", 1)
	if _, err := f.store.Tombstone(t.Context(), "t-1", annals.Any); err != nil {
		t.Fatal(err)
	}
	st := openBatch(t, f)
	err := st.Send(batchOf(
		appendOf(1, "a-1", nil, "E", "E"),
		appendOf(2, "c-1", revision(0), "E"),
		appendOf(3, "b-1", nil, "E"),
		appendOf(4, "missing-1", exists, "E"),
		appendOf(7, "t-1", nil, "E"),
		appendOf(5, "bad-1", nil, ""),
		appendOf(6, "c-2", nil, "E"),
	))
	if err != nil {
		t.Fatal(err)
	}
	got := results(t, st, 7)
	for id, want := range map[uint64]struct {
		rev  uint64
		code connect.Code
	}{1: {rev: 1}, 3: {rev: 0}, 6: {rev: 0}, 2: {code: connect.CodeAborted}, 4: {code: connect.CodeAborted}, 7: {code: connect.CodeFailedPrecondition}, 5: {code: connect.CodeInvalidArgument}} {
		r := got[id]
		if want.code == 0 {
			if r.GetOk() == nil || r.GetOk().Revision != want.rev {
				t.Errorf("id %d: got %v, want revision %d", id, r, want.rev)
			}
			continue
		}
		if s := r.GetError(); s == nil || connect.Code(s.Code) != want.code {
			t.Errorf("id %d: got %v, want %v", id, r, want.code)
		}
	}
	if d := got[2].GetError().GetDetail(); d.GetReason() != wire.ReasonWrongExpectedVersion || d.GetActual().GetRevision() != 2 || d.Stream != "c-1" {
		t.Errorf("conflict detail: got %v, want WRONG_EXPECTED_VERSION of c-1 with actual 2", d)
	}
	if d := got[4].GetError().GetDetail(); d.GetReason() != wire.ReasonWrongExpectedVersion || d.GetActual().GetNoStream() == nil {
		t.Errorf("stream-exists on no stream: got %v, want WRONG_EXPECTED_VERSION with actual no-stream", d)
	}
	if d := got[7].GetError().GetDetail(); d.GetReason() != wire.ReasonStreamDeleted {
		t.Errorf("tombstoned stream: got %v, want STREAM_DELETED", d)
	}
	if s := got[5].GetError(); s.GetDetail().GetReason() != wire.ReasonInvalidArgument || !strings.Contains(s.Message, "type") {
		t.Errorf("invalid event: got %v, want INVALID_ARGUMENT naming the type", s)
	}
	// The stream goes on serving, and ends cleanly when the client ends its side.
	if err := st.Send(batchOf(appendOf(2, "a-1", revision(1), "E"))); err != nil {
		t.Fatal(err)
	}
	if r := results(t, st, 1)[2]; r.GetOk().GetRevision() != 2 {
		t.Errorf("reused id 2: got %v, want revision 2", r)
	}
	if err := st.CloseRequest(); err != nil {
		t.Fatal(err)
	}
	if _, err := st.Receive(); !errors.Is(err, io.EOF) {
		t.Errorf("end of stream: got %v, want io.EOF", err)
	}
}

// TestBatchAppendProtocolErrors: a message that breaks the protocol ends the stream with
// InvalidArgument naming what is wrong.
func TestBatchAppendProtocolErrors(t *testing.T) {
	f := newFixture(t, nil, nil)
	for _, tc := range []struct {
		name string
		msg  *annalsv1.BatchAppendRequest
		want string
	}{
		{"empty", batchOf(), "no appends"},
		{"no append", batchOf(appendOf(1, "a-1", nil, "E"), &annalsv1.BatchAppend{Id: 2}), "append 1 of a request message (id 2) has no AppendRequest"},
		{"duplicate id", batchOf(appendOf(7, "a-1", nil, "E"), appendOf(7, "a-2", nil, "E")), "id 7 is already in flight"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			st := openBatch(t, f)
			if err := st.Send(tc.msg); err != nil {
				t.Fatal(err)
			}
			var err error
			for err == nil {
				_, err = st.Receive()
			}
			if connect.CodeOf(err) != connect.CodeInvalidArgument || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("got %v, want invalid_argument naming %q", err, tc.want)
			}
		})
	}
}

// gate is a store whose appends wait until the gate opens. It counts the appends made, and
// the most made at once.
type gate struct {
	annals.Store
	mu      sync.Mutex
	n       int
	running int
	peak    int
	opened  chan struct{}
	release sync.Once
}

func newGate(s annals.Store) *gate { return &gate{Store: s, opened: make(chan struct{})} }

func (g *gate) Append(ctx context.Context, stream string, expected annals.ExpectedRevision, events ...annals.Event) (annals.AppendResult, error) {
	g.mu.Lock()
	g.n++
	g.running++
	g.peak = max(g.peak, g.running)
	g.mu.Unlock()
	defer func() {
		g.mu.Lock()
		g.running--
		g.mu.Unlock()
	}()
	select {
	case <-g.opened:
	case <-ctx.Done():
		return annals.AppendResult{}, ctx.Err()
	}
	return g.Store.Append(ctx, stream, expected, events...)
}

func (g *gate) waiting() int {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.n
}

func (g *gate) open() { g.release.Do(func() { close(g.opened) }) }

// TestBatchAppendBounds: the bytes of the appends in flight are held in the request budget
// until they are answered, and a stream makes at most MaxBatchInFlight appends at once, ever.
func TestBatchAppendBounds(t *testing.T) {
	g := newGate(memstore.New(nil))
	f := newFixture(t, g, nil)
	st := openBatch(t, f)
	const n = 2 * server.MaxBatchInFlight
	for i := range n {
		if err := st.Send(batchOf(appendOf(uint64(i), fmt.Sprint("a-", i), nil, "E"))); err != nil {
			t.Fatal(err)
		}
	}
	testwait.Until(t, "MaxBatchInFlight appends in the store", func() bool { return g.waiting() == server.MaxBatchInFlight })
	stats, err := f.srv.Stats(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if stats.RequestBytesInFlight <= 0 {
		t.Errorf("bytes in flight with appends in the store: %d, want > 0", stats.RequestBytesInFlight)
	}
	g.open()
	results(t, st, n)
	g.mu.Lock()
	made, peak := g.n, g.peak
	g.mu.Unlock()
	if made != n || peak != server.MaxBatchInFlight {
		t.Errorf("appends made: %d, at most %d at once; want %d, at most %d", made, peak, n, server.MaxBatchInFlight)
	}
	testwait.UntilNil(t, "the budget given back", func() error {
		stats, err := f.srv.Stats(t.Context())
		if err == nil && stats.RequestBytesInFlight != 0 {
			err = fmt.Errorf("%d bytes in flight", stats.RequestBytesInFlight)
		}
		return err
	})
}

// TestBatchAppendAuthorize: the hook sees each append of a stream; a refusal answers that
// append only.
func TestBatchAppendAuthorize(t *testing.T) {
	var mu sync.Mutex
	var seen []string
	f := newFixture(t, nil, &server.Options{Authorize: func(ctx context.Context, a server.Access) error {
		mu.Lock()
		seen = append(seen, fmt.Sprint(a.Op, " ", a.Procedure, " ", a.Stream))
		mu.Unlock()
		if strings.HasPrefix(a.Stream, "secret-") {
			return server.ErrPermissionDenied
		}
		return nil
	}})
	st := openBatch(t, f)
	if err := st.Send(batchOf(appendOf(1, "a-1", nil, "E"), appendOf(2, "secret-1", nil, "E"))); err != nil {
		t.Fatal(err)
	}
	got := results(t, st, 2)
	if got[1].GetOk() == nil || connect.Code(got[2].GetError().GetCode()) != connect.CodePermissionDenied {
		t.Errorf("got %v and %v, want ok and permission_denied", got[1], got[2])
	}
	mu.Lock()
	defer mu.Unlock()
	proc := annalsv1connect.EventStoreServiceBatchAppendProcedure
	want := map[string]bool{"write " + proc + " a-1": true, "write " + proc + " secret-1": true}
	if len(seen) != 2 || !want[seen[0]] || !want[seen[1]] || seen[0] == seen[1] {
		t.Errorf("Authorize saw %q, want %v", seen, want)
	}
}

// TestBatchAppendLeaseLost: a fenced append whose lease was lost is refused with LEASE_LOST,
// and nothing is written.
func TestBatchAppendLeaseLost(t *testing.T) {
	ctx := t.Context()
	k := lease.NewMemory(nil)
	f := newFixture(t, nil, &server.Options{Leases: k})
	l, err := k.Acquire(ctx, "n", "h", time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	if err := k.Release(ctx, l); err != nil {
		t.Fatal(err)
	}
	st := openBatch(t, f)
	a := appendOf(1, "a-1", nil, "E")
	a.Append.Lease = wire.LeaseToProto(l)
	if err := st.Send(batchOf(a)); err != nil {
		t.Fatal(err)
	}
	s := results(t, st, 1)[1].GetError()
	if connect.Code(s.GetCode()) != connect.CodeAborted || s.GetDetail().GetReason() != wire.ReasonLeaseLost {
		t.Errorf("got %v, want aborted LEASE_LOST", s)
	}
	for _, err := range f.store.ReadStream(ctx, "a-1", nil) {
		if !errors.Is(err, annals.ErrStreamNotFound) {
			t.Errorf("a-1 after the refused append: %v, want not found", err)
		}
	}
}

// TestBatchAppendServerClose: Close stops a stream after answering the appends already in the
// store, and ends it with Unavailable SHUTTING_DOWN.
func TestBatchAppendServerClose(t *testing.T) {
	g := newGate(memstore.New(nil))
	f := newFixture(t, g, nil)
	st := openBatch(t, f)
	if err := st.Send(batchOf(appendOf(1, "a-1", nil, "E"))); err != nil {
		t.Fatal(err)
	}
	testwait.Until(t, "the append in the store", func() bool { return g.waiting() == 1 })
	closed := make(chan struct{})
	go func() {
		f.srv.Close()
		close(closed)
	}()
	g.open()
	if r := results(t, st, 1)[1]; r.GetOk() == nil {
		t.Errorf("the append in flight: got %v, want ok", r)
	}
	_, err := st.Receive()
	if connect.CodeOf(err) != connect.CodeUnavailable || detail(t, err).GetReason() != wire.ReasonShuttingDown {
		t.Errorf("end of the stream: got %v, want unavailable SHUTTING_DOWN", err)
	}
	testwait.Recv(t, "Close after the stream ended", closed)
	st = openBatch(t, f)
	_ = st.Send(batchOf(appendOf(1, "a-2", nil, "E"))) // io.EOF when refused: Receive says why
	_, err = st.Receive()
	if connect.CodeOf(err) != connect.CodeUnavailable {
		t.Errorf("a stream after Close: got %v, want unavailable", err)
	}
}

// TestBatchAppendMetrics: each append of a stream counts as a unary append does, and the
// open streams are a gauge.
func TestBatchAppendMetrics(t *testing.T) {
	m := server.NewMetrics(nil)
	f := newFixture(t, nil, &server.Options{Interceptors: []connect.Interceptor{m.Interceptor()}})
	m.Watch(f.srv)
	st := openBatch(t, f)
	if err := st.Send(batchOf(appendOf(1, "a-1", nil, "X", "Y"), appendOf(2, "a-2", revision(4), "X"))); err != nil {
		t.Fatal(err)
	}
	results(t, st, 2)
	w := httptest.NewRecorder()
	m.Handler().ServeHTTP(w, httptest.NewRequest("GET", "/metrics", nil))
	body := w.Body.String()
	for _, want := range []string{
		`annals_appends_total{code="ok"} 1`,
		`annals_appends_total{code="aborted"} 1`,
		"annals_appended_events_total 2",
		"annals_append_duration_seconds_count 2",
		"annals_batch_append_streams 1",
	} {
		if !strings.Contains(body, want) {
			t.Errorf("no %q in the metrics:\n%s", want, body)
		}
	}
}

// TestBatchAppendCloseUnreadResults: a client that sends appends and never reads its results
// (its flow-control window full, the server's sends block) cannot hold Close, which returns
// once the appends in the store are answered and the sends left had their grace, nor the
// request budget, which is given back.
func TestBatchAppendCloseUnreadResults(t *testing.T) {
	f := newFixture(t, nil, nil)
	var p http.Protocols
	p.SetUnencryptedHTTP2(true)
	// The client's window of the response fills with a few results.
	hc := &http.Client{Transport: &http.Transport{Protocols: &p, HTTP2: &http.HTTP2Config{MaxReceiveBufferPerStream: 1 << 10}}}
	rpc := annalsv1connect.NewEventStoreServiceClient(hc, f.url, connect.WithGRPC())
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	st := rpc.BatchAppend(ctx)
	const n = 2 * server.MaxBatchInFlight
	for i := range n {
		if err := st.Send(batchOf(appendOf(uint64(i), fmt.Sprint("a-", i), nil, "E"))); err != nil {
			t.Fatal(err)
		}
	}
	// At most MaxBatchInFlight appends are in flight: once that many are made, the server's
	// sends are blocked.
	testwait.UntilNil(t, "MaxBatchInFlight appends made", func() error {
		info, err := f.srv.Info(t.Context())
		if err == nil && info.HeadPosition < server.MaxBatchInFlight {
			err = fmt.Errorf("head at %d", info.HeadPosition)
		}
		return err
	})
	closed := make(chan struct{})
	go func() {
		f.srv.Close()
		close(closed)
	}()
	testwait.Recv(t, "Close with a client that does not read", closed)
	stats, err := f.srv.Stats(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if stats.RequestBytesInFlight != 0 {
		t.Errorf("bytes in flight after Close: %d, want 0", stats.RequestBytesInFlight)
	}
}

// TestBatchAppendBudgetHTTP2: over HTTP/2 a message that finds no room in the request budget
// does not wait for it (its unread data would stall the other requests of its connection):
// its appends are answered ResourceExhausted at once, and the stream goes on.
func TestBatchAppendBudgetHTTP2(t *testing.T) {
	g := newGate(memstore.New(nil))
	// The budget holds one request of the largest size, and would wait an hour.
	f := newFixture(t, g, &server.Options{MaxRequestBytes: 4 << 10, MaxRequestBytesInFlight: 1, RequestBudgetWait: time.Hour})
	ctx := testwait.Context(t)
	st := f.rpc().BatchAppend(ctx)
	big := appendOf(1, "a-1", nil, "E")
	big.Append.Events[0].Data = make([]byte, 3<<10)
	if err := st.Send(batchOf(big)); err != nil {
		t.Fatal(err)
	}
	testwait.Until(t, "the large append in the store", func() bool { return g.waiting() == 1 })
	// 3 KiB in the budget's 5 KiB: no room for 2 KiB more.
	second := appendOf(2, "a-2", nil, "E")
	second.Append.Events[0].Data = make([]byte, 2<<10)
	if err := st.Send(batchOf(second, appendOf(3, "a-3", nil, "E"))); err != nil {
		t.Fatal(err)
	}
	got := results(t, st, 2)
	for _, id := range []uint64{2, 3} {
		if s := got[id].GetError(); connect.Code(s.GetCode()) != connect.CodeResourceExhausted {
			t.Errorf("id %d with the budget full: got %v, want resource_exhausted", id, got[id])
		}
	}
	g.open()
	if r := results(t, st, 1)[1]; r.GetOk() == nil {
		t.Errorf("the large append: got %v, want ok", r)
	}
}
