package server_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"iter"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"testing"

	"connectrpc.com/connect"
	"github.com/annalsdb/annals"
	annalsv1 "github.com/annalsdb/annals/internal/gen/annals/v1"
	"github.com/annalsdb/annals/internal/testwait"
	"github.com/annalsdb/annals/memstore"
	"github.com/annalsdb/annals/server"
	"github.com/google/go-cmp/cmp"
)

// getJSON GETs path and decodes its JSON answer into v; it returns the status.
func (f *fixture) getJSON(t *testing.T, path string, v any) int {
	t.Helper()
	res, err := http.Get(f.url + path)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	if err != nil {
		t.Fatal(err)
	}
	if res.StatusCode == http.StatusOK {
		if ct := res.Header.Get("Content-Type"); ct != "application/json" {
			t.Errorf("GET %s: Content-Type %q", path, ct)
		}
		if err := json.Unmarshal(b, v); err != nil {
			t.Fatalf("GET %s: %v in %s", path, err, b)
		}
	}
	return res.StatusCode
}

func (f *fixture) stats(t *testing.T) server.Stats {
	t.Helper()
	var st server.Stats
	if status := f.getJSON(t, "/v1/stats", &st); status != http.StatusOK {
		t.Fatalf("GET /v1/stats: status %d", status)
	}
	return st
}

func sum(s []uint64) (n uint64) {
	for _, v := range s {
		n += v
	}
	return n
}

// TestStatsCounts checks the counters and their per-second series after appends, reads of
// every kind and a subscription, and the subscription's entry.
func TestStatsCounts(t *testing.T) {
	f := newFixture(t, nil, &server.Options{Backend: "memstore", Version: "v9.9.9"})
	rpc := f.rpc()
	for _, n := range []int{1, 2} {
		req := &annalsv1.AppendRequest{Stream: "count-1"}
		for range n {
			req.Events = append(req.Events, &annalsv1.Event{Type: "E"})
		}
		if _, err := rpc.Append(t.Context(), connect.NewRequest(req)); err != nil {
			t.Fatal(err)
		}
	}
	// A failed append counts for nothing.
	if _, err := rpc.Append(t.Context(), connect.NewRequest(&annalsv1.AppendRequest{Stream: "count-1", Expected: &annalsv1.ExpectedRevision{Kind: &annalsv1.ExpectedRevision_NoStream{}}, Events: []*annalsv1.Event{{Type: "E"}}})); connect.CodeOf(err) != connect.CodeAborted {
		t.Fatalf("conflicting append: got %v", err)
	}
	var page server.Page
	if status := f.getJSON(t, "/v1/streams/count-1", &page); status != 200 || len(page.Events) != 3 {
		t.Fatalf("JSON read: status %d, %d events", status, len(page.Events))
	}
	rs, err := rpc.ReadAll(t.Context(), connect.NewRequest(&annalsv1.ReadAllRequest{}))
	if err != nil {
		t.Fatal(err)
	}
	for rs.Receive() {
	}
	if err := rs.Err(); err != nil {
		t.Fatal(err)
	}
	sse := openSSE(t, f.url+"/v1/sse/all?category=count", nil)
	sse.next(t)
	for range 3 {
		sse.nextEvent(t)
	}

	// The server counts a delivery once its write returns, which may be just after the client
	// has the event: wait for the count rather than read it at once.
	var st server.Stats
	testwait.Until(t, "the deliveries counted", func() bool {
		st = f.stats(t)
		return st.Totals.EventsDelivered == 3 && len(st.Subscriptions) == 1 && st.Subscriptions[0].Delivered == 3
	})
	want := server.Counts{Appends: 2, EventsAppended: 3, Reads: 2, EventsRead: 6, EventsDelivered: 3}
	if diff := cmp.Diff(want, st.Totals); diff != "" {
		t.Errorf("totals (-want +got):\n%s", diff)
	}
	if st.Version != "v9.9.9" || st.Backend != "memstore" || st.HeadPosition != 3 || st.StartTime.IsZero() {
		t.Errorf("got version %q, backend %q, head %d, start %v", st.Version, st.Backend, st.HeadPosition, st.StartTime)
	}
	for name, s := range map[string][]uint64{"appends": st.Rates.Appends, "eventsAppended": st.Rates.EventsAppended, "reads": st.Rates.Reads, "eventsRead": st.Rates.EventsRead, "eventsDelivered": st.Rates.EventsDelivered} {
		if len(s) != server.RateWindow {
			t.Errorf("rates.%s: got %d seconds, want %d", name, len(s), server.RateWindow)
		}
	}
	if st.SubscriptionCount != 1 || len(st.Subscriptions) != 1 {
		t.Fatalf("got %d subscriptions, %+v; want 1", st.SubscriptionCount, st.Subscriptions)
	}
	sub := st.Subscriptions[0]
	if sub.Protocol != "sse" || sub.Stream != "$all" || sub.Filter == nil || !slices.Equal(sub.Filter.Categories, []string{"count"}) ||
		sub.From != 0 || sub.Next != 4 || sub.Delivered != 3 || sub.LastPosition != 3 || sub.LagEvents != 0 || sub.Peer == "" {
		t.Errorf("subscription: got %+v", sub)
	}

	// The series count what happened once its second is over.
	testwait.Until(t, "the appends in the per-second series", func() bool {
		r := f.stats(t).Rates
		return sum(r.Appends) == 2 && sum(r.EventsAppended) == 3 && sum(r.Reads) == 2 && sum(r.EventsRead) == 6 && sum(r.EventsDelivered) == 3
	})
}

