package client_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"connectrpc.com/connect"
	"github.com/annalsdb/annals"
	"github.com/annalsdb/annals/client"
	"github.com/annalsdb/annals/internal/gen/annals/v1/annalsv1connect"
	"github.com/annalsdb/annals/internal/testwait"
	"github.com/annalsdb/annals/memstore"
	"github.com/annalsdb/annals/server"
)

// TestBatchConcurrentAppends: many goroutines append through one Client, and each gets the
// revision and position its events were recorded at.
func TestBatchConcurrentAppends(t *testing.T) {
	c := openMem(t).(*client.Client)
	const goroutines, each = 64, 20
	type got struct {
		stream string
		res    annals.AppendResult
		id     annals.UUID
	}
	results := make(chan got, goroutines*each)
	var wg sync.WaitGroup
	for g := range goroutines {
		wg.Go(func() {
			for i := range each {
				stream := fmt.Sprintf("s-%d", (g+i)%8)
				ev := annals.Event{ID: annals.NewUUID(), Type: "E"}
				res, err := c.Append(t.Context(), stream, annals.Any, ev)
				if err != nil {
					t.Errorf("append %d of goroutine %d: %v", i, g, err)
					return
				}
				results <- got{stream, res, ev.ID}
			}
		})
	}
	wg.Wait()
	close(results)
	at := make(map[uint64]annals.RecordedEvent)
	for e, err := range c.ReadAll(t.Context(), nil) {
		if err != nil {
			t.Fatal(err)
		}
		at[e.Position] = e
	}
	n := 0
	for r := range results {
		n++
		e, ok := at[r.res.Position]
		if !ok || e.ID != r.id || e.Stream != r.stream || e.Revision != r.res.Revision {
			t.Errorf("append of %s to %s answered %+v; the log has there %s of %s at revision %d", r.id, r.stream, r.res, e.ID, e.Stream, e.Revision)
		}
	}
	if n != goroutines*each || len(at) != n {
		t.Errorf("%d appends answered, %d events in the log, want %d", n, len(at), goroutines*each)
	}
}

// TestBatchAppendErrors: errors of single appends sent together map to the store's errors,
// and leave the other appends alone.
func TestBatchAppendErrors(t *testing.T) {
	ctx := t.Context()
	st := memstore.New(&memstore.Options{Limits: annals.Limits{MaxEventSize: 1000}})
	t.Cleanup(func() { st.Close() })
	url, _ := serve(t, st, nil)
	c := dial(t, url, nil)
	for _, s := range []string{"c-1", "t-1"} {
		if _, err := c.Append(ctx, s, annals.NoStream, newEvents(3, "E")...); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := c.Tombstone(ctx, "t-1", annals.Any); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		stream   string
		expected annals.ExpectedRevision
		events   []annals.Event
		check    func(error) bool
	}{
		{"c-1", 0, newEvents(1, "E"), func(err error) bool {
			wev, ok := errors.AsType[*annals.WrongExpectedVersionError](err)
			return ok && wev.Actual == 2 && wev.Stream == "c-1"
		}},
		{"missing-1", annals.StreamExists, newEvents(1, "E"), func(err error) bool { return errors.Is(err, annals.ErrWrongExpectedVersion) }},
		{"t-1", annals.Any, newEvents(1, "E"), func(err error) bool { return errors.Is(err, annals.ErrStreamDeleted) }},
		{"big-1", annals.Any, []annals.Event{{Type: "E", Data: make([]byte, 2000)}}, func(err error) bool { return errors.Is(err, annals.ErrTooLarge) }},
		{"ok-1", annals.NoStream, newEvents(2, "E"), func(err error) bool { return err == nil }},
		{"any-1", annals.Any, newEvents(1, "E"), func(err error) bool { return err == nil }},
	}
	for round := range 5 {
		errs := make([]error, len(cases))
		var wg sync.WaitGroup
		for i, tc := range cases {
			wg.Go(func() {
				stream := tc.stream
				if stream == "ok-1" {
					stream = fmt.Sprint("ok-", round)
				}
				_, errs[i] = c.Append(ctx, stream, tc.expected, tc.events...)
			})
		}
		wg.Wait()
		for i, tc := range cases {
			if !tc.check(errs[i]) {
				t.Errorf("round %d, append to %s: got %v", round, tc.stream, errs[i])
			}
		}
	}
}

