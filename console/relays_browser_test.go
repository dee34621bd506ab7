package console_test

import (
	"context"
	"errors"
	"strconv"
	"sync"
	"testing"

	"github.com/chromedp/chromedp"

	"github.com/annalsdb/annals"
	"github.com/annalsdb/annals/bridge"
	"github.com/annalsdb/annals/internal/bustest"
	"github.com/annalsdb/annals/natsbus"
	"github.com/annalsdb/annals/relay"
	"github.com/annalsdb/annals/server"
)

// TestConsoleRelays: the Relays view lists the relay the server runs, to an in-process
// JetStream, with its state, target and figures: the published count rises as events are
// appended, and the lag comes back to 0.
func TestConsoleRelays(t *testing.T) {
	ctx := browser(t)
	dir := artifacts(t)
	n := bustest.StartNATS(t)
	var mu sync.Mutex
	var r *relay.Relay
	s := newSite(t, &server.Options{Bridges: func() server.BridgeStatuses {
		mu.Lock()
		defer mu.Unlock()
		if r == nil {
			return server.BridgeStatuses{}
		}
		return server.BridgeStatuses{Relays: []relay.Status{r.Status()}}
	}}, nil)

	pub, err := natsbus.OpenPublisher(t.Context(), natsbus.PublisherOptions{URL: n.URL(), Stream: natsbus.StreamOptions{Name: "EVENTS", Subjects: []string{"events.>"}}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pub.Close(context.Background()) })
	subject, err := bridge.ParseTemplate(natsbus.DefaultSubject)
	if err != nil {
		t.Fatal(err)
	}
	rel, err := relay.New(s.store, pub, &relay.Options{Name: "feed", Encoder: bridge.Encoder{Subject: subject, Bus: bridge.NATS}})
	if err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	r = rel
	mu.Unlock()
	rctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- rel.Run(rctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil && !errors.Is(err, context.Canceled) {
			t.Errorf("relay: %v", err)
		}
	})

	for i := range 12 {
		ev := annals.Event{Type: "OrderPlaced", Data: []byte(`{"i":` + strconv.Itoa(i) + `}`)}
		if _, err := s.store.Append(t.Context(), "order-"+strconv.Itoa(i%3), annals.Any, ev); err != nil {
			t.Fatal(err)
		}
	}
	row := `#relays-table tr[data-name="feed"]`
	run(t, ctx, "open the Relays view",
		chromedp.Navigate(s.url+"/#/relays"),
		chromedp.WaitVisible(chromedp.CSS(row)))
	waitJS(t, ctx, "the relay to show 12 events published and no lag", `(() => {
		const row = document.querySelector('`+row+`');
		return row && row.querySelector("td.published").textContent === "12" && row.querySelector("td.lag-events").textContent === "0";
	})()`)
	wantContains(t, "state", text(t, ctx, row+" td.bridge-state"), "running")
	wantContains(t, "target", text(t, ctx, row+" td.target"), "nats")
	if got := text(t, ctx, row+" td.errors"); got != "0" {
		t.Errorf("errors %q, want 0", got)
	}
	if got := eval[string](t, ctx, `document.querySelector("#nav a.active").dataset.route`); got != "relays" {
		t.Errorf("active nav entry %q, want relays", got)
	}
	wantContains(t, "ingests", text(t, ctx, "#ingests"), "No ingest.")
	screenshot(t, ctx, dir, "relays")

	// More events: the figures follow without a reload.
	for i := range 5 {
		if _, err := s.store.Append(t.Context(), "order-9", annals.Any, annals.Event{Type: "OrderPlaced", Data: []byte(`{"more":` + strconv.Itoa(i) + `}`)}); err != nil {
			t.Fatal(err)
		}
	}
	waitJS(t, ctx, "the relay to show 17 events published", `document.querySelector('`+row+` td.published').textContent === "17"`)
}

// TestConsoleRelaysNone: a server that runs no relay says so, and how to run one.
func TestConsoleRelaysNone(t *testing.T) {
	ctx := browser(t)
	s := newSite(t, nil, nil)
	run(t, ctx, "open the Relays view",
		chromedp.Navigate(s.url+"/#/relays"),
		chromedp.WaitVisible(chromedp.CSS(`#relays p.muted code`)))
	wantContains(t, "message", text(t, ctx, "#relays"), "runs no relay", "relays:", "annals relay")
}
