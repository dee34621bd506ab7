package server

import (
	"bytes"
	"compress/gzip"
	"context"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"connectrpc.com/connect"
	"github.com/annalsdb/annals"
	annalsv1 "github.com/annalsdb/annals/internal/gen/annals/v1"
	"github.com/annalsdb/annals/internal/gen/annals/v1/annalsv1connect"
	"github.com/annalsdb/annals/internal/testwait"
	"github.com/annalsdb/annals/memstore"
)

// gatedAppends holds every append until gate is closed, and counts the appends inside it.
type gatedAppends struct {
	annals.Store
	gate         chan struct{}
	inside, most atomic.Int64
}

func (g *gatedAppends) Append(ctx context.Context, stream string, expected annals.ExpectedRevision, events ...annals.Event) (annals.AppendResult, error) {
	n := g.inside.Add(1)
	defer g.inside.Add(-1)
	for m := g.most.Load(); n > m && !g.most.CompareAndSwap(m, n); m = g.most.Load() {
	}
	select {
	case <-g.gate:
	case <-ctx.Done():
		return annals.AppendResult{}, ctx.Err()
	}
	return g.Store.Append(ctx, stream, expected, events...)
}

// budgetFixture serves a gated memstore with a budget for four requests of maxRequest bytes.
func budgetFixture(t *testing.T, wait time.Duration) (*Server, *gatedAppends, string) {
	t.Helper()
	const maxRequest = 1 << 20
	g := &gatedAppends{Store: memstore.New(nil), gate: make(chan struct{})}
	t.Cleanup(func() { g.Store.Close() })
	s := New(g, &Options{MaxRequestBytes: maxRequest, MaxRequestBytesInFlight: 4 * (maxRequest + requestSlack), RequestBudgetWait: wait})
	hs := httptest.NewUnstartedServer(s.Handler())
	var protocols http.Protocols
	protocols.SetHTTP1(true)
	protocols.SetUnencryptedHTTP2(true)
	hs.Config.Protocols = &protocols
	hs.Start()
	t.Cleanup(func() {
		s.Close()
		hs.Close()
	})
	return s, g, hs.URL
}

// largeAppend is the JSON of an append of about 900 KiB to stream.
func largeAppend(stream string) []byte {
	return fmt.Appendf(nil, `{"stream":%q,"events":[{"type":"E","data":"%s"}]}`, stream, strings.Repeat("QUFB", 900<<10/4))
}

func postAppend(t *testing.T, url string, body io.Reader) (int, map[string]any, error) {
	hc := &http.Client{Timeout: testwait.Timeout(t)}
	res, err := hc.Post(url+"/annals.v1.EventStoreService/Append", "application/json", body)
	if err != nil {
		return 0, nil, err
	}
	defer res.Body.Close()
	var v map[string]any
	err = json.NewDecoder(res.Body).Decode(&v)
	return res.StatusCode, v, err
}

// TestBudgetBoundsConcurrentBodies sends ten large appends at once, half with a declared
// size and half chunked, to a server whose budget holds four: the budget's own accounting
// never goes over it, no more than four appends reach the store at once, and every request
// succeeds once the earlier ones are answered.
func TestBudgetBoundsConcurrentBodies(t *testing.T) {
	s, g, url := budgetFixture(t, time.Minute)
	var wg sync.WaitGroup
	errs := make(chan error, 10)
	for i := range 10 {
		wg.Go(func() {
			var body io.Reader = bytes.NewReader(largeAppend(fmt.Sprintf("big-%d", i)))
			if i%2 == 1 {
				body = io.MultiReader(body) // no Content-Length: sent chunked
			}
			status, v, err := postAppend(t, url, body)
			if err == nil && status != http.StatusOK {
				err = fmt.Errorf("append %d: got %d %v, want 200", i, status, v)
			}
			errs <- err
		})
	}
	testwait.Until(t, "four appends inside the store", func() bool { return g.inside.Load() == 4 })
	close(g.gate)
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Error(err)
		}
	}
	if peak := s.budget.peak.Load(); peak > s.budget.size || peak < 3*(900<<10) {
		t.Errorf("budget peak: %d bytes, want between three appends and the budget of %d", peak, s.budget.size)
	}
	if most := g.most.Load(); most > 4 {
		t.Errorf("%d appends in the store at once, want at most the 4 the budget holds", most)
	}
	if n := s.budget.inFlight.Load(); n != 0 {
		t.Errorf("budget after every request: %d bytes in flight, want 0", n)
	}
}

