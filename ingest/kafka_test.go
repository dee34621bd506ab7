package ingest

import (
	"testing"
	"time"

	"github.com/annalsdb/annals"
	"github.com/annalsdb/annals/internal/bustest"
	"github.com/annalsdb/annals/internal/replicatest"
	"github.com/annalsdb/annals/internal/testwait"
	"github.com/annalsdb/annals/kafkabus"
	"github.com/twmb/franz-go/pkg/kgo"
)

// produceKafka writes msgs to topic, message m to partition m.part, and records the last
// offset of each partition in w.
func produceKafka(t *testing.T, k *bustest.Kafka, topic string, w *workload, msgs []sent) {
	t.Helper()
	c, err := kgo.NewClient(kgo.SeedBrokers(k.Addr()), kgo.RecordPartitioner(kgo.ManualPartitioner()))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	recs := make([]*kgo.Record, len(msgs))
	for i, m := range msgs {
		r := &kgo.Record{Topic: topic, Partition: int32(m.part), Key: m.msg.Key, Value: m.msg.Value}
		for _, h := range m.msg.Headers {
			r.Headers = append(r.Headers, kgo.RecordHeader{Key: h.Key, Value: h.Value})
		}
		recs[i] = r
	}
	if err := c.ProduceSync(t.Context(), recs...).FirstErr(); err != nil {
		t.Fatal(err)
	}
	for _, r := range recs {
		source := kafkabus.SourceName(topic, r.Partition)
		w.last[source] = max(w.last[source], uint64(r.Offset))
	}
}

func kafkaSource(t *testing.T, k *bustest.Kafka) *kafkabus.Source {
	t.Helper()
	s, err := kafkabus.OpenSource(kafkabus.SourceOptions{Brokers: []string{k.Addr()}, Topics: []string{"orders"}, Group: "ingest",
		UnreachableAfter: 200 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// TestKafka ingests a topic with copies under one id at later offsets: each message is
// appended once, in order; then, while more messages come, the ingest is stopped mid-way and
// a new one (a new process: no memory of the ids) finishes the work, appending nothing twice.
func TestKafka(t *testing.T) {
	eachStore(t, func(t *testing.T, store annals.Store) {
		rng := replicatest.Seed(t)
		k := bustest.StartKafka(t, &bustest.KafkaOptions{Partitions: 3, Topics: []string{"orders"}})
		var w workload
		produceKafka(t, k, "orders", &w, generate(rng, &w, 3, 300, 0.1))
		first := newIngest(t, store, kafkaSource(t, k), Options{Batch: 50, Policy: fastRetries})
		stop := run(t, first)
		testwait.Until(t, "the ingest appends every message", func() bool { return w.caughtUp(first) })
		w.check(t, store)

		// Copies are dropped by a memory of the ids, which a new process has not: the messages
		// that come while the ingest restarts have none.
		more := generate(rng, &w, 3, 600, 0)
		mid := first.Status().Appended + uint64(100+rng.IntN(400))
		produceKafka(t, k, "orders", &w, more)
		testwait.Until(t, "the ingest appends more", func() bool { return first.Status().Appended >= mid })
		if err := stop(); err != nil {
			t.Fatal(err)
		}
		second := newIngest(t, store, kafkaSource(t, k), Options{Batch: 50, Policy: fastRetries})
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

// TestKafkaOutage stops the broker while the ingest works and starts it again: nothing is
// lost, nothing is appended twice.
func TestKafkaOutage(t *testing.T) {
	eachStore(t, func(t *testing.T, store annals.Store) {
		rng := replicatest.Seed(t)
		k := bustest.StartKafka(t, &bustest.KafkaOptions{Partitions: 3, Topics: []string{"orders"}})
		var w workload
		produceKafka(t, k, "orders", &w, generate(rng, &w, 3, 500, 0.05))
		in := newIngest(t, store, kafkaSource(t, k), Options{Batch: 20, Policy: fastRetries})
		stop := run(t, in)
		testwait.Until(t, "the ingest appends some", func() bool { return in.Status().Appended >= 200 })
		errs := in.Status().Errors
		k.Stop()
		at := in.Status().Appended
		// The outage lasts until the ingest has failed on it (its source reports the broker
		// out of reach after UnreachableAfter) and is retrying.
		testwait.Until(t, "the ingest to fail on the outage", func() bool { return in.Status().Errors > errs })
		k.Start()
		produceKafka(t, k, "orders", &w, generate(rng, &w, 3, 500, 0.05))
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
