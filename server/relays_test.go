package server

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/annalsdb/annals/ingest"
	"github.com/annalsdb/annals/memstore"
	"github.com/annalsdb/annals/relay"
)

// TestRelaysRoute: GET /v1/relays lists the statuses of Options.Bridges by name, says whether
// the server has any, refuses query parameters, and is OpRead for the authorizer; the
// metrics read the same statuses at each scrape.
func TestRelaysRoute(t *testing.T) {
	store := memstore.New(nil)
	defer store.Close()
	published := uint64(7)
	bridges := func() BridgeStatuses {
		return BridgeStatuses{
			Relays: []relay.Status{
				{Name: "zeta", State: "standing-by", Holder: "other"},
				{Name: "alpha", State: "running", Checkpoint: 40, Acked: 42, Head: 50, Lag: 8, LagSeconds: 1.5, Published: published, Errors: 2, InFlight: 3},
			},
			Ingests: []ingest.Status{{Name: "in", State: "running", Appended: 11, Duplicates: 4, Errors: 1}},
		}
	}
	var denied bool
	var seen []Access
	srv := New(store, &Options{Bridges: bridges, Authorize: func(_ context.Context, a Access) error {
		seen = append(seen, a)
		if denied {
			return fmt.Errorf("%w: no", ErrPermissionDenied)
		}
		return nil
	}})
	defer srv.Close()
	m := NewMetrics(nil)
	m.Watch(srv)
	hs := httptest.NewServer(srv.Handler())
	defer hs.Close()

	get := func(path string) (int, string) {
		t.Helper()
		res, err := http.Get(hs.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		defer res.Body.Close()
		b, _ := io.ReadAll(res.Body)
		return res.StatusCode, string(b)
	}
	code, body := get("/v1/relays")
	if code != 200 {
		t.Fatalf("GET /v1/relays: %d %s", code, body)
	}
	var list struct {
		Configured bool
		Relays     []map[string]any
		Ingests    []map[string]any
	}
	if err := json.Unmarshal([]byte(body), &list); err != nil {
		t.Fatal(err)
	}
	if !list.Configured || len(list.Relays) != 2 || list.Relays[0]["name"] != "alpha" || list.Relays[1]["name"] != "zeta" {
		t.Errorf("relays %s, want alpha then zeta", body)
	}
	if list.Relays[0]["published"] != 7.0 || list.Relays[0]["lagSeconds"] != 1.5 || list.Relays[0]["state"] != "running" {
		t.Errorf("relay alpha %v", list.Relays[0])
	}
	if len(list.Ingests) != 1 || list.Ingests[0]["appended"] != 11.0 {
		t.Errorf("ingests %v", list.Ingests)
	}
	if len(seen) != 1 || seen[0].Op != OpRead || seen[0].Procedure != relaysRoute || seen[0].Stream != "" {
		t.Errorf("authorized %+v, want one OpRead of %s", seen, relaysRoute)
	}
	if code, body := get("/v1/relays?x=1"); code != 400 {
		t.Errorf("GET /v1/relays?x=1: %d %s, want 400", code, body)
	}
	denied = true
	if code, _ := get("/v1/relays"); code != 403 {
		t.Errorf("GET /v1/relays refused: %d, want 403", code)
	}

	published = 9
	out := scrape(t, m)
	for _, want := range []string{
		`annals_relay_checkpoint_position{name="alpha"} 40`,
		`annals_relay_head_position{name="alpha"} 50`,
		`annals_relay_lag_events{name="alpha"} 8`,
		`annals_relay_lag_seconds{name="alpha"} 1.5`,
		`annals_relay_published_total{name="alpha"} 9`,
		`annals_relay_errors_total{name="alpha"} 2`,
		`annals_relay_in_flight{name="alpha"} 3`,
		`annals_relay_running{name="alpha"} 1`,
		`annals_relay_running{name="zeta"} 0`,
		`annals_ingest_appended_total{name="in"} 11`,
		`annals_ingest_duplicates_total{name="in"} 4`,
		`annals_ingest_errors_total{name="in"} 1`,
		`annals_ingest_running{name="in"} 1`,
	} {
		if !strings.Contains(out, want+"\n") {
			t.Errorf("/metrics lacks %s", want)
		}
	}

	// A server without relays says so, and its metrics have none.
	bare := New(store, nil)
	defer bare.Close()
	bm := NewMetrics(nil)
	bm.Watch(bare)
	w := httptest.NewRecorder()
	bare.Handler().ServeHTTP(w, httptest.NewRequest("GET", "/v1/relays", nil))
	if got := strings.TrimSpace(w.Body.String()); got != `{"configured":false,"relays":[],"ingests":[]}` {
		t.Errorf("GET /v1/relays without bridges: %s", got)
	}
	if strings.Contains(scrape(t, bm), "annals_relay_") {
		t.Error("metrics of relays on a server without any")
	}
}