// gatedStore holds back what its subscriptions deliver until open is closed: its stream
// subscriptions, and the reads bounded by Until with which the server's subscriptions of $all
// catch up from storage before they reach the hub.
type gatedStore struct {
	annals.Store
	open chan struct{}
}

func (g gatedStore) gate(ctx context.Context, seq iter.Seq2[annals.RecordedEvent, error]) iter.Seq2[annals.RecordedEvent, error] {
	return func(yield func(annals.RecordedEvent, error) bool) {
		select {
		case <-g.open:
		case <-ctx.Done():
			yield(annals.RecordedEvent{}, ctx.Err())
			return
		}
		seq(yield)
	}
}

func (g gatedStore) SubscribeStream(ctx context.Context, stream string, opts *annals.SubscribeOptions) iter.Seq2[annals.RecordedEvent, error] {
	return g.gate(ctx, g.Store.SubscribeStream(ctx, stream, opts))
}

func (g gatedStore) ReadAll(ctx context.Context, opts *annals.ReadOptions) iter.Seq2[annals.RecordedEvent, error] {
	if opts != nil && opts.Until != 0 {
		return g.gate(ctx, g.Store.ReadAll(ctx, opts))
	}
	return g.Store.ReadAll(ctx, opts)
}

// TestStatsLag checks the lag of subscriptions that have events to deliver, and that it goes
// to 0 once they are delivered, also for a filtered $all subscription while the log grows
// with events it does not match.
func TestStatsLag(t *testing.T) {
	g := gatedStore{Store: memstore.New(nil), open: make(chan struct{})}
	f := newFixture(t, g, nil)
	mustAppend(t, f.store, "lag-1", 5)
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	sub, err := f.rpc().Subscribe(ctx, connect.NewRequest(&annalsv1.SubscribeRequest{Stream: "lag-1"}))
	if err != nil {
		t.Fatal(err)
	}
	if !sub.Receive() || sub.Msg().GetStarted() == nil {
		t.Fatalf("no started message: %v", sub.Err())
	}
	sse := openSSE(t, f.url+"/v1/sse/all?category=lag", nil)
	sse.next(t)

	byStream := func(st server.Stats) map[string]server.SubscriptionStatus {
		m := map[string]server.SubscriptionStatus{}
		for _, s := range st.Subscriptions {
			m[s.Stream] = s
		}
		return m
	}
	var subs map[string]server.SubscriptionStatus
	testwait.Until(t, "both subscriptions listed", func() bool {
		subs = byStream(f.stats(t))
		return len(subs) == 2
	})
	if s := subs["lag-1"]; s.Protocol != "grpc" || s.Next != 0 || s.LagEvents != 5 || s.LagSeconds < 0 || s.Delivered != 0 {
		t.Errorf("stream subscription held back: got %+v, want lag 5", s)
	}
	if s := subs["$all"]; s.Protocol != "sse" || s.Next != 0 || s.LagEvents != 5 {
		t.Errorf("$all subscription held back: got %+v, want lag 5", s)
	}

	close(g.open)
	for n := 0; n < 5; {
		if !sub.Receive() {
			t.Fatal(sub.Err())
		}
		n += len(sub.Msg().GetEvents().GetEvents())
	}
	for range 5 {
		sse.nextEvent(t)
	}
	mustAppend(t, f.store, "other-1", 3)
	testwait.Until(t, "both subscriptions caught up", func() bool {
		subs := byStream(f.stats(t))
		s, a := subs["lag-1"], subs["$all"]
		return s.Next == 5 && s.Delivered == 5 && s.LagEvents == 0 && s.LastPosition == 5 &&
			a.Next == 6 && a.Delivered == 5 && a.LagEvents == 0 && a.LagSeconds == 0
	})

	cancel()
	testwait.Until(t, "the ended subscription unlisted", func() bool {
		_, ok := byStream(f.stats(t))["lag-1"]
		return !ok
	})
}

