package client_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/annalsdb/annals"
	"github.com/annalsdb/annals/client"
	"github.com/annalsdb/annals/internal/gen/annals/v1/annalsv1connect"
	"github.com/annalsdb/annals/internal/testwait"
	"github.com/annalsdb/annals/memstore"
	"github.com/annalsdb/annals/server"
	"github.com/google/go-cmp/cmp"
)

// collector runs a subscription and keeps what it delivers.
type collector struct {
	cancel context.CancelFunc
	done   chan struct{}
	mu     sync.Mutex
	events []annals.RecordedEvent
	err    error
	change chan struct{} // closed and replaced on every delivery and at the end
}

func collect(t *testing.T, seq func(ctx context.Context) func(func(annals.RecordedEvent, error) bool)) *collector {
	ctx, cancel := context.WithCancel(t.Context())
	c := &collector{cancel: cancel, done: make(chan struct{}), change: make(chan struct{})}
	it := seq(ctx)
	go func() {
		defer close(c.done)
		for e, err := range it {
			c.mu.Lock()
			if err != nil {
				c.err = err
			} else {
				c.events = append(c.events, e)
			}
			close(c.change)
			c.change = make(chan struct{})
			c.mu.Unlock()
		}
	}()
	t.Cleanup(func() { cancel(); <-c.done })
	return c
}

// wait waits until cond holds for what was delivered, and fails the test when it does not
// within [testwait.Timeout] or when the subscription ends with an error.
func (c *collector) wait(t *testing.T, what string, cond func([]annals.RecordedEvent) bool) []annals.RecordedEvent {
	t.Helper()
	var evs []annals.RecordedEvent
	testwait.UntilNil(t, what, func() error {
		c.mu.Lock()
		var err error
		evs, err = slices.Clone(c.events), c.err
		c.mu.Unlock()
		if err != nil {
			t.Fatalf("%s: subscription ended with %v after %d events", what, err, len(evs))
		}
		if cond(evs) {
			return nil
		}
		return fmt.Errorf("%d events delivered: %v", len(evs), ids(evs))
	})
	return evs
}

func (c *collector) waitCount(t *testing.T, what string, n int) []annals.RecordedEvent {
	t.Helper()
	return c.wait(t, what, func(evs []annals.RecordedEvent) bool { return len(evs) >= n })
}

func newEvents(n int, typ string) []annals.Event {
	evs := make([]annals.Event, n)
	for i := range evs {
		evs[i] = annals.Event{ID: annals.NewUUID(), Type: typ, Data: fmt.Appendf(nil, `{"i":%d}`, i)}
	}
	return evs
}

func readAll(t *testing.T, s annals.Store) []annals.RecordedEvent {
	t.Helper()
	var out []annals.RecordedEvent
	for e, err := range s.ReadAll(t.Context(), nil) {
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, e)
	}
	return out
}

// checkDelivered compares what a subscription delivered with the events of the log that it
// should have delivered: all of them, in order, each once.
func checkDelivered(t *testing.T, what string, log []annals.RecordedEvent, got []annals.RecordedEvent, match func(annals.RecordedEvent) bool) {
	t.Helper()
	var want []annals.RecordedEvent
	for _, e := range log {
		if match(e) {
			want = append(want, e)
		}
	}
	if diff := cmp.Diff(ids(want), ids(got)); diff != "" {
		t.Errorf("%s: delivered events differ from the log (-log +delivered, by id):\n%s", what, diff)
	}
}

func ids(evs []annals.RecordedEvent) []string {
	out := make([]string, len(evs))
	for i, e := range evs {
		out[i] = fmt.Sprintf("%d:%s@%d", e.Position, e.Stream, e.Revision)
	}
	return out
}

// startedWatcher wraps a handler and signals on started each time a Subscribe response sends
// its first bytes (the message that says where the subscription starts).
func startedWatcher(h http.Handler, started chan<- struct{}) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == annalsv1connect.EventStoreServiceSubscribeProcedure {
			w = &firstWrite{ResponseWriter: w, started: started}
		}
		h.ServeHTTP(w, r)
	})
}

type firstWrite struct {
	http.ResponseWriter
	started chan<- struct{}
	once    sync.Once
}

