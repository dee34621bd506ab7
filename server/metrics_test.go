package server

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"connectrpc.com/connect"
	annalsv1 "github.com/annalsdb/annals/internal/gen/annals/v1"
	"github.com/annalsdb/annals/internal/gen/annals/v1/annalsv1connect"
	"github.com/annalsdb/annals/internal/testwait"
	"github.com/annalsdb/annals/memstore"
)

func scrape(t *testing.T, m *Metrics) string {
	t.Helper()
	w := httptest.NewRecorder()
	m.Handler().ServeHTTP(w, httptest.NewRequest("GET", "/metrics", nil))
	return w.Body.String()
}

func TestMetrics(t *testing.T) {
	store := memstore.New(nil)
	defer store.Close()
	dir := t.TempDir()
	m := NewMetrics(&MetricsOptions{DataDir: dir})
	srv := New(store, &Options{Interceptors: []connect.Interceptor{m.Interceptor()}})
	defer srv.Close()
	m.Watch(srv)
	hs := httptest.NewServer(m.Middleware(srv.Handler()))
	defer hs.Close()

	post := func(path, body string) int {
		res, err := http.Post(hs.URL+path, "application/json", strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, res.Body)
		res.Body.Close()
		return res.StatusCode
	}
	post("/annals.v1.EventStoreService/Append", `{"stream":"a-1","events":[{"type":"X","data":"e30="},{"type":"Y","metadata":"e30="}]}`)
	post("/annals.v1.EventStoreService/Append", `{"stream":"a-1","expected":{"noStream":{}},"events":[{"type":"X"}]}`)
	post("/annals.v1.EventStoreService/NoSuchMethod", `{}`)
	post("/annals.v1.EventStoreService/No%20such", `{}`)
	if res, err := http.Get(hs.URL + "/v1/streams/a-1"); err == nil {
		res.Body.Close()
	}
	// The two events of a-1 once more, by ReadStream: four events read.
	rs, err := annalsv1connect.NewEventStoreServiceClient(http.DefaultClient, hs.URL).ReadStream(t.Context(), connect.NewRequest(&annalsv1.ReadStreamRequest{Stream: "a-1"}))
	if err != nil {
		t.Fatal(err)
	}
	for rs.Receive() {
	}
	if err := rs.Close(); err != nil {
		t.Fatal(err)
	}

	// Leases: a takes one, b takes it over once it ran out, c takes another and releases it.
	post("/annals.v1.LeaseService/Acquire", `{"name":"projection/p","holder":"a","ttl":"0.010s"}`)
	testwait.Until(t, "b to take over a's lease", func() bool {
		return post("/annals.v1.LeaseService/Acquire", `{"name":"projection/p","holder":"b","ttl":"60s"}`) == http.StatusOK
	})
	post("/annals.v1.LeaseService/Acquire", `{"name":"projection/p","holder":"b","ttl":"60s"}`) // b again: no new acquisition
	post("/annals.v1.LeaseService/Acquire", `{"name":"relay/r","holder":"c","ttl":"60s"}`)
	ls, err := srv.Leases().Leases(t.Context(), "relay/")
	if err != nil || len(ls) != 1 {
		t.Fatal(ls, err)
	}
	post("/annals.v1.LeaseService/Release", fmt.Sprintf(`{"lease":{"name":"relay/r","holder":"c","token":"%d"}}`, ls[0].Token))
	post("/annals.v1.LeaseService/Acquire", `{"name":"process/q","holder":"c","ttl":"60s"}`)
	if res, err := http.Get(hs.URL + "/v1/leases"); err == nil {
		res.Body.Close()
	}

	// A live SSE subscription of $all, behind the head by nothing.
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, "GET", hs.URL+"/v1/sse/all?from=0", nil)
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	sc := bufio.NewScanner(res.Body)
	for seen := 0; seen < 2 && sc.Scan(); {
		if strings.HasPrefix(sc.Text(), "data: ") {
			seen++
		}
	}

	// The server counts a batch as delivered once it has sent it, which the client may see
	// first.
	var body string
	testwait.Until(t, "the subscription's lag at 0", func() bool {
		body = scrape(t, m)
		return strings.Contains(body, "annals_subscription_lag_events 0") && strings.Contains(body, "annals_subscriptions_attached 1")
	})
	for _, want := range []string{
		`annals_appends_total{code="ok"} 1`,
		`annals_appends_total{code="aborted"} 1`,
		"annals_appended_events_total 2",
		"annals_appended_bytes_total 4",
		"annals_append_duration_seconds_count 2",
		`annals_rpcs_total{code="ok",procedure="/annals.v1.EventStoreService/Append"} 1`,
		`annals_reads_total{api="json",kind="stream"} 1`,
		`annals_reads_total{api="grpc",kind="stream"} 1`,
		"annals_read_events_total 4",
		`annals_http_requests_total{code="200",route="Append"} 1`,
		`annals_http_requests_total{code="409",route="Append"} 1`,
		`annals_http_requests_total{code="404",route="unknown_method"} 2`,
		`annals_http_requests_total{code="200",route="json_stream"} 1`,
		"annals_head_position 2",
		"annals_subscriptions 1",
		"annals_subscription_lag_events 0",
		"annals_subscriptions_attached 1",
		"annals_subscription_fallbacks_total 0",
		"annals_http_in_flight_requests 1",
		"annals_storage_bytes 0",
		"annals_leases 2",
		`annals_lease_holder{holder="b",name="projection/p"} 1`,
		`annals_lease_holder{holder="c",name="process/q"} 1`,
		"annals_lease_acquisitions_total 4",
		"annals_lease_takeovers_total 1",
		`annals_rpcs_total{code="ok",procedure="/annals.v1.LeaseService/Release"} 1`,
		`annals_http_requests_total{code="200",route="lease_Release"} 1`,
		`annals_http_requests_total{code="200",route="leases"} 1`,
		"go_goroutines",
	} {
		if !strings.Contains(body, want) {
			t.Errorf("no %q in the metrics:\n%s", want, body)
		}
	}
}
