package kafkabus_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/annalsdb/annals"
	"github.com/annalsdb/annals/bridge"
	"github.com/annalsdb/annals/internal/bustest"
	"github.com/annalsdb/annals/kafkabus"
	"github.com/twmb/franz-go/pkg/kgo"
)

// produce writes n records to each of the partitions of topic with a plain producer, values
// "<partition>-<i>" from first on.
func produce(t *testing.T, k *bustest.Kafka, topic string, partitions int32, first, n int) {
	t.Helper()
	c, err := kgo.NewClient(kgo.SeedBrokers(k.Addr()), kgo.RecordPartitioner(kgo.ManualPartitioner()))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	var recs []*kgo.Record
	for p := range partitions {
		for i := first; i < first+n; i++ {
			recs = append(recs, &kgo.Record{Topic: topic, Partition: p, Value: fmt.Appendf(nil, "%d-%d", p, i)})
		}
	}
	if err := c.ProduceSync(t.Context(), recs...).FirstErr(); err != nil {
		t.Fatal(err)
	}
}

func openSource(t *testing.T, k *bustest.Kafka, topic string) *kafkabus.Source {
	t.Helper()
	s, err := kafkabus.OpenSource(kafkabus.SourceOptions{Brokers: []string{k.Addr()}, Topics: []string{topic}, Group: "g"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// fetchN fetches until n messages came, in batches of at most max, checking that each source's
// offsets increase by one from where want says, and returns them.
func fetchN(t *testing.T, s *kafkabus.Source, n, max int, next map[string]uint64) []bridge.Incoming {
	t.Helper()
	var all []bridge.Incoming
	for len(all) < n {
		batch, err := s.Fetch(t.Context(), max)
		if err != nil {
			t.Fatal(err)
		}
		if len(batch) > max {
			t.Fatalf("Fetch(%d) returned %d", max, len(batch))
		}
		for _, m := range batch {
			if m.Offset != next[m.Source] {
				t.Fatalf("%s: offset %d where %d was next", m.Source, m.Offset, next[m.Source])
			}
			next[m.Source]++
		}
		all = append(all, batch...)
	}
	if len(all) != n {
		t.Fatalf("fetched %d, want %d", len(all), n)
	}
	return all
}

func TestSourceFetchCommitRestart(t *testing.T) {
	const topic = "in"
	k := bustest.StartKafka(t, &bustest.KafkaOptions{Partitions: 2, Topics: []string{topic}})
	produce(t, k, topic, 2, 0, 30)
	s := openSource(t, k, topic)
	noResume := func(context.Context, string) (uint64, bool, error) { return 0, false, nil }
	if err := s.Start(t.Context(), noResume); err != nil {
		t.Fatal(err)
	}
	next := map[string]uint64{"kafka:in/0": 0, "kafka:in/1": 0}
	got := fetchN(t, s, 60, 7, next)
	if m := got[0]; m.Subject != topic || m.Source != "kafka:in/0" && m.Source != "kafka:in/1" {
		t.Fatalf("first message %+v", m)
	}
	// Commit the first 40 only: a restart reads from there.
	if err := s.Commit(t.Context(), got[:40]); err != nil {
		t.Fatal(err)
	}
	if err := s.Stop(); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Fetch(t.Context(), 10); err == nil {
		t.Fatal("Fetch on a stopped Source: no error")
	}
	// The broker's restart keeps the group's offsets.
	k.Stop()
	k.Start()
	produce(t, k, topic, 2, 30, 5)
	if err := s.Start(t.Context(), noResume); err != nil {
		t.Fatal(err)
	}
	next = map[string]uint64{}
	for _, m := range got[:40] {
		next[m.Source] = m.Offset + 1
	}
	fetchN(t, s, 30, 100, next)
}

func TestSourceResumeSkipsAhead(t *testing.T) {
	const topic = "in"
	k := bustest.StartKafka(t, &bustest.KafkaOptions{Partitions: 2, Topics: []string{topic}})
	produce(t, k, topic, 2, 0, 10)
	s := openSource(t, k, topic)
	// The ingest's record says partition 0 is done up to offset 5; the group has no commit.
	resume := func(_ context.Context, source string) (uint64, bool, error) {
		switch source {
		case "kafka:in/0":
			return 5, true, nil
		case "kafka:in/1":
			return 0, false, nil
		}
		return 0, false, fmt.Errorf("unknown source %q", source)
	}
	if err := s.Start(t.Context(), resume); err != nil {
		t.Fatal(err)
	}
	fetchN(t, s, 14, 100, map[string]uint64{"kafka:in/0": 6, "kafka:in/1": 0})
}

func TestOpenSourceRefuses(t *testing.T) {
	for _, opts := range []kafkabus.SourceOptions{
		{Topics: []string{"t"}, Group: "g"},
		{Brokers: []string{"b:1"}, Group: "g"},
		{Brokers: []string{"b:1"}, Topics: []string{"t"}},
		{Brokers: []string{"b:1"}, Topics: []string{""}, Group: "g"},
	} {
		if _, err := kafkabus.OpenSource(opts); !errors.Is(err, annals.ErrInvalidArgument) {
			t.Errorf("OpenSource(%+v) = %v, want ErrInvalidArgument", opts, err)
		}
	}
}

func TestDedup(t *testing.T) {
	id := annals.NewUUID()
	rec := func(key, value string) *kgo.Record {
		return &kgo.Record{Topic: "t", Headers: []kgo.RecordHeader{{Key: key, Value: []byte(value)}}}
	}
	d := kafkabus.NewDedup(0)
	for i, c := range []struct {
		r    *kgo.Record
		want bool
	}{
		{rec(bridge.HeaderID, id.String()), false},
		{rec(bridge.HeaderID, id.String()), true},
		{rec("ce_id", id.String()), true},
		{rec("Annals-Id", id.String()), true},
		{rec("ce_id", "not-a-uuid"), false},
		{rec("ce_id", "not-a-uuid"), false},
		{&kgo.Record{Topic: "t"}, false},
		{&kgo.Record{Topic: "t"}, false},
	} {
		if got := d.Duplicate(c.r); got != c.want {
			t.Errorf("case %d: Duplicate = %v, want %v", i, got, c.want)
		}
	}
	if got := kafkabus.Message(rec(bridge.HeaderID, id.String())).ID; got != id {
		t.Errorf("Message(...).ID = %v, want %v", got, id)
	}
}

// record returns m as the record a consumer reads.
func record(m bridge.Message) *kgo.Record {
	r := &kgo.Record{Topic: m.Subject, Key: m.Key, Value: m.Value}
	for _, h := range m.Headers {
		r.Headers = append(r.Headers, kgo.RecordHeader{Key: h.Key, Value: h.Value})
	}
	return r
}

func TestMessageIDInEveryFormat(t *testing.T) {
	subject, err := bridge.ParseTemplate("events.{category}")
	if err != nil {
		t.Fatal(err)
	}
	ev := &annals.RecordedEvent{ID: annals.NewUUID(), Stream: "cart-1", Type: "Added", ContentType: annals.ContentTypeJSON, Data: []byte(`{"n":1}`), Revision: 3, Position: 9}
	for _, f := range []bridge.Format{bridge.FormatJSON, bridge.FormatCloudEvents, bridge.FormatCloudEventsBinary} {
		e := bridge.Encoder{Format: f, Subject: subject, Bus: bridge.Kafka}
		m, err := e.Encode(ev)
		if err != nil {
			t.Fatalf("%v: %v", f, err)
		}
		r := record(m)
		if got := kafkabus.Message(r).ID; got != ev.ID {
			t.Errorf("%v: Message(r).ID = %v, want %v", f, got, ev.ID)
		}
		got, err := bridge.Recorded(new(kafkabus.Message(r)))
		if err != nil || got.ID != ev.ID || got.Stream != ev.Stream || got.Revision != ev.Revision {
			t.Errorf("%v: Recorded = %+v, %v", f, got, err)
		}
		d := kafkabus.NewDedup(10)
		if d.Duplicate(r) || !d.Duplicate(record(m)) {
			t.Errorf("%v: Dedup does not recognise the same event twice", f)
		}
	}
}

// TestSourceFetchCancelledKeepsRecords: a Fetch whose context ends while records are buffered
// returns them rather than dropping them, so every offset is returned exactly once.
func TestSourceFetchCancelledKeepsRecords(t *testing.T) {
	const topic = "cancel"
	k := bustest.StartKafka(t, &bustest.KafkaOptions{Partitions: 1, Topics: []string{topic}})
	produce(t, k, topic, 1, 0, 500)
	s := openSource(t, k, topic)
	if err := s.Start(t.Context(), nil); err != nil {
		t.Fatal(err)
	}
	next := map[string]uint64{}
	seen := 0
	take := func(batch []bridge.Incoming) {
		for _, m := range batch {
			if m.Offset != next[m.Source] {
				t.Fatalf("%s: offset %d where %d was next", m.Source, m.Offset, next[m.Source])
			}
			next[m.Source]++
			seen++
		}
	}
	// The context's end is seen only by Err, as when it ends while the records are taken.
	cancelled := endingContext{t.Context()}
	for seen < 500 {
		batch, err := s.Fetch(t.Context(), 7) // fills the client's buffer
		if err != nil {
			t.Fatal(err)
		}
		take(batch)
		for seen < 500 { // drain what is buffered through cancelled Fetches
			batch, err := s.Fetch(cancelled, 7)
			if err != nil {
				if !errors.Is(err, context.Canceled) || len(batch) > 0 {
					t.Fatalf("Fetch with a cancelled context: %d records, %v", len(batch), err)
				}
				break
			}
			if len(batch) == 0 {
				break
			}
			take(batch)
		}
	}
}

// endingContext is a context that has ended (Err) but whose Done channel is not yet closed:
// the moment a Fetch's context ends while the client hands it records.
type endingContext struct{ context.Context }

func (endingContext) Err() error { return context.Canceled }

// TestSourceFetchBrokerDown: with no broker answering, Fetch does not wait in silence: after
// UnreachableAfter it returns an error that names the brokers and the dial's failure.
func TestSourceFetchBrokerDown(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close() // nothing listens there now
	src, err := kafkabus.OpenSource(kafkabus.SourceOptions{Brokers: []string{addr}, Topics: []string{"t"}, Group: "g",
		UnreachableAfter: 200 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	if err := src.Start(context.Background(), nil); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	msgs, err := src.Fetch(ctx, 10)
	if err == nil || ctx.Err() != nil || !strings.Contains(err.Error(), addr) || !strings.Contains(err.Error(), "refused") {
		t.Fatalf("Fetch with the broker down: %d messages, %v; want an error naming %s and the refused dial", len(msgs), err, addr)
	}
}

// TestSourceFetchIdleBrokerUp: a broker that answers but has nothing to read is not an error:
// Fetch waits until its context ends.
func TestSourceFetchIdleBrokerUp(t *testing.T) {
	k := bustest.StartKafka(t, nil)
	src, err := kafkabus.OpenSource(kafkabus.SourceOptions{Brokers: []string{k.Addr()}, Topics: []string{"idle"}, Group: "g",
		UnreachableAfter: 100 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	if err := src.Start(context.Background(), nil); err != nil {
		t.Fatal(err)
	}
	// The wait is the condition under test: nothing comes, and no error may come either.
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	if msgs, err := src.Fetch(ctx, 10); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Fetch of an idle topic: %d messages, %v; want the context's deadline", len(msgs), err)
	}
}