// TestBudgetRefusesBeyondWait checks that a request that finds no room within the budget's
// wait gets 429 resource_exhausted with a message that says why.
func TestBudgetRefusesBeyondWait(t *testing.T) {
	s, g, url := budgetFixture(t, 50*time.Millisecond)
	var wg sync.WaitGroup
	defer wg.Wait()
	defer close(g.gate)
	for i := range 4 {
		wg.Go(func() {
			if status, v, err := postAppend(t, url, bytes.NewReader(largeAppend(fmt.Sprintf("big-%d", i)))); err != nil || status != http.StatusOK {
				t.Errorf("append %d once the gate opens: got %d %v %v, want 200", i, status, v, err)
			}
		})
	}
	testwait.Until(t, "four appends inside the store", func() bool { return g.inside.Load() == 4 })
	for _, body := range []io.Reader{bytes.NewReader(largeAppend("late-1")), io.MultiReader(bytes.NewReader(largeAppend("late-2")))} {
		status, v, err := postAppend(t, url, body)
		if err != nil {
			t.Fatal(err)
		}
		msg, _ := v["message"].(string)
		if status != http.StatusTooManyRequests || v["code"] != "resource_exhausted" || !strings.Contains(msg, "max-request-bytes-in-flight") {
			t.Errorf("append beyond the budget: got %d %v, want 429 resource_exhausted naming max-request-bytes-in-flight", status, v)
		}
	}
	st, err := s.Stats(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if st.RequestBytesInFlight < 4*(900<<10) || st.RequestBytesInFlight > st.RequestBytesBudget || st.RequestBytesBudget != s.budget.size {
		t.Errorf("Stats while four appends wait in the store: %d request bytes in flight of %d, want four appends' worth within the budget of %d",
			st.RequestBytesInFlight, st.RequestBytesBudget, s.budget.size)
	}
}

// TestBudgetHTTP2 sends ten large appends at once over gRPC on one HTTP/2 connection. Their
// bodies declare no Content-Length but the size of their message in its envelope, which each
// takes before it reads the rest; the four that fit reach the store, the six others are
// refused at once with ResourceExhausted (waiting would stall the connection's flow control
// for the four), and the four succeed.
func TestBudgetHTTP2(t *testing.T) {
	s, g, url := budgetFixture(t, time.Minute)
	var protocols http.Protocols
	protocols.SetUnencryptedHTTP2(true)
	hc := &http.Client{Transport: &http.Transport{Protocols: &protocols}}
	rpc := annalsv1connect.NewEventStoreServiceClient(hc, url, connect.WithGRPC())
	data := bytes.Repeat([]byte("a"), 900<<10)
	var wg sync.WaitGroup
	errs := make(chan error, 10)
	for i := range 10 {
		wg.Go(func() {
			_, err := rpc.Append(t.Context(), connect.NewRequest(&annalsv1.AppendRequest{
				Stream: fmt.Sprintf("big-%d", i), Events: []*annalsv1.Event{{Type: "E", Data: data}},
			}))
			errs <- err
		})
	}
	for range 6 {
		err := <-errs
		if connect.CodeOf(err) != connect.CodeResourceExhausted || !strings.Contains(err.Error(), "max-request-bytes-in-flight") {
			t.Errorf("append beyond the budget: got %v, want resource_exhausted naming max-request-bytes-in-flight", err)
		}
	}
	testwait.Until(t, "four appends inside the store", func() bool { return g.inside.Load() == 4 })
	close(g.gate)
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Errorf("append within the budget: %v", err)
		}
	}
	if peak := s.budget.peak.Load(); peak > s.budget.size || peak < 4*(900<<10) {
		t.Errorf("budget peak: %d bytes, want four appends' worth within the budget of %d", peak, s.budget.size)
	}
}

