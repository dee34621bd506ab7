package main

import (
	"context"
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/annalsdb/annals"
	"github.com/annalsdb/annals/internal/bustest"
	"github.com/annalsdb/annals/internal/testwait"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/twmb/franz-go/pkg/kgo"
)

// natsCount returns the messages of the JetStream stream name at url, 0 while it does not
// exist or the server does not answer.
func natsCount(url, name string) uint64 {
	nc, err := nats.Connect(url, nats.Timeout(2*time.Second), nats.MaxReconnects(0))
	if err != nil {
		return 0
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		return 0
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	s, err := js.Stream(ctx, name)
	if err != nil {
		return 0
	}
	info, err := s.Info(ctx)
	if err != nil {
		return 0
	}
	return info.State.Msgs
}

// appendEvents appends n events to e's store (a data directory no Run holds now): event i to
// stream order-(i%streams), type OrderNoted, data {"i":i}. It returns the ids by stream.
func appendEvents(t *testing.T, e *env, from, n, streams int) map[string][]annals.UUID {
	t.Helper()
	ids := map[string][]annals.UUID{}
	e.withStore(func(s annals.Store) {
		for i := from; i < from+n; i++ {
			stream := fmt.Sprintf("order-%d", i%streams)
			ev := annals.Event{ID: annals.NewUUID(), Type: "OrderNoted", Data: []byte(`{"i":` + strconv.Itoa(i) + `}`)}
			if _, err := s.Append(context.Background(), stream, annals.Any, ev); err != nil {
				t.Fatal(err)
			}
			ids[stream] = append(ids[stream], ev.ID)
		}
	})
	return ids
}

// runInBackground runs the command line args in e until the returned stop is called; stop
// returns the result.
func runInBackground(t *testing.T, e *env, stderr *syncBuffer, args ...string) (stop func() result) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan result, 1)
	go func() {
		var stdout syncBuffer
		done <- e.runTo(ctx, &stdout, stderr, "", args...)
	}()
	t.Cleanup(func() {
		cancel()
		<-done
	})
	var r *result
	return func() result {
		if r == nil {
			cancel()
			res := <-done
			done <- res // for the cleanup
			r = &res
		}
		return *r
	}
}

// TestRelayCommandNATS: annals relay on a data directory publishes every user event to an
// in-process JetStream, each stream's events in order on its subject, with the annals headers
// and Nats-Msg-Id = the event id; it creates the stream EVENTS (events.>); Ctrl-C ends it with
// exit status 0, and a second run goes on from the checkpoint.
func TestRelayCommandNATS(t *testing.T) {
	n := bustest.StartNATS(t)
	e := newEnv(t)
	want := appendEvents(t, e, 0, 30, 3)
	var stderr syncBuffer
	stop := runInBackground(t, e, &stderr, "relay", "--name", "to-nats", "--nats", n.URL())
	testwait.Until(t, "30 messages in EVENTS", func() bool { return natsCount(n.URL(), "EVENTS") >= 30 })
	if r := stop(); r.err != nil {
		t.Fatalf("relay: %s\n%s", r.line, stderr.String())
	}
	if !strings.Contains(stderr.String(), "relay running") {
		t.Errorf("the log does not say the relay runs:\n%s", stderr.String())
	}
	msgs := bustest.NATSMessages(t, n.URL(), "EVENTS")
	got := map[string][]annals.UUID{}
	for _, m := range msgs {
		stream := m.Header.Get("annals-stream")
		if m.Subject != "events.order."+stream {
			t.Errorf("subject %q for stream %q, want events.order.%s", m.Subject, stream, stream)
		}
		id, err := annals.ParseUUID(m.Header.Get("Nats-Msg-Id"))
		if err != nil || m.Header.Get("annals-id") != id.String() {
			t.Errorf("message %d: Nats-Msg-Id %q, annals-id %q", m.Sequence, m.Header.Get("Nats-Msg-Id"), m.Header.Get("annals-id"))
		}
		got[stream] = append(got[stream], id)
	}
	for stream, ids := range want {
		if !slices.Equal(got[stream], ids) {
			t.Errorf("stream %s: published %v, want %v", stream, got[stream], ids)
		}
	}

	// A second run publishes only the new events.
	appendEvents(t, e, 30, 6, 3)
	stop = runInBackground(t, e, &stderr, "relay", "--name", "to-nats", "--nats", n.URL())
	testwait.Until(t, "36 messages in EVENTS", func() bool { return natsCount(n.URL(), "EVENTS") >= 36 })
	if r := stop(); r.err != nil {
		t.Fatalf("relay: %s", r.line)
	}
	if c := natsCount(n.URL(), "EVENTS"); c != 36 {
		t.Errorf("%d messages in EVENTS, want 36", c)
	}
}