// TestProjections checks GET /v1/projections with and without Options.Projections, and that
// its errors go through the table.
func TestProjections(t *testing.T) {
	t.Run("None", func(t *testing.T) {
		f := newFixture(t, nil, nil)
		var got server.Projections
		if status := f.getJSON(t, "/v1/projections", &got); status != 200 || got.Configured || got.Projections == nil || len(got.Projections) != 0 {
			t.Errorf("got %d %+v, want 200, not configured, []", status, got)
		}
	})
	t.Run("Some", func(t *testing.T) {
		want := []server.ProjectionStatus{
			{Name: "cart-view", State: "live", Generation: 1, Position: 10, Head: 10},
			{Name: "notifier", State: "failed", Position: 4, Head: 10, LagEvents: 6, LagSeconds: 1.5, Error: "handler: boom",
				FailedEvent: &server.EventRef{ID: "0190b8c2-0000-7000-8000-000000000000", Stream: "cart-1", Type: "CartOpened", Revision: 0, Position: 5}},
		}
		f := newFixture(t, nil, &server.Options{Projections: func(context.Context) ([]server.ProjectionStatus, error) { return want, nil }})
		var got server.Projections
		if status := f.getJSON(t, "/v1/projections", &got); status != 200 || !got.Configured {
			t.Fatalf("got %d %+v", status, got)
		}
		if diff := cmp.Diff(want, got.Projections); diff != "" {
			t.Errorf("projections (-want +got):\n%s", diff)
		}
	})
	t.Run("Error", func(t *testing.T) {
		f := newFixture(t, nil, &server.Options{Projections: func(context.Context) ([]server.ProjectionStatus, error) {
			return nil, errors.New("checkpoint table gone")
		}})
		res, err := http.Get(f.url + "/v1/projections")
		if err != nil {
			t.Fatal(err)
		}
		defer res.Body.Close()
		var body server.ErrorBody
		if err := json.NewDecoder(res.Body).Decode(&body); err != nil {
			t.Fatal(err)
		}
		if res.StatusCode != 500 || body.Code != "internal" || strings.Contains(body.Message, "checkpoint") {
			t.Errorf("got %d %+v, want 500 internal with a generic message", res.StatusCode, body)
		}
		if !strings.Contains(f.logged(), "checkpoint table gone") {
			t.Errorf("the error is not in the log:\n%s", f.logged())
		}
	})
}