// blockingStore holds every append until open is closed (or the append's context ends).
type blockingStore struct {
	annals.Store
	open    chan struct{}
	entered atomic.Int64
}

func (b *blockingStore) Append(ctx context.Context, stream string, expected annals.ExpectedRevision, events ...annals.Event) (annals.AppendResult, error) {
	b.entered.Add(1)
	select {
	case <-b.open:
	case <-ctx.Done():
		return annals.AppendResult{}, ctx.Err()
	}
	return b.Store.Append(ctx, stream, expected, events...)
}

func newBlocking(t *testing.T) *blockingStore {
	st := memstore.New(nil)
	t.Cleanup(func() { st.Close() })
	return &blockingStore{Store: st, open: make(chan struct{})}
}

// TestBatchCancelAndClose: an append whose ctx ends returns at once, and Close fails the
// appends still waiting with ErrClosed.
func TestBatchCancelAndClose(t *testing.T) {
	st := newBlocking(t)
	url, _ := serve(t, st, nil)
	c := dial(t, url, nil)
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 2)
	go func() {
		_, err := c.Append(ctx, "a-1", annals.Any, newEvents(1, "E")...)
		done <- err
	}()
	go func() {
		_, err := c.Append(t.Context(), "a-2", annals.Any, newEvents(1, "E")...)
		done <- err
	}()
	testwait.Until(t, "both appends in the store", func() bool { return st.entered.Load() == 2 })
	cancel()
	if err := testwait.Recv(t, "the canceled append", done); !errors.Is(err, context.Canceled) {
		t.Errorf("canceled append: got %v, want context.Canceled", err)
	}
	c.Close()
	if err := testwait.Recv(t, "the append at Close", done); !errors.Is(err, annals.ErrClosed) {
		t.Errorf("append at Close: got %v, want ErrClosed", err)
	}
	if _, err := c.Append(t.Context(), "a-3", annals.Any, newEvents(1, "E")...); !errors.Is(err, annals.ErrClosed) {
		t.Errorf("append after Close: got %v, want ErrClosed", err)
	}
}

// countBatch counts the BatchAppend requests to h; with refuse, it answers them Unimplemented
// as a server from before BatchAppend does.
func countBatch(h http.Handler, n *atomic.Int64, refuse bool) http.Handler {
	unimplemented := connect.NewError(connect.CodeUnimplemented, errors.New("unknown method"))
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == annalsv1connect.EventStoreServiceBatchAppendProcedure {
			n.Add(1)
			if refuse {
				connect.NewErrorWriter().Write(w, r, unimplemented)
				return
			}
		}
		h.ServeHTTP(w, r)
	})
}

// serveWrapped serves a memstore through wrap around the server's handler.
func serveWrapped(t *testing.T, wrap func(http.Handler) http.Handler) string {
	st := memstore.New(nil)
	t.Cleanup(func() { st.Close() })
	srv := server.New(st, nil)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	hs := &http.Server{Handler: wrap(srv.Handler()), Protocols: h2c()}
	go hs.Serve(ln)
	t.Cleanup(func() {
		srv.Close()
		hs.Close()
	})
	return "http://" + ln.Addr().String()
}