// gzipped returns b compressed with gzip.
func gzipped(t *testing.T, b []byte) []byte {
	t.Helper()
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	if _, err := zw.Write(b); err != nil {
		t.Fatal(err)
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// postGzipAppend posts a gzip-compressed JSON append.
func postGzipAppend(t *testing.T, url string, body []byte) (int, map[string]any, error) {
	req, err := http.NewRequestWithContext(t.Context(), http.MethodPost, url+"/annals.v1.EventStoreService/Append", bytes.NewReader(body))
	if err != nil {
		return 0, nil, err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Content-Encoding", "gzip")
	res, err := (&http.Client{Timeout: testwait.Timeout(t)}).Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer res.Body.Close()
	var v map[string]any
	err = json.NewDecoder(res.Body).Decode(&v)
	return res.StatusCode, v, err
}

// TestBudgetCompressedBodies checks that a compressed body takes the largest share of the
// budget up front, whatever its compressed size: four small gzip bodies that decompress to
// large appends fill a budget of four, and a fifth is refused, over the Connect protocol
// (Content-Encoding) and over gRPC (grpc-encoding).
func TestBudgetCompressedBodies(t *testing.T) {
	t.Run("connect", func(t *testing.T) {
		s, g, url := budgetFixture(t, 50*time.Millisecond)
		var wg sync.WaitGroup
		defer wg.Wait()
		defer close(g.gate)
		for i := range 4 {
			wg.Go(func() {
				if status, v, err := postGzipAppend(t, url, gzipped(t, largeAppend(fmt.Sprintf("big-%d", i)))); err != nil || status != http.StatusOK {
					t.Errorf("append %d once the gate opens: got %d %v %v, want 200", i, status, v, err)
				}
			})
		}
		testwait.Until(t, "four appends inside the store", func() bool { return g.inside.Load() == 4 })
		if n := s.budget.inFlight.Load(); n != 4*s.budget.perRequest {
			t.Fatalf("four compressed appends hold %d bytes of the budget, want the largest share each (%d)", n, 4*s.budget.perRequest)
		}
		status, v, err := postGzipAppend(t, url, gzipped(t, largeAppend("late")))
		if err != nil {
			t.Fatal(err)
		}
		if status != http.StatusTooManyRequests || v["code"] != "resource_exhausted" {
			t.Errorf("compressed append beyond the budget: got %d %v, want 429 resource_exhausted", status, v)
		}
	})
	t.Run("grpc", func(t *testing.T) {
		s, g, url := budgetFixture(t, time.Minute)
		var protocols http.Protocols
		protocols.SetUnencryptedHTTP2(true)
		hc := &http.Client{Transport: &http.Transport{Protocols: &protocols}}
		rpc := annalsv1connect.NewEventStoreServiceClient(hc, url, connect.WithGRPC(), connect.WithSendGzip())
		data := bytes.Repeat([]byte("a"), 900<<10)
		var wg sync.WaitGroup
		errs := make(chan error, 5)
		for i := range 5 {
			wg.Go(func() {
				_, err := rpc.Append(t.Context(), connect.NewRequest(&annalsv1.AppendRequest{
					Stream: fmt.Sprintf("big-%d", i), Events: []*annalsv1.Event{{Type: "E", Data: data}},
				}))
				errs <- err
			})
		}
		testwait.Until(t, "four appends inside the store", func() bool { return g.inside.Load() >= 4 })
		if n := s.budget.inFlight.Load(); n != 4*s.budget.perRequest {
			close(g.gate)
			wg.Wait()
			t.Fatalf("compressed appends hold %d bytes of the budget, want the largest share each for four (%d)", n, 4*s.budget.perRequest)
		}
		if err := <-errs; connect.CodeOf(err) != connect.CodeResourceExhausted {
			t.Errorf("compressed append beyond the budget: got %v, want resource_exhausted", err)
		}
		close(g.gate)
		wg.Wait()
		close(errs)
		for err := range errs {
			if err != nil {
				t.Errorf("append within the budget: %v", err)
			}
		}
	})
}

// TestBudgetReleasedByIdleSubscriptions opens more subscriptions with padded bodies than the
// budget holds and leaves them idle: each gives its share back once its body is read, so
// every one starts and an append after them is answered 200, not 429.
func TestBudgetReleasedByIdleSubscriptions(t *testing.T) {
	s, g, url := budgetFixture(t, 50*time.Millisecond)
	close(g.gate)
	hc := &http.Client{}
	for i := range 6 {
		msg := fmt.Appendf(nil, `{"stream":"idle-%d"%s}`, i, strings.Repeat(" ", 900<<10))
		env := binary.BigEndian.AppendUint32([]byte{0}, uint32(len(msg)))
		req, err := http.NewRequestWithContext(t.Context(), http.MethodPost, url+"/annals.v1.EventStoreService/Subscribe", bytes.NewReader(append(env, msg...)))
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Content-Type", "application/connect+json")
		res, err := hc.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { res.Body.Close() })
		testwait.Until(t, fmt.Sprintf("subscription %d running", i), func() bool { return s.subscriptions.Load() == int64(i+1) })
	}
	if n := s.budget.inFlight.Load(); n != 0 {
		t.Errorf("six idle subscriptions hold %d bytes of the budget, want 0", n)
	}
	if status, v, err := postAppend(t, url, bytes.NewReader(largeAppend("after"))); err != nil || status != http.StatusOK {
		t.Errorf("append after idle subscriptions: got %d %v %v, want 200", status, v, err)
	}
}

// TestBudgetChunkedWaitsHoldingNothing leaves room for one large append beside three in the
// store and sends two chunked appends: the one that gets the room takes all of it up front
// and reaches the store, and the other waits holding nothing, so neither starves the other.
func TestBudgetChunkedWaitsHoldingNothing(t *testing.T) {
	s, g, url := budgetFixture(t, time.Minute)
	var wg sync.WaitGroup
	post := func(name string, chunked bool) {
		wg.Go(func() {
			var body io.Reader = bytes.NewReader(largeAppend(name))
			if chunked {
				body = io.MultiReader(body)
			}
			if status, v, err := postAppend(t, url, body); err != nil || status != http.StatusOK {
				t.Errorf("append %s: got %d %v %v, want 200", name, status, v, err)
			}
		})
	}
	for i := range 3 {
		post(fmt.Sprintf("sized-%d", i), false)
	}
	testwait.Until(t, "three appends inside the store", func() bool { return g.inside.Load() == 3 })
	post("chunked-1", true)
	post("chunked-2", true)
	testwait.Until(t, "four appends inside the store", func() bool { return g.inside.Load() == 4 })
	if n := s.budget.inFlight.Load(); n > s.budget.size || n < 4*(900<<10) {
		t.Errorf("budget with four appends in the store and one waiting: %d bytes in flight, want four appends' worth within %d", n, s.budget.size)
	}
	close(g.gate)
	wg.Wait()
	if n := s.budget.inFlight.Load(); n != 0 {
		t.Errorf("budget after every request: %d bytes in flight, want 0", n)
	}
}

// TestBudgetChunkedTakesShareUpFront checks that a body of unknown size (no Content-Length,
// no envelope) takes the largest share before it is read, so that it never waits for room
// holding part of the budget, and gives back what it did not use at its end.
func TestBudgetChunkedTakesShareUpFront(t *testing.T) {
	s := New(memstore.New(nil), &Options{MaxRequestBytes: 1 << 20})
	defer s.Close()
	var before, after int64
	h := s.guard(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		before = s.budget.inFlight.Load()
		if _, err := io.Copy(io.Discard, r.Body); err != nil {
			t.Error(err)
		}
		after = s.budget.inFlight.Load()
	}))
	r := httptest.NewRequest(http.MethodPost, "/annals.v1.EventStoreService/Append", io.MultiReader(strings.NewReader(strings.Repeat("a", 5000))))
	r.ContentLength = -1
	r.Header.Set("Content-Type", "application/json")
	h.ServeHTTP(httptest.NewRecorder(), r)
	if before != s.budget.perRequest || after != 5000 {
		t.Errorf("chunked body: %d bytes of the budget before it is read and %d after, want %d and 5000", before, after, s.budget.perRequest)
	}
	if n := s.budget.inFlight.Load(); n != 0 {
		t.Errorf("budget after the request: %d bytes in flight, want 0", n)
	}
}
