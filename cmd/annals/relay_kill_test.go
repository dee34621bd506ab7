package main

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/annalsdb/annals"
	"github.com/annalsdb/annals/internal/bustest"
	"github.com/annalsdb/annals/internal/testwait"
	"github.com/annalsdb/annals/kafkabus"
	"github.com/twmb/franz-go/pkg/kgo"
)

// bridgeProc is an "annals relay" or "annals ingest" process.
type bridgeProc struct {
	cmd  *exec.Cmd
	logs *syncBuffer
	done chan struct{} // closed when the process has exited; err is then its Wait error
	err  error
}

// startBridgeProc starts the annals binary with args (against a server: --server is in args),
// its stderr kept in logs. The process is killed at the end of the test if it still runs.
func startBridgeProc(t *testing.T, args ...string) *bridgeProc {
	t.Helper()
	cmd := exec.Command(annalsBinary(t), args...)
	cmd.Env = cleanEnv()
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	p := &bridgeProc{cmd: cmd, logs: &syncBuffer{}, done: make(chan struct{})}
	go func() {
		sc := bufio.NewScanner(stderr)
		sc.Buffer(make([]byte, 1<<16), 1<<20)
		for sc.Scan() {
			p.logs.Write([]byte(sc.Text() + "\n"))
		}
		io.Copy(io.Discard, stderr)
		p.err = cmd.Wait()
		close(p.done)
	}()
	t.Cleanup(func() {
		select {
		case <-p.done:
		default:
			p.cmd.Process.Kill()
			<-p.done
		}
	})
	return p
}

// running reports whether the process logged that it works (it holds its lease).
func (p *bridgeProc) running(kind string) bool {
	return strings.Contains(p.logs.String(), kind+" running")
}

// kill9 sends SIGKILL and waits for the process to end.
func (p *bridgeProc) kill9(t *testing.T) {
	t.Helper()
	if err := p.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	<-p.done
}

// stop sends SIGTERM and waits for a clean exit.
func (p *bridgeProc) stop(t *testing.T) {
	t.Helper()
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case <-p.done:
	case <-time.After(60 * time.Second):
		p.cmd.Process.Kill()
		<-p.done
		t.Fatalf("the process did not stop within 60s of SIGTERM\n%s", p.logs.String())
	}
	if p.err != nil {
		t.Fatalf("after SIGTERM: %v\n%s", p.err, p.logs.String())
	}
}