func (f *firstWrite) Write(b []byte) (int, error) {
	n, err := f.ResponseWriter.Write(b)
	f.once.Do(func() { f.started <- struct{}{} })
	return n, err
}

func (f *firstWrite) Flush() { f.ResponseWriter.(http.Flusher).Flush() }

func (f *firstWrite) Unwrap() http.ResponseWriter { return f.ResponseWriter }

// gate holds Subscribe requests until open is closed.
func gate(h http.Handler, open <-chan struct{}) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == annalsv1connect.EventStoreServiceSubscribeProcedure {
			select {
			case <-open:
			case <-r.Context().Done():
				return
			}
		}
		h.ServeHTTP(w, r)
	})
}

// TestResumeAfterRestart stops the server under running subscriptions, appends while they are
// cut off (a new server holds their reconnections until the appends are done), and checks
// that each subscription then delivers every event exactly once, in order, including one from
// the end that had delivered nothing before the restart.
func TestResumeAfterRestart(t *testing.T) {
	st := memstore.New(nil)
	t.Cleanup(func() { st.Close() })
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	url := "http://" + addr
	start := func(ln net.Listener, wrap func(http.Handler) http.Handler) (stop func()) {
		srv := server.New(st, nil)
		hs := &http.Server{Handler: wrap(srv.Handler()), Protocols: h2c()}
		go hs.Serve(ln)
		var once sync.Once
		stop = func() {
			once.Do(func() {
				srv.Close()
				hs.Close()
			})
		}
		t.Cleanup(stop)
		return stop
	}
	started := make(chan struct{}, 16)
	stop := start(ln, func(h http.Handler) http.Handler { return startedWatcher(h, started) })

	sub := dial(t, url, nil)
	writer := dial(t, url, nil)
	ctx := t.Context()
	for _, stream := range []string{"s-1", "o-1", "s-2"} {
		if _, err := writer.Append(ctx, stream, annals.NoStream, newEvents(5, "E")...); err != nil {
			t.Fatal(err)
		}
	}
	all := collect(t, func(ctx context.Context) func(func(annals.RecordedEvent, error) bool) {
		return sub.SubscribeAll(ctx, nil)
	})
	one := collect(t, func(ctx context.Context) func(func(annals.RecordedEvent, error) bool) {
		return sub.SubscribeStream(ctx, "s-1", &annals.SubscribeOptions{From: 2})
	})
	cat := collect(t, func(ctx context.Context) func(func(annals.RecordedEvent, error) bool) {
		return sub.SubscribeAll(ctx, &annals.SubscribeOptions{Filter: &annals.Filter{Categories: []string{"s"}}})
	})
	quietAll := collect(t, func(ctx context.Context) func(func(annals.RecordedEvent, error) bool) {
		return sub.SubscribeAll(ctx, &annals.SubscribeOptions{From: annals.End, Filter: &annals.Filter{StreamPrefixes: []string{"q-"}}})
	})
	quietStream := collect(t, func(ctx context.Context) func(func(annals.RecordedEvent, error) bool) {
		return sub.SubscribeStream(ctx, "q-1", &annals.SubscribeOptions{From: annals.End})
	})
	for i := range 5 {
		testwait.Recv(t, fmt.Sprintf("subscription %d of 5 to start", i+1), started)
	}
	all.waitCount(t, "$all before the restart", 15)
	one.waitCount(t, "s-1 from 2 before the restart", 3)
	cat.waitCount(t, "category s before the restart", 10)

	stop()
	ln2, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatalf("listen again on %s: %v", addr, err)
	}
	open := make(chan struct{})
	start(ln2, func(h http.Handler) http.Handler { return gate(h, open) })
	for _, stream := range []string{"s-1", "q-1", "o-1", "s-2", "q-1"} {
		appendRetry(t, writer, stream, newEvents(3, "F"))
	}
	close(open)

	log := readAll(t, st)
	checkDelivered(t, "$all", log, all.waitCount(t, "$all", len(log)), func(annals.RecordedEvent) bool { return true })
	checkDelivered(t, "s-1 from 2", log, one.waitCount(t, "s-1", 6), func(e annals.RecordedEvent) bool { return e.Stream == "s-1" && e.Revision >= 2 })
	checkDelivered(t, "category s", log, cat.waitCount(t, "category s", 16), func(e annals.RecordedEvent) bool { return annals.Category(e.Stream) == "s" })
	checkDelivered(t, "q- from the end", log, quietAll.waitCount(t, "q- from the end", 6), func(e annals.RecordedEvent) bool { return e.Stream == "q-1" })
	checkDelivered(t, "q-1 from the end", log, quietStream.waitCount(t, "q-1 from the end", 6), func(e annals.RecordedEvent) bool { return e.Stream == "q-1" })
}

