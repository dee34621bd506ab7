package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/annalsdb/annals"
	"github.com/annalsdb/annals/internal/bustest"
	"github.com/annalsdb/annals/internal/testwait"
	"github.com/annalsdb/annals/server"
)

// TestServeRelays: annals serve runs the relay and the ingest of its config file over its own
// store: the events appended through the API reach JetStream, the records of a Kafka topic
// become events, GET /v1/relays lists both with their figures, /metrics has them by name, and
// the server stops cleanly.
func TestServeRelays(t *testing.T) {
	n := bustest.StartNATS(t)
	k := bustest.StartKafka(t, nil)
	produceKafka(t, k, "payments", 0, 9, 3)
	dir := t.TempDir()
	conf := filepath.Join(dir, "annals.yaml")
	writeFile(t, conf, fmt.Sprintf(`listen: 127.0.0.1:0
log-format: json
relays:
  - name: feed
    nats: %s
    subject: "shop.{category}"
    nats-stream: SHOP
    checkpoint-interval: 50ms
ingests:
  - name: pay
    kafka: %s
    topic: [payments]
    stream: "payment-{key}"
    type: PaymentReceived
`, n.URL(), k.Addr()))
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	url, errc, stderr := serveInProcess(t, ctx, filepath.Join(dir, "data"), conf)
	c := dialServer(t, url, "", nil)
	const events = 25
	for i := range events {
		ev := annals.Event{Type: "OrderNoted", Data: []byte(`{"i":` + strconv.Itoa(i) + `}`)}
		if _, err := c.Append(ctx, fmt.Sprintf("order-%d", i%5), annals.Any, ev); err != nil {
			t.Fatal(err)
		}
	}
	testwait.Until(t, "the events in SHOP", func() bool { return natsCount(n.URL(), "SHOP") >= events })
	var list server.RelayList
	testwait.UntilNil(t, "GET /v1/relays to show the relay checkpointed", func() error {
		list = server.RelayList{}
		if err := getJSON(url+"/v1/relays", &list); err != nil {
			return err
		}
		if !list.Configured || len(list.Relays) != 1 {
			return fmt.Errorf("relays %+v", list)
		}
		r := list.Relays[0]
		if r.Name != "feed" || r.State != "running" || r.Published < events || r.Checkpoint < events || r.Lag != 0 {
			return fmt.Errorf("relay %+v", r)
		}
		return nil
	})
	testwait.UntilNil(t, "GET /v1/relays to show the ingest", func() error {
		list = server.RelayList{}
		if err := getJSON(url+"/v1/relays", &list); err != nil {
			return err
		}
		if len(list.Ingests) != 1 || list.Ingests[0].Name != "pay" || list.Ingests[0].Appended != 9 || list.Ingests[0].State != "running" {
			return fmt.Errorf("ingests %+v", list.Ingests)
		}
		return nil
	})
	if n, _ := countEvents(t, c, "payment"); n != 9 {
		t.Errorf("%d payment events, want 9", n)
	}
	if want := "nats " + n.URL() + " stream SHOP subject shop.{category}"; list.Relays[0].Target != want {
		t.Errorf("target %q, want %q", list.Relays[0].Target, want)
	}
	if !strings.Contains(list.Relays[0].Target, "nats") {
		t.Errorf("target %q, want the NATS server named", list.Relays[0].Target)
	}
	res, err := http.Get(url + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(res.Body)
	res.Body.Close()
	for _, re := range []string{
		`annals_relay_published_total\{name="feed"\} (\d+)`,
		`annals_relay_checkpoint_position\{name="feed"\} (\d+)`,
		`annals_relay_lag_events\{name="feed"\} 0`,
		`annals_relay_running\{name="feed"\} 1`,
		`annals_ingest_appended_total\{name="pay"\} 9`,
	} {
		m := regexp.MustCompile(re).FindSubmatch(body)
		if m == nil {
			t.Errorf("/metrics has no %s", re)
			continue
		}
		if len(m) > 1 {
			if v, _ := strconv.Atoi(string(m[1])); v < events {
				t.Errorf("/metrics: %s", m[0])
			}
		}
	}
	cancel()
	if err := <-errc; err != nil {
		t.Fatalf("serve: %v\n%s", err, stderr.String())
	}
	if !strings.Contains(stderr.String(), "stopping the relays and ingests") {
		t.Errorf("the log does not say the relays stop:\n%s", stderr.String())
	}
}

// getJSON decodes the JSON answer of GET url into out.
func getJSON(url string, out any) error {
	res, err := http.Get(url)
	if err != nil {
		return err
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	if err != nil {
		return err
	}
	if res.StatusCode != 200 {
		return fmt.Errorf("GET %s: %d %s", url, res.StatusCode, b)
	}
	return json.Unmarshal(b, out)
}

// TestServeRelayBrokerLater: a server whose relay's NATS is down still starts; GET /v1/relays
// shows the relay connecting with the error and what to check; once NATS is up the relay
// connects by itself and publishes what was appended meanwhile.
func TestServeRelayBrokerLater(t *testing.T) {
	n := bustest.StartNATS(t)
	n.Stop()
	dir := t.TempDir()
	conf := filepath.Join(dir, "annals.yaml")
	writeFile(t, conf, fmt.Sprintf("listen: 127.0.0.1:0\nlog-format: json\nrelays:\n  - {name: later, nats: %q}\n", n.URL()))
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	url, errc, _ := serveInProcess(t, ctx, filepath.Join(dir, "data"), conf)
	c := dialServer(t, url, "", nil)
	for i := range 5 {
		if _, err := c.Append(ctx, "order-1", annals.Any, annals.Event{Type: "OrderNoted", Data: []byte(`{"i":` + strconv.Itoa(i) + `}`)}); err != nil {
			t.Fatal(err)
		}
	}
	testwait.UntilNil(t, "the relay to show it cannot connect", func() error {
		var list server.RelayList
		if err := getJSON(url+"/v1/relays", &list); err != nil {
			return err
		}
		if len(list.Relays) != 1 || list.Relays[0].State != "connecting" || !strings.Contains(list.Relays[0].LastError, "is NATS running at "+n.URL()) {
			return fmt.Errorf("relays %+v", list.Relays)
		}
		return nil
	})
	n.Start()
	testwait.Until(t, "the 5 events in EVENTS", func() bool { return natsCount(n.URL(), "EVENTS") >= 5 })
	testwait.UntilNil(t, "the relay to run", func() error {
		var list server.RelayList
		if err := getJSON(url+"/v1/relays", &list); err != nil {
			return err
		}
		if len(list.Relays) != 1 || list.Relays[0].State != "running" || list.Relays[0].Published < 5 {
			return fmt.Errorf("relays %+v", list.Relays)
		}
		return nil
	})
	cancel()
	if err := <-errc; err != nil {
		t.Fatalf("serve: %v", err)
	}
}

// serveInProcess runs "annals serve" on data with the config file conf (which must set
// log-format: json) in this process until ctx ends, and returns its URL once it serves, where
// Run's error arrives, and its log. It fails the test when serve ends before it serves.
func serveInProcess(t *testing.T, ctx context.Context, data, conf string) (string, <-chan error, *syncBuffer) {
	t.Helper()
	stderr := &syncBuffer{}
	m := &Main{Args: []string{"--data", data, "serve", "--config", conf}, Stderr: stderr, Getenv: func(string) string { return "" }}
	errc := make(chan error, 1)
	go func() { errc <- m.Run(ctx) }()
	var url string
	testwait.Until(t, "the server to serve", func() bool {
		for l := range strings.Lines(stderr.String()) {
			var rec struct{ Msg, URL string }
			if json.Unmarshal([]byte(l), &rec) == nil && rec.Msg == servingLogMessage {
				url = rec.URL
				return true
			}
		}
		select {
		case err := <-errc:
			t.Fatalf("serve ended: %v\n%s", err, stderr.String())
		default:
		}
		return false
	})
	return url, errc, stderr
}