// TestRelayKill is the realistic deployment under crashes: "annals serve" on a data directory,
// two "annals relay --server" processes (one to an in-process JetStream, one to an in-process
// Kafka) while a writer appends continuously; each relay is killed with SIGKILL at random
// points (seeded, printed) and started again. At the end every event is on each broker, each
// stream's events in append order, and nothing is stored twice in effect: exactly once in the
// JetStream stream (Nats-Msg-Id), exactly once in Kafka after kafkabus.Dedup.
func TestRelayKill(t *testing.T) {
	seed := uint64(time.Now().UnixNano())
	if s := testSeed(); s != 0 {
		seed = s
	}
	t.Logf("seed %d (ANNALS_TEST_SEED=%d replays it)", seed, seed)
	rng := rand.New(rand.NewPCG(seed, seed))

	nt := bustest.StartNATS(t)
	kf := bustest.StartKafka(t, nil)
	srv := startServer(t, filepath.Join(t.TempDir(), "data"), nil)
	c := dialServer(t, srv.url, "", nil)

	const (
		streams = 8
		events  = 1500
		kills   = 5
	)
	// The writer appends events one at a time, recording each stream's ids in order.
	var (
		mu      sync.Mutex
		want    = map[string][]annals.UUID{}
		written int
	)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	writerDone := make(chan error, 1)
	go func() {
		began := time.Now()
		for i := range events {
			// Paced (500 events/s) so that the workload lasts across the kills.
			testwait.Pace(ctx, began, int64(i), 500)
			stream := fmt.Sprintf("order-%d", i%streams)
			ev := annals.Event{ID: annals.NewUUID(), Type: "OrderNoted", Data: []byte(`{"i":` + strconv.Itoa(i) + `}`)}
			if _, err := c.Append(ctx, stream, annals.Any, ev); err != nil {
				writerDone <- err
				return
			}
			mu.Lock()
			want[stream] = append(want[stream], ev.ID)
			written++
			mu.Unlock()
		}
		writerDone <- nil
	}()

	relayArgs := map[string][]string{
		"nats":  {"--server", srv.url, "relay", "--name", "kill-nats", "--nats", nt.URL(), "--lease-ttl", "300ms", "--checkpoint-interval", "20ms"},
		"kafka": {"--server", srv.url, "relay", "--name", "kill-kafka", "--kafka", kf.Addr(), "--lease-ttl", "300ms", "--checkpoint-interval", "20ms"},
	}
	// Each relay is killed kills times, each time at a random point of the writer's work (when
	// it has written a number of events drawn at random), and started again.
	killAt := map[string][]int{}
	for _, bus := range []string{"nats", "kafka"} {
		killAt[bus] = randomPoints(rng, kills, events)
	}
	writtenAtLeast := func(n int) func() bool {
		return func() bool {
			mu.Lock()
			defer mu.Unlock()
			return written >= n
		}
	}
	var wg sync.WaitGroup
	final := map[string]*bridgeProc{}
	var finalMu sync.Mutex
	for _, bus := range []string{"nats", "kafka"} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i, at := range killAt[bus] {
				p := startBridgeProc(t, relayArgs[bus]...)
				if !testwait.For(t, func() bool { return p.running("relay") }) {
					t.Errorf("%s relay %d did not run:\n%s", bus, i, p.logs.String())
					return
				}
				if !testwait.For(t, writtenAtLeast(at)) {
					t.Errorf("%s relay %d: the writer did not reach %d events", bus, i, at)
					return
				}
				p.kill9(t)
			}
			p := startBridgeProc(t, relayArgs[bus]...)
			finalMu.Lock()
			final[bus] = p
			finalMu.Unlock()
		}()
	}
	wg.Wait()
	if t.Failed() {
		t.FailNow()
	}
	if err := <-writerDone; err != nil {
		t.Fatalf("writer: %v", err)
	}
	t.Logf("%d events written; relays killed %d times each", written, kills)

	// JetStream: exactly once, in order per stream.
	testwait.Until(t, "every event in the JetStream stream", func() bool { return natsCount(nt.URL(), "EVENTS") >= events })
	got := map[string][]annals.UUID{}
	for _, m := range bustest.NATSMessages(t, nt.URL(), "EVENTS") {
		id, err := annals.ParseUUID(m.Header.Get("annals-id"))
		if err != nil {
			t.Fatalf("message %d: annals-id: %v", m.Sequence, err)
		}
		got[m.Header.Get("annals-stream")] = append(got[m.Header.Get("annals-stream")], id)
	}
	checkStreams(t, "nats", got, want)

	// Kafka: at least once; after kafkabus.Dedup, exactly once and in order per stream.
	rctx, rcancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer rcancel()
	testwait.Until(t, "every event in Kafka", func() bool { return kafkaDistinct(rctx, kf, "order") >= events })
	dedup := kafkabus.NewDedup(0)
	got = map[string][]annals.UUID{}
	total, dups := 0, 0
	for _, r := range kf.ReadAll(rctx, t, "order") {
		total++
		if dedup.Duplicate(r) {
			dups++
			continue
		}
		m := kafkabus.Message(r)
		got[string(r.Key)] = append(got[string(r.Key)], m.ID)
	}
	t.Logf("kafka: %d records, %d duplicates dropped", total, dups)
	checkStreams(t, "kafka", got, want)

	for _, p := range final {
		p.stop(t)
	}
}

// checkStreams reports the streams whose ids on a broker differ from the appended ones.
func checkStreams(t *testing.T, bus string, got, want map[string][]annals.UUID) {
	t.Helper()
	for stream, ids := range want {
		g := got[stream]
		if !slices.Equal(g, ids) {
			t.Errorf("%s: stream %s has %d events on the broker, want %d in append order (first difference at %d)", bus, stream, len(g), len(ids), firstDiff(g, ids))
		}
	}
	for stream := range got {
		if _, ok := want[stream]; !ok {
			t.Errorf("%s: events of stream %s, which nobody wrote", bus, stream)
		}
	}
}

func firstDiff(a, b []annals.UUID) int {
	for i := range min(len(a), len(b)) {
		if a[i] != b[i] {
			return i
		}
	}
	return min(len(a), len(b))
}