// TestRelayCommandKafka: annals relay publishes to an in-process Kafka, topic {category}, key
// the stream id, in the CloudEvents binary format when asked; a config file gives the
// settings.
func TestRelayCommandKafka(t *testing.T) {
	k := bustest.StartKafka(t, nil)
	e := newEnv(t)
	want := appendEvents(t, e, 0, 20, 4)
	conf := t.TempDir() + "/relay.yaml"
	writeFile(t, conf, fmt.Sprintf("name: to-kafka\nkafka: [%s]\nformat: cloudevents-binary\ncategory: [order]\n", k.Addr()))
	var stderr syncBuffer
	stop := runInBackground(t, e, &stderr, "relay", "--config", conf, "--source", "urn:test")
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	testwait.Until(t, "the relay to have published 20 events", func() bool {
		return strings.Contains(stderr.String(), "relay running") && kafkaCount(ctx, k, "order") >= 20
	})
	if r := stop(); r.err != nil {
		t.Fatalf("relay: %s\n%s", r.line, stderr.String())
	}
	got := map[string][]annals.UUID{}
	for _, r := range k.ReadAll(ctx, t, "order") {
		h := map[string]string{}
		for _, x := range r.Headers {
			h[x.Key] = string(x.Value)
		}
		if h["ce_subject"] != string(r.Key) || h["ce_source"] != "urn:test" || h["ce_type"] != "OrderNoted" {
			t.Errorf("record %s/%d: key %q, headers %v", r.Topic, r.Offset, r.Key, h)
		}
		id, err := annals.ParseUUID(h["ce_id"])
		if err != nil {
			t.Fatalf("record without a ce_id: %v", h)
		}
		got[string(r.Key)] = append(got[string(r.Key)], id)
	}
	for stream, ids := range want {
		if !slices.Equal(got[stream], ids) {
			t.Errorf("stream %s: published %v, want %v", stream, got[stream], ids)
		}
	}
}

// TestRelayBrokerDown: a relay whose NATS server does not answer stops at once with one line
// that says what to check, exit status 1.
func TestRelayBrokerDown(t *testing.T) {
	e := newEnv(t)
	appendEvents(t, e, 0, 1, 1)
	r := e.run(context.Background(), "", "relay", "--name", "r", "--nats", "nats://127.0.0.1:1")
	if r.code != 1 || !strings.Contains(r.line, "is NATS running at nats://127.0.0.1:1") {
		t.Errorf("relay to nowhere: exit %d, %q; want exit 1 and a hint", r.code, r.line)
	}
}

// kafkaCount returns the records of topic in k, read from the start for at most a second;
// 0 when the topic does not exist yet.
func kafkaCount(ctx context.Context, k *bustest.Kafka, topic string) int {
	c, err := kgo.NewClient(kgo.SeedBrokers(k.Addr()), kgo.ConsumeTopics(topic), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	if err != nil {
		return 0
	}
	defer c.Close()
	n := 0
	for {
		pctx, cancel := context.WithTimeout(ctx, time.Second)
		fs := c.PollFetches(pctx)
		cancel()
		got := fs.NumRecords()
		n += got
		if got == 0 {
			return n
		}
	}
}

// writeFile writes s to path.
func writeFile(t *testing.T, path, s string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(s), 0o600); err != nil {
		t.Fatal(err)
	}
}