// TestBatchFallback: a server that answers BatchAppend with Unimplemented gets unary appends,
// every one of many made at once (those that come while the stream fails too), and is asked
// once; with Options.UnaryAppends the client never asks.
func TestBatchFallback(t *testing.T) {
	for _, tc := range []struct {
		name  string
		opts  *client.Options
		asked int64
	}{{"old server", nil, 1}, {"UnaryAppends", &client.Options{UnaryAppends: true}, 0}} {
		t.Run(tc.name, func(t *testing.T) {
			var n atomic.Int64
			url := serveWrapped(t, func(h http.Handler) http.Handler { return countBatch(h, &n, true) })
			c := dial(t, url, tc.opts)
			const goroutines, each = 32, 5
			var wg sync.WaitGroup
			for i := range goroutines {
				wg.Go(func() {
					for j := range each {
						if _, err := c.Append(t.Context(), fmt.Sprint("f-", i), annals.Any, newEvents(1, "E")...); err != nil {
							t.Errorf("append %d to f-%d: %v", j, i, err)
						}
					}
				})
			}
			wg.Wait()
			if got := n.Load(); got != tc.asked {
				t.Errorf("BatchAppend requests: %d, want %d", got, tc.asked)
			}
			var count int
			for _, err := range c.ReadAll(t.Context(), nil) {
				if err != nil {
					t.Fatal(err)
				}
				count++
			}
			if count != goroutines*each {
				t.Errorf("%d events in the log, want %d", count, goroutines*each)
			}
		})
	}
}

// TestBatchServerCloseAndRestart: a server closing answers the appends in its store before it
// ends the stream; a server that goes away fails the appends in flight with a retryable
// error; and the next Append, on a new server at the same address, opens a new stream.
func TestBatchServerCloseAndRestart(t *testing.T) {
	st := newBlocking(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	start := func(ln net.Listener) (*server.Server, *http.Server) {
		srv := server.New(st, nil)
		hs := &http.Server{Handler: srv.Handler(), Protocols: h2c()}
		go hs.Serve(ln)
		t.Cleanup(func() {
			srv.Close()
			hs.Close()
		})
		return srv, hs
	}
	srv, hs := start(ln)
	c := dial(t, "http://"+addr, nil)
	ctx := t.Context()
	done := make(chan error, 1)
	go func() {
		_, err := c.Append(ctx, "a-1", annals.NoStream, newEvents(1, "E")...)
		done <- err
	}()
	testwait.Until(t, "the append in the store", func() bool { return st.entered.Load() == 1 })
	closed := make(chan struct{})
	go func() {
		srv.Close()
		close(closed)
	}()
	close(st.open)
	if err := testwait.Recv(t, "the append in flight at Close", done); err != nil {
		t.Errorf("append in flight at Close: %v, want it answered", err)
	}
	testwait.Recv(t, "Close", closed)
	hs.Close()

	ln2, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatalf("listen again on %s: %v", addr, err)
	}
	start(ln2)
	appendRetry(t, c, "a-2", newEvents(1, "E"))
	if _, err := c.Append(ctx, "a-1", 0, newEvents(1, "E")...); err != nil {
		t.Errorf("append after the restart: %v", err)
	}
}

// TestBatchServerGone: appends in flight when the connection drops fail with an error that is
// not one of the store's (their outcome is unknown), and the next Append works again.
func TestBatchServerGone(t *testing.T) {
	st := newBlocking(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	srv := server.New(st, nil)
	hs := &http.Server{Handler: srv.Handler(), Protocols: h2c()}
	go hs.Serve(ln)
	c := dial(t, "http://"+addr, nil)
	done := make(chan error, 1)
	go func() {
		_, err := c.Append(t.Context(), "a-1", annals.NoStream, newEvents(1, "E")...)
		done <- err
	}()
	testwait.Until(t, "the append in the store", func() bool { return st.entered.Load() == 1 })
	hs.Close()
	srv.Close()
	err = testwait.Recv(t, "the append in flight", done)
	if code := connect.CodeOf(err); err == nil || (code != connect.CodeUnavailable && code != connect.CodeCanceled && code != connect.CodeUnknown && code != connect.CodeInternal) || errors.Is(err, annals.ErrWrongExpectedVersion) {
		t.Errorf("append in flight when the server went away: %v, want a transport error", err)
	}
	if !strings.HasPrefix(err.Error(), "annals client: ") {
		t.Errorf("error %q is not the client's", err)
	}
	close(st.open)
	ln2, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatalf("listen again on %s: %v", addr, err)
	}
	srv2 := server.New(st, nil)
	hs2 := &http.Server{Handler: srv2.Handler(), Protocols: h2c()}
	go hs2.Serve(ln2)
	t.Cleanup(func() {
		srv2.Close()
		hs2.Close()
	})
	appendRetry(t, c, "a-2", newEvents(1, "E"))
}