// kafkaDistinct returns the distinct event ids in topic.
func kafkaDistinct(ctx context.Context, k *bustest.Kafka, topic string) int {
	c, err := kgo.NewClient(kgo.SeedBrokers(k.Addr()), kgo.ConsumeTopics(topic), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	if err != nil {
		return 0
	}
	defer c.Close()
	dedup := kafkabus.NewDedup(0)
	n := 0
	for {
		pctx, cancel := context.WithTimeout(ctx, time.Second)
		fs := c.PollFetches(pctx)
		cancel()
		if fs.NumRecords() == 0 {
			return n
		}
		fs.EachRecord(func(r *kgo.Record) {
			if !dedup.Duplicate(r) {
				n++
			}
		})
	}
}

// randomPoints returns n points drawn at random in [1, max), in increasing order.
func randomPoints(rng *rand.Rand, n, max int) []int {
	points := make([]int, n)
	for i := range points {
		points[i] = 1 + rng.IntN(max-1)
	}
	slices.Sort(points)
	return points
}

// testSeed returns $ANNALS_TEST_SEED, or 0.
func testSeed() uint64 {
	s, _ := strconv.ParseUint(os.Getenv("ANNALS_TEST_SEED"), 10, 64)
	return s
}

// TestRelayReplicas: two "annals relay --server" processes of one name: one publishes, the
// other stands by naming it; when the first is killed, the second takes over from the
// checkpoint, and every event is in the JetStream stream once.
func TestRelayReplicas(t *testing.T) {
	nt := bustest.StartNATS(t)
	srv := startServer(t, filepath.Join(t.TempDir(), "data"), nil)
	c := dialServer(t, srv.url, "", nil)
	appendN := func(from, n int) {
		for i := from; i < from+n; i++ {
			if _, err := c.Append(context.Background(), fmt.Sprintf("order-%d", i%3), annals.Any, annals.Event{Type: "OrderNoted", Data: []byte(`{"i":` + strconv.Itoa(i) + `}`)}); err != nil {
				t.Fatal(err)
			}
		}
	}
	appendN(0, 50)
	args := func(holder string) []string {
		return []string{"--server", srv.url, "relay", "--name", "pair", "--nats", nt.URL(), "--holder", holder, "--lease-ttl", "500ms"}
	}
	a := startBridgeProc(t, args("replica-a")...)
	testwait.Until(t, "replica a to publish", func() bool { return a.running("relay") })
	b := startBridgeProc(t, args("replica-b")...)
	testwait.Until(t, "replica b to stand by for a", func() bool {
		return strings.Contains(b.logs.String(), "standing by") && strings.Contains(b.logs.String(), "other=replica-a")
	})
	testwait.Until(t, "50 messages", func() bool { return natsCount(nt.URL(), "EVENTS") >= 50 })
	a.kill9(t)
	appendN(50, 50)
	testwait.Until(t, "replica b to take over", func() bool { return b.running("relay") })
	testwait.Until(t, "100 messages", func() bool { return natsCount(nt.URL(), "EVENTS") >= 100 })
	b.stop(t)
	if n := natsCount(nt.URL(), "EVENTS"); n != 100 {
		t.Errorf("%d messages, want 100", n)
	}
}

// TestRelayBrokerOutage: a running "annals relay --server" outlives an outage of its NATS
// server in the middle of a stream of appends (it retries; only a broker out of reach at
// start-up stops it), and when NATS is back every event is in the JetStream stream, once, in
// order per stream.
func TestRelayBrokerOutage(t *testing.T) {
	nt := bustest.StartNATS(t)
	srv := startServer(t, filepath.Join(t.TempDir(), "data"), nil)
	c := dialServer(t, srv.url, "", nil)
	p := startBridgeProc(t, "--server", srv.url, "relay", "--name", "outage", "--nats", nt.URL(), "--checkpoint-interval", "20ms")
	testwait.Until(t, "the relay to run", func() bool { return p.running("relay") })

	const events = 600
	want := map[string][]annals.UUID{}
	for i := range events {
		if i == events/3 {
			nt.Stop()
		}
		if i == 2*events/3 {
			// The outage lasts until the relay has met it with the events appended since.
			testwait.Until(t, "the relay to retry", func() bool { return strings.Contains(p.logs.String(), "retrying") })
			nt.Start()
		}
		stream := fmt.Sprintf("order-%d", i%4)
		ev := annals.Event{ID: annals.NewUUID(), Type: "OrderNoted", Data: []byte(`{"i":` + strconv.Itoa(i) + `}`)}
		if _, err := c.Append(context.Background(), stream, annals.Any, ev); err != nil {
			t.Fatal(err)
		}
		want[stream] = append(want[stream], ev.ID)
	}
	testwait.UntilNil(t, "every event in the JetStream stream", func() error {
		select {
		case <-p.done:
			return fmt.Errorf("the relay ended: %v\n%s", p.err, p.logs.String())
		default:
		}
		if n := natsCount(nt.URL(), "EVENTS"); n < events {
			return fmt.Errorf("%d of %d", n, events)
		}
		return nil
	})
	got := map[string][]annals.UUID{}
	for _, m := range bustest.NATSMessages(t, nt.URL(), "EVENTS") {
		id, err := annals.ParseUUID(m.Header.Get("annals-id"))
		if err != nil {
			t.Fatal(err)
		}
		got[m.Header.Get("annals-stream")] = append(got[m.Header.Get("annals-stream")], id)
	}
	checkStreams(t, "nats", got, want)
	p.stop(t)
}