// TestStatusAuthorize checks the Access each new route asks Authorize for, and that a denial
// is answered with its status.
func TestStatusAuthorize(t *testing.T) {
	var mu sync.Mutex
	var seen []server.Access
	f := newFixture(t, nil, &server.Options{Authorize: func(ctx context.Context, a server.Access) error {
		mu.Lock()
		seen = append(seen, a)
		mu.Unlock()
		if a.Op == server.OpAdmin {
			return fmt.Errorf("%w: not an admin", server.ErrPermissionDenied)
		}
		if a.Prefix == "secret-" {
			return server.ErrUnauthenticated
		}
		return nil
	}})
	for _, c := range []struct {
		path   string
		status int
	}{
		{"/v1/stats", http.StatusForbidden},
		{"/v1/projections", http.StatusOK},
		{"/v1/streams?prefix=cart-", http.StatusOK},
		{"/v1/streams?prefix=secret-", http.StatusUnauthorized},
	} {
		var v any
		if got := f.getJSON(t, c.path, &v); got != c.status {
			t.Errorf("GET %s: got status %d, want %d", c.path, got, c.status)
		}
	}
	mu.Lock()
	defer mu.Unlock()
	want := []server.Access{
		{Op: server.OpAdmin, Procedure: "GET /v1/stats"},
		{Op: server.OpRead, Procedure: "GET /v1/projections"},
		{Op: server.OpRead, Procedure: "GET /v1/streams", Prefix: "cart-"},
		{Op: server.OpRead, Procedure: "GET /v1/streams", Prefix: "secret-"},
	}
	if diff := cmp.Diff(want, seen); diff != "" {
		t.Errorf("Authorize saw (-want +got):\n%s", diff)
	}
}

// TestListStreams checks GET /v1/streams: prefixes, paging with next, counts, bad limits.
func TestListStreams(t *testing.T) {
	f := newFixture(t, nil, nil)
	mustAppend(t, f.store, "a-1", 3)
	mustAppend(t, f.store, "a-2", 1)
	mustAppend(t, f.store, "b-1", 2)
	mustAppend(t, f.store, "a/x y", 1)
	list := func(q url.Values) server.StreamList {
		t.Helper()
		var l server.StreamList
		if status := f.getJSON(t, "/v1/streams?"+q.Encode(), &l); status != 200 {
			t.Fatalf("GET /v1/streams?%s: status %d", q.Encode(), status)
		}
		return l
	}
	got := list(nil)
	want := server.StreamList{Streams: []server.StreamEntry{{"a-1", 2, 3}, {"a-2", 0, 1}, {"a/x y", 0, 1}, {"b-1", 1, 2}}}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("all streams (-want +got):\n%s", diff)
	}
	var pages [][]string
	for after := ""; ; {
		l := list(url.Values{"prefix": {"a-"}, "limit": {"1"}, "after": {after}})
		var ids []string
		for _, s := range l.Streams {
			ids = append(ids, s.Stream)
		}
		pages = append(pages, ids)
		if l.Next == "" {
			break
		}
		after = l.Next
	}
	if diff := cmp.Diff([][]string{{"a-1"}, {"a-2"}, nil}, pages); diff != "" {
		t.Errorf("pages of prefix a- (-want +got):\n%s", diff)
	}
	for _, q := range []string{"limit=0", "limit=1001", "limit=x"} {
		var v any
		if status := f.getJSON(t, "/v1/streams?"+q, &v); status != http.StatusBadRequest {
			t.Errorf("GET /v1/streams?%s: got status %d, want 400", q, status)
		}
	}
}
