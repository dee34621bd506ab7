package ingest

import (
	"sync/atomic"
	"testing"
	"time"

	"github.com/annalsdb/annals"
	"github.com/annalsdb/annals/internal/bustest"
	"github.com/annalsdb/annals/internal/replicatest"
	"github.com/annalsdb/annals/internal/testwait"
	"github.com/annalsdb/annals/natsbus"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// publishNATS publishes msgs to the stream ORDERS (created when missing), without
// Nats-Msg-Id so that JetStream keeps copies, and records the last sequence in w.
func publishNATS(t *testing.T, n *bustest.NATS, w *workload, msgs []sent) {
	t.Helper()
	nc, err := nats.Connect(n.URL())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	ctx := testwait.Context(t)
	if _, err := js.CreateOrUpdateStream(ctx, jetstream.StreamConfig{Name: "ORDERS", Subjects: []string{"orders.>"}}); err != nil {
		t.Fatal(err)
	}
	for _, m := range msgs {
		msg := &nats.Msg{Subject: "orders." + string(m.msg.Key), Header: nats.Header{}, Data: m.msg.Value}
		for _, h := range m.msg.Headers {
			msg.Header.Set(h.Key, string(h.Value))
		}
		ack, err := js.PublishMsg(ctx, msg)
		if err != nil {
			t.Fatal(err)
		}
		w.last["nats:ORDERS"] = ack.Sequence
	}
}

func natsSource(t *testing.T, n *bustest.NATS) *natsbus.Source {
	t.Helper()
	s, err := natsbus.OpenSource(testwait.Context(t), natsbus.SourceOptions{URL: n.URL(), Stream: "ORDERS"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// TestNATS is TestKafka on a JetStream stream.
func TestNATS(t *testing.T) {
	eachStore(t, func(t *testing.T, store annals.Store) {
		rng := replicatest.Seed(t)
		n := bustest.StartNATS(t)
		var w workload
		publishNATS(t, n, &w, generate(rng, &w, 3, 300, 0.1))
		first := newIngest(t, store, natsSource(t, n), Options{Batch: 50, Policy: fastRetries})
		stop := run(t, first)
		testwait.Until(t, "the ingest appends every message", func() bool { return w.caughtUp(first) })
		w.check(t, store)

		// No copies while the ingest restarts (see TestKafka).
		more := generate(rng, &w, 3, 600, 0)
		mid := first.Status().Appended + uint64(100+rng.IntN(400))
		publishNATS(t, n, &w, more)
		testwait.Until(t, "the ingest appends more", func() bool { return first.Status().Appended >= mid })
		if err := stop(); err != nil {
			t.Fatal(err)
		}
		second := newIngest(t, store, natsSource(t, n), Options{Batch: 50, Policy: fastRetries})
		stop = run(t, second)
		testwait.Until(t, "the new ingest appends the rest", func() bool { return w.caughtUp(second) })
		if err := stop(); err != nil {
			t.Fatal(err)
		}
		w.check(t, store)
		t.Logf("appended %d, then %d after the restart", first.Status().Appended, second.Status().Appended)
		if got, want := first.Status().Appended+second.Status().Appended, uint64(300+600); got != want {
			t.Errorf("appended %d events, want %d", got, want)
		}
	})
}

// TestNATSOutage is TestKafkaOutage on a JetStream stream.
func TestNATSOutage(t *testing.T) {
	eachStore(t, func(t *testing.T, store annals.Store) {
		rng := replicatest.Seed(t)
		n := bustest.StartNATS(t)
		var w workload
		publishNATS(t, n, &w, generate(rng, &w, 3, 500, 0.05))
		in := newIngest(t, store, natsSource(t, n), Options{Batch: 20, Policy: fastRetries})
		stop := run(t, in)
		testwait.Until(t, "the ingest appends some", func() bool { return in.Status().Appended >= 200 })
		// A connection of the test's own sees the outage: it lasts until that connection has
		// failed to reconnect a few times, as the ingest's does meanwhile.
		var failedReconnects atomic.Int64
		watcher, err := nats.Connect(n.URL(), nats.MaxReconnects(-1), nats.ReconnectWait(20*time.Millisecond),
			nats.ReconnectErrHandler(func(*nats.Conn, error) { failedReconnects.Add(1) }))
		if err != nil {
			t.Fatal(err)
		}
		defer watcher.Close()
		n.Stop()
		at := in.Status().Appended
		testwait.Until(t, "reconnections to fail during the outage", func() bool { return failedReconnects.Load() >= 3 })
		n.Start()
		publishNATS(t, n, &w, generate(rng, &w, 3, 500, 0.05))
		testwait.Until(t, "the ingest appends every message", func() bool { return w.caughtUp(in) })
		if err := stop(); err != nil {
			t.Fatal(err)
		}
		w.check(t, store)
		t.Logf("the outage began after %d events", at)
		if st := in.Status(); st.Appended != 1000 {
			t.Errorf("appended %d events, want 1000 (%+v)", st.Appended, st)
		}
	})
}
