package main

import (
	"context"
	"fmt"
	"strconv"
	"testing"
	"time"

	"github.com/annalsdb/annals"
	"github.com/annalsdb/annals/internal/bustest"
	"github.com/annalsdb/annals/internal/testwait"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/twmb/franz-go/pkg/kgo"
)

// produceKafka sends n plain JSON records to topic, record i with key "p-(i%keys)" and value
// {"i":i}, and waits for the broker's acks.
func produceKafka(t *testing.T, k *bustest.Kafka, topic string, from, n, keys int) {
	t.Helper()
	c, err := kgo.NewClient(kgo.SeedBrokers(k.Addr()), kgo.DefaultProduceTopic(topic), kgo.AllowAutoTopicCreation())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	var recs []*kgo.Record
	for i := from; i < from+n; i++ {
		recs = append(recs, &kgo.Record{Key: []byte(fmt.Sprintf("p-%d", i%keys)), Value: []byte(`{"i":` + strconv.Itoa(i) + `}`)})
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := c.ProduceSync(ctx, recs...).FirstErr(); err != nil {
		t.Fatal(err)
	}
}

// countEvents returns the events of the user streams of store whose category is category,
// and the number of distinct ids among them.
func countEvents(t *testing.T, s annals.Store, category string) (events, distinct int) {
	t.Helper()
	seen := map[annals.UUID]bool{}
	for ev, err := range s.ReadAll(context.Background(), &annals.ReadOptions{Filter: &annals.Filter{Categories: []string{category}}}) {
		if err != nil {
			t.Fatal(err)
		}
		events++
		seen[ev.ID] = true
	}
	return events, len(seen)
}

// TestIngestCommandKafka: annals ingest appends the records of a Kafka topic to the streams
// its template names, with the default type for records that name none; a second run after
// more records appends only those.
func TestIngestCommandKafka(t *testing.T) {
	k := bustest.StartKafka(t, nil)
	e := newSharedEnv(t)
	produceKafka(t, k, "payments", 0, 30, 3)
	args := []string{"ingest", "--name", "pay", "--kafka", k.Addr(), "--topic", "payments", "--stream", "payment-{key}", "--type", "PaymentReceived", "--batch", "7"}
	count := func() (n, distinct int) {
		e.withStore(func(s annals.Store) { n, distinct = countEvents(t, s, "payment") })
		return n, distinct
	}
	var stderr syncBuffer
	stop := runInBackground(t, e, &stderr, args...)
	testwait.Until(t, "30 events appended", func() bool { n, _ := count(); return n >= 30 })
	if r := stop(); r.err != nil {
		t.Fatalf("ingest: %s\n%s", r.line, stderr.String())
	}
	produceKafka(t, k, "payments", 30, 10, 3)
	stop = runInBackground(t, e, &stderr, args...)
	testwait.Until(t, "40 events appended", func() bool { n, _ := count(); return n >= 40 })
	if r := stop(); r.err != nil {
		t.Fatalf("ingest: %s", r.line)
	}
	if n, distinct := count(); n != 40 || distinct != 40 {
		t.Errorf("%d events, %d distinct ids; want 40 and 40", n, distinct)
	}
	e.withStore(func(s annals.Store) {
		var revs []uint64
		for ev, err := range s.ReadStream(context.Background(), "payment-p-1", nil) {
			if err != nil {
				t.Fatal(err)
			}
			if ev.Type != "PaymentReceived" {
				t.Errorf("type %q, want PaymentReceived", ev.Type)
			}
			revs = append(revs, ev.Revision)
		}
		if len(revs) != 13 {
			t.Errorf("payment-p-1 has %d events, want 13", len(revs))
		}
	})
}

// TestIngestCommandNATS: annals ingest appends the messages of a JetStream stream, the
// relay's format among them, each once: a message sent twice under one Nats-Msg-Id (outside
// JetStream's duplicate window, as a relay's late restart would) is appended once.
func TestIngestCommandNATS(t *testing.T) {
	n := bustest.StartNATS(t)
	nc, err := nats.Connect(n.URL())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	// The messages carry their id in annals-id, not in Nats-Msg-Id: the stream keeps every copy,
	// the ingest must drop them.
	if _, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: "PARTNER", Subjects: []string{"partner.>"}}); err != nil {
		t.Fatal(err)
	}
	publish := func(i int, id annals.UUID) {
		t.Helper()
		m := nats.NewMsg(fmt.Sprintf("partner.order.o%d", i%4))
		m.Header.Set("annals-id", id.String())
		m.Header.Set("annals-type", "PartnerOrder")
		m.Header.Set("annals-stream", fmt.Sprintf("partner-%d", i%4))
		m.Data = []byte(`{"i":` + strconv.Itoa(i) + `}`)
		if _, err := js.PublishMsg(ctx, m); err != nil {
			t.Fatal(err)
		}
	}
	ids := make([]annals.UUID, 21)
	for i := range ids {
		ids[i] = annals.NewUUID()
	}
	for i := range 20 {
		publish(i, ids[i])
	}
	for i := range 5 {
		publish(i, ids[i]) // copies of the first five, as a relay's late restart sends them
	}
	publish(20, ids[20]) // after the copies: once it is appended, the copies were read
	if got := natsCount(n.URL(), "PARTNER"); got != 26 {
		t.Fatalf("the stream holds %d messages, want 26 (the copies included)", got)
	}
	e := newSharedEnv(t)
	var stderr syncBuffer
	stop := runInBackground(t, e, &stderr, "ingest", "--name", "partner", "--nats", n.URL(), "--nats-stream", "PARTNER")
	testwait.Until(t, "the last message appended", func() bool {
		found := false
		e.withStore(func(s annals.Store) {
			for ev, err := range s.ReadStream(ctx, "partner-0", &annals.ReadOptions{Backwards: true, From: annals.End, Limit: 1}) {
				found = err == nil && ev.ID == ids[20]
			}
		})
		return found
	})
	if r := stop(); r.err != nil {
		t.Fatalf("ingest: %s\n%s", r.line, stderr.String())
	}
	e.withStore(func(s annals.Store) {
		n, distinct := countEvents(t, s, "partner")
		if n != 21 || distinct != 21 {
			t.Errorf("%d events, %d distinct; want 21 and 21", n, distinct)
		}
		for ev, err := range s.ReadStream(ctx, "partner-1", nil) {
			if err != nil {
				t.Fatal(err)
			}
			if ev.Type != "PartnerOrder" {
				t.Errorf("type %q", ev.Type)
			}
		}
	})
}
