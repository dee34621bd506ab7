package main

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"path/filepath"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/annalsdb/annals"
	"github.com/annalsdb/annals/internal/bustest"
	"github.com/annalsdb/annals/internal/testwait"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/twmb/franz-go/pkg/kgo"
)

// TestIngestKill: "annals serve" and two "annals ingest --server" processes, one from an
// in-process Kafka topic and one from an in-process JetStream stream, while producers publish
// continuously; each ingest is killed with SIGKILL at random points (seeded, printed) and
// started again. At the end every message is an event, once, and each stream's events are in
// the order their messages were published.
func TestIngestKill(t *testing.T) {
	seed := uint64(time.Now().UnixNano())
	if s := testSeed(); s != 0 {
		seed = s
	}
	t.Logf("seed %d (ANNALS_TEST_SEED=%d replays it)", seed, seed)
	rng := rand.New(rand.NewPCG(seed, seed^0x5eed))

	nt := bustest.StartNATS(t)
	kf := bustest.StartKafka(t, nil)
	srv := startServer(t, filepath.Join(t.TempDir(), "data"), nil)
	c := dialServer(t, srv.url, "", nil)

	const (
		messages = 1200
		keys     = 6
		kills    = 4
	)
	nc, err := nats.Connect(nt.URL())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	if _, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: "FEED", Subjects: []string{"feed.>"}}); err != nil {
		t.Fatal(err)
	}
	kc, err := kgo.NewClient(kgo.SeedBrokers(kf.Addr()), kgo.DefaultProduceTopic("feed"), kgo.AllowAutoTopicCreation())
	if err != nil {
		t.Fatal(err)
	}
	defer kc.Close()

	// The producers publish message i with key (Kafka) or subject (NATS) k-(i%keys) and value
	// {"i":i}; the NATS ones with Nats-Msg-Id, the Kafka ones with no id (the ingest derives
	// it from the offset).
	produced := make(chan error, 2)
	var sent [2]atomic.Int64 // by producer: 0 Kafka, 1 NATS
	began := time.Now()
	go func() {
		for i := range messages {
			// Paced (500 messages/s) so that the workload lasts across the kills.
			testwait.Pace(ctx, began, int64(i), 500)
			r := &kgo.Record{Key: []byte(fmt.Sprintf("k-%d", i%keys)), Value: []byte(`{"i":` + strconv.Itoa(i) + `}`)}
			if err := kc.ProduceSync(ctx, r).FirstErr(); err != nil {
				produced <- fmt.Errorf("kafka: %w", err)
				return
			}
			sent[0].Add(1)
		}
		produced <- nil
	}()
	go func() {
		for i := range messages {
			testwait.Pace(ctx, began, int64(i), 500)
			m := nats.NewMsg(fmt.Sprintf("feed.k-%d", i%keys))
			m.Header.Set(jetstream.MsgIDHeader, annals.NewUUID().String())
			m.Data = []byte(`{"i":` + strconv.Itoa(i) + `}`)
			if _, err := js.PublishMsg(ctx, m); err != nil {
				produced <- fmt.Errorf("nats: %w", err)
				return
			}
			sent[1].Add(1)
		}
		produced <- nil
	}()

	args := map[string][]string{
		"kafka": {"--server", srv.url, "ingest", "--name", "kill-kafka", "--kafka", kf.Addr(), "--topic", "feed",
			"--stream", "kfeed-{key}", "--type", "Fed", "--batch", "50", "--lease-ttl", "300ms"},
		"nats": {"--server", srv.url, "ingest", "--name", "kill-nats", "--nats", nt.URL(), "--nats-stream", "FEED",
			"--stream", "nfeed-{subject}", "--type", "Fed", "--batch", "50", "--lease-ttl", "300ms"},
	}
	// Each ingest is killed kills times, each time at a random point of its producer's work
	// (when it has sent a number of messages drawn at random), and started again.
	killAt := map[string][]int{}
	producer := map[string]*atomic.Int64{"kafka": &sent[0], "nats": &sent[1]}
	for _, bus := range []string{"kafka", "nats"} {
		killAt[bus] = randomPoints(rng, kills, messages)
	}
	var wg sync.WaitGroup
	var mu sync.Mutex
	final := map[string]*bridgeProc{}
	for _, bus := range []string{"kafka", "nats"} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i, at := range killAt[bus] {
				p := startBridgeProc(t, args[bus]...)
				if !testwait.For(t, func() bool { return p.running("ingest") }) {
					t.Errorf("%s ingest %d did not run:\n%s", bus, i, p.logs.String())
					return
				}
				if !testwait.For(t, func() bool { return producer[bus].Load() >= int64(at) }) {
					t.Errorf("%s ingest %d: the producer did not reach %d messages", bus, i, at)
					return
				}
				p.kill9(t)
			}
			p := startBridgeProc(t, args[bus]...)
			mu.Lock()
			final[bus] = p
			mu.Unlock()
		}()
	}
	wg.Wait()
	if t.Failed() {
		t.FailNow()
	}
	for range 2 {
		if err := <-produced; err != nil {
			t.Fatal(err)
		}
	}
	for _, category := range []string{"kfeed", "nfeed"} {
		bus := map[string]string{"kfeed": "kafka", "nfeed": "nats"}[category]
		testwait.UntilNil(t, "every message of "+category+" appended", func() error {
			if n, _ := countEvents(t, c, category); n < messages {
				return fmt.Errorf("%d of %d; the last %s ingest's log:\n%s", n, messages, bus, final[bus].logs.String())
			}
			return nil
		})
		n, distinct := countEvents(t, c, category)
		if n != messages || distinct != messages {
			t.Errorf("%s: %d events, %d distinct ids; want %d of each", category, n, distinct, messages)
		}
	}
	// Each stream holds its key's messages in publish order.
	for _, stream := range []string{"kfeed-k-0", "kfeed-k-5", "nfeed-feed.k-0", "nfeed-feed.k-5"} {
		last := -1
		count := 0
		for ev, err := range c.ReadStream(ctx, stream, nil) {
			if err != nil {
				t.Fatalf("%s: %v", stream, err)
			}
			var v struct{ I int }
			if err := json.Unmarshal(ev.Data, &v); err != nil {
				t.Fatalf("%s@%d: %v", stream, ev.Revision, err)
			}
			if v.I <= last || v.I%keys != last%keys && last >= 0 {
				t.Errorf("%s@%d: message %d after %d", stream, ev.Revision, v.I, last)
			}
			last = v.I
			count++
		}
		if count != messages/keys {
			t.Errorf("%s: %d events, want %d", stream, count, messages/keys)
		}
	}
	for _, p := range final {
		p.stop(t)
	}
}