// appendRetry appends evs to stream after a restart of the server. The new server listens
// already, but the first request may still meet the old server's dead connection before the
// client noticed it closed: the append is retried with the same event IDs, which is safe
// (appends are idempotent and this test has one writer per stream).
func appendRetry(t *testing.T, c *client.Client, stream string, evs []annals.Event) {
	t.Helper()
	for try := 1; ; try++ {
		_, err := c.Append(t.Context(), stream, annals.Any, evs...)
		if err == nil {
			return
		}
		if try == 3 {
			t.Fatalf("append to %s after the restart: %v", stream, err)
		}
	}
}

// TestResumeAfterKill kills a server process (SIGKILL) over a filestore under running
// subscriptions, starts a new one on the same address and directory, and checks that the
// subscriptions deliver every event exactly once, in order.
func TestResumeAfterKill(t *testing.T) {
	if testing.Short() {
		t.Skip("starts server processes")
	}
	dir := t.TempDir()
	p := startProc(t, dir, "")
	c := dial(t, p.url, nil)
	ctx := t.Context()
	for i := range 10 {
		if _, err := c.Append(ctx, fmt.Sprintf("k-%d", i%3), annals.Any, newEvents(4, "E")...); err != nil {
			t.Fatal(err)
		}
	}
	all := collect(t, func(ctx context.Context) func(func(annals.RecordedEvent, error) bool) {
		return c.SubscribeAll(ctx, nil)
	})
	one := collect(t, func(ctx context.Context) func(func(annals.RecordedEvent, error) bool) {
		return c.SubscribeStream(ctx, "k-1", nil)
	})
	all.waitCount(t, "$all before the kill", 40)
	one.waitCount(t, "k-1 before the kill", 12)

	p.kill()
	addr := p.url[len("http://"):]
	startProc(t, dir, addr)
	// The writer retries each append with the same event IDs and expectation until the new
	// server answers: safe, since appends are idempotent.
	for i := range 10 {
		appendRetry(t, c, fmt.Sprintf("k-%d", i%3), newEvents(2, "F"))
	}
	log := readAll(t, c)
	if len(log) != 60 {
		t.Fatalf("log after the restart: %d events, want 60", len(log))
	}
	checkDelivered(t, "$all", log, all.waitCount(t, "$all", 60), func(annals.RecordedEvent) bool { return true })
	checkDelivered(t, "k-1", log, one.waitCount(t, "k-1", 18), func(e annals.RecordedEvent) bool { return e.Stream == "k-1" })
}

// TestReconnectGivesUp checks that a subscription whose server is gone for good ends with an
// error once Options.ReconnectTimeout has passed, instead of waiting forever.
func TestReconnectGivesUp(t *testing.T) {
	st := memstore.New(nil)
	t.Cleanup(func() { st.Close() })
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := server.New(st, nil)
	hs := &http.Server{Handler: srv.Handler(), Protocols: h2c()}
	go hs.Serve(ln)
	c := dial(t, "http://"+ln.Addr().String(), &client.Options{ReconnectTimeout: 300 * time.Millisecond})
	if _, err := c.Append(t.Context(), "g-1", annals.Any, newEvents(1, "E")...); err != nil {
		t.Fatal(err)
	}
	sub := collect(t, func(ctx context.Context) func(func(annals.RecordedEvent, error) bool) {
		return c.SubscribeAll(ctx, nil)
	})
	sub.waitCount(t, "before the stop", 1)
	srv.Close()
	hs.Close()
	testwait.Recv(t, "the subscription to end after its server stopped", sub.done)
	if sub.err == nil || errors.Is(sub.err, context.Canceled) {
		t.Errorf("subscription ended with %v, want the error of its failed reconnection", sub.err)
	}
}
