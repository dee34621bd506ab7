package bustest

import (
	"context"
	"errors"
	"fmt"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// MachineNATSURL is where [MachineJetStream] looks for the machine's own NATS server.
const MachineNATSURL = "nats://127.0.0.1:4222"

// NATSOptions configure [StartNATSOptions]. The zero value is the server's defaults.
type NATSOptions struct {
	// MaxPayload is the largest message the server accepts; 0 means the server's default
	// (1 MiB).
	MaxPayload int32
}

// NATS is an in-process NATS server with JetStream, its store in a directory of the test.
// It listens on a fixed port of 127.0.0.1 chosen when it starts, so that [NATS.Stop] and
// [NATS.Start] make a broker outage that clients reconnect across, with the streams kept.
// Its methods are safe for concurrent use.
type NATS struct {
	t    testing.TB
	opts server.Options
	mu   struct {
		sync.Mutex
		server *server.Server
	}
}

// StartNATS starts a NATS server with JetStream and the default options; see
// [StartNATSOptions].
func StartNATS(t testing.TB) *NATS {
	t.Helper()
	return StartNATSOptions(t, NATSOptions{})
}

// StartNATSOptions starts a NATS server with JetStream, its store in t.TempDir(), on a free
// port of 127.0.0.1 that it keeps across [NATS.Stop] and [NATS.Start]. The test's cleanup
// stops it. It fails the test when the server does not start.
func StartNATSOptions(t testing.TB, o NATSOptions) *NATS {
	t.Helper()
	port, err := freePort()
	if err != nil {
		t.Fatalf("bustest: free port for NATS: %v", err)
	}
	n := &NATS{t: t, opts: server.Options{
		Host:       "127.0.0.1",
		Port:       port,
		JetStream:  true,
		StoreDir:   t.TempDir(),
		MaxPayload: o.MaxPayload,
		NoLog:      true,
		NoSigs:     true,
	}}
	n.Start()
	t.Cleanup(n.Stop)
	return n
}

// freePort returns a port of 127.0.0.1 that nothing listens on now.
func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// URL returns the server's client URL; it stays the same across Stop and Start.
func (n *NATS) URL() string {
	return fmt.Sprintf("nats://%s:%d", n.opts.Host, n.opts.Port)
}

// Start starts the server again after [NATS.Stop], on the same port and store directory: the
// streams and their messages are kept. It does nothing when the server runs, and fails the
// test when it cannot start.
func (n *NATS) Start() {
	n.t.Helper()
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.mu.server != nil {
		return
	}
	opts := n.opts // NewServer keeps and adjusts its options.
	s, err := server.NewServer(&opts)
	if err != nil {
		n.t.Fatalf("bustest: new NATS server: %v", err)
	}
	s.Start()
	if !s.ReadyForConnections(30 * time.Second) {
		s.Shutdown()
		n.t.Fatalf("bustest: NATS server on %s not ready", n.URL())
	}
	n.mu.server = s
}

// Stop shuts the server down and waits until it has, as a broker outage: clients see the
// connection drop and reconnect when [NATS.Start] starts it again. It does nothing when the
// server is stopped.
func (n *NATS) Stop() {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.mu.server == nil {
		return
	}
	n.mu.server.Shutdown()
	n.mu.server.WaitForShutdown()
	n.mu.server = nil
}

// NATSMsg is a message of a JetStream stream as [NATSMessages] reads it.
type NATSMsg struct {
	Sequence uint64
	Subject  string
	Header   nats.Header
	Data     []byte
}

// NATSMessages returns every message of the JetStream stream of the server at url, in stream
// order, as the stream holds them when it is called. It fails the test on any error.
func NATSMessages(t testing.TB, url, stream string) []NATSMsg {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	nc, err := nats.Connect(url)
	if err != nil {
		t.Fatalf("bustest: connect to %s: %v", url, err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatalf("bustest: jetstream: %v", err)
	}
	s, err := js.Stream(ctx, stream)
	if err != nil {
		t.Fatalf("bustest: stream %s: %v", stream, err)
	}
	info, err := s.Info(ctx)
	if err != nil {
		t.Fatalf("bustest: stream %s info: %v", stream, err)
	}
	if info.State.Msgs == 0 {
		return nil
	}
	c, err := s.OrderedConsumer(ctx, jetstream.OrderedConsumerConfig{})
	if err != nil {
		t.Fatalf("bustest: stream %s consumer: %v", stream, err)
	}
	var out []NATSMsg
	for uint64(len(out)) < info.State.Msgs {
		batch, err := c.Fetch(int(min(info.State.Msgs-uint64(len(out)), 1000)), jetstream.FetchMaxWait(5*time.Second))
		if err != nil {
			t.Fatalf("bustest: stream %s fetch: %v", stream, err)
		}
		n := 0
		for m := range batch.Messages() {
			md, err := m.Metadata()
			if err != nil {
				t.Fatalf("bustest: stream %s metadata: %v", stream, err)
			}
			out = append(out, NATSMsg{Sequence: md.Sequence.Stream, Subject: m.Subject(), Header: m.Headers(), Data: m.Data()})
			n++
		}
		if err := batch.Error(); err != nil && !errors.Is(err, nats.ErrTimeout) {
			t.Fatalf("bustest: stream %s fetch: %v", stream, err)
		}
		if n == 0 {
			t.Fatalf("bustest: stream %s: read %d of %d messages, then none came", stream, len(out), info.State.Msgs)
		}
	}
	return out
}

// MachineJetStream returns the URL of the machine's own NATS server ([MachineNATSURL]) when it
// answers and has JetStream, and skips the test otherwise. That server may be older than the
// in-process one: tests against it use features every 2.9 server has.
func MachineJetStream(t testing.TB) string {
	t.Helper()
	nc, err := nats.Connect(MachineNATSURL, nats.Timeout(time.Second), nats.MaxReconnects(0))
	if err != nil {
		t.Skipf("bustest: no NATS server at %s (%v): start one with `nats-server -js` to run this test", MachineNATSURL, err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Skipf("bustest: NATS at %s: jetstream: %v", MachineNATSURL, err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	if _, err := js.AccountInfo(ctx); err != nil {
		t.Skipf("bustest: NATS server at %s has no JetStream (%v): start it with -js to run this test", MachineNATSURL, err)
	}
	return MachineNATSURL
}
