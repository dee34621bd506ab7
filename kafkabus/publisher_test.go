package kafkabus_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"testing"

	"github.com/annalsdb/annals"
	"github.com/annalsdb/annals/bridge"
	"github.com/annalsdb/annals/internal/bustest"
	"github.com/annalsdb/annals/internal/testwait"
	"github.com/annalsdb/annals/kafkabus"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
)

// acks collects the answers of published messages.
type acks struct {
	mu   sync.Mutex
	n    int
	errs []error
}

func (a *acks) done(err error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.n++
	if err != nil {
		a.errs = append(a.errs, err)
	}
}

func (a *acks) count() (int, []error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.n, append([]error(nil), a.errs...)
}

func openPublisher(t *testing.T, k *bustest.Kafka, opts *kafkabus.PublisherOptions) *kafkabus.Publisher {
	t.Helper()
	o := kafkabus.PublisherOptions{}
	if opts != nil {
		o = *opts
	}
	o.Brokers = []string{k.Addr()}
	p, err := kafkabus.OpenPublisher(o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close(context.Background()) })
	return p
}

// message returns the message of event rev of stream, as a relay would publish it.
func message(topic, stream string, rev int, value []byte) *bridge.Message {
	id := annals.NewUUID()
	return &bridge.Message{
		Subject: topic,
		Key:     []byte(stream),
		Headers: []bridge.Header{
			{Key: bridge.HeaderID, Value: []byte(id.String())},
			{Key: bridge.HeaderStream, Value: []byte(stream)},
			{Key: bridge.HeaderRevision, Value: []byte(strconv.Itoa(rev))},
		},
		Value: value,
		ID:    id,
	}
}

func header(r *kgo.Record, key string) string {
	for _, h := range r.Headers {
		if h.Key == key {
			return string(h.Value)
		}
	}
	return ""
}

func TestPublisherKeysHeadersOrder(t *testing.T) {
	ctx := t.Context()
	k := bustest.StartKafka(t, &bustest.KafkaOptions{Partitions: 4})
	p := openPublisher(t, k, nil)
	if got, want := p.String(), "kafka "+k.Addr(); got != want {
		t.Errorf("String() = %q, want %q", got, want)
	}
	const streams, perStream = 8, 50
	var a acks
	for rev := range perStream {
		for s := range streams {
			stream := fmt.Sprintf("cart-%d", s)
			if err := p.Publish(ctx, message("events", stream, rev, []byte(stream)), a.done); err != nil {
				t.Fatal(err)
			}
		}
	}
	testwait.Until(t, "every publish answered", func() bool { n, _ := a.count(); return n == streams*perStream })
	if _, errs := a.count(); len(errs) > 0 {
		t.Fatalf("%d publishes failed, first: %v", len(errs), errs[0])
	}
	recs := k.ReadAll(ctx, t, "events")
	if len(recs) != streams*perStream {
		t.Fatalf("read %d records, want %d", len(recs), streams*perStream)
	}
	partition := map[string]int32{}
	next := map[string]int{}
	parts := map[int32]bool{}
	for _, r := range recs {
		stream := string(r.Key)
		if p, ok := partition[stream]; ok && p != r.Partition {
			t.Fatalf("stream %s in partitions %d and %d", stream, p, r.Partition)
		}
		partition[stream] = r.Partition
		parts[r.Partition] = true
		if got := header(r, bridge.HeaderStream); got != stream {
			t.Fatalf("record %d/%d: stream header %q, key %q", r.Partition, r.Offset, got, stream)
		}
		if !bytes.Equal(r.Value, r.Key) {
			t.Fatalf("record %d/%d: value %q", r.Partition, r.Offset, r.Value)
		}
		if got, want := header(r, bridge.HeaderRevision), strconv.Itoa(next[stream]); got != want {
			t.Fatalf("stream %s: revision %s where %s was next", stream, got, want)
		}
		if _, err := annals.ParseUUID(header(r, bridge.HeaderID)); err != nil {
			t.Fatalf("record %d/%d: id header: %v", r.Partition, r.Offset, err)
		}
		next[stream]++
	}
	if len(parts) < 2 {
		t.Errorf("%d streams all in one partition: keys do not spread", streams)
	}
}

func TestPublisherTooLargeIsPermanent(t *testing.T) {
	ctx := t.Context()
	k := bustest.StartKafka(t, &bustest.KafkaOptions{BrokerConfigs: map[string]string{"message.max.bytes": "10000"}})
	p := openPublisher(t, k, nil)
	var a acks
	big := make([]byte, 20_000)
	rand.Read(big) // incompressible: the producer compresses batches
	if err := p.Publish(ctx, message("big", "s-1", 0, big), a.done); err != nil {
		t.Fatal(err)
	}
	testwait.Until(t, "the publish answered", func() bool { n, _ := a.count(); return n == 1 })
	_, errs := a.count()
	if len(errs) != 1 || !errors.Is(errs[0], kerr.MessageTooLarge) {
		t.Fatalf("errors %v, want one matching kerr.MessageTooLarge", errs)
	}
	if !p.Permanent(errs[0]) {
		t.Errorf("Permanent(%v) = false", errs[0])
	}
	if p.Permanent(fmt.Errorf("wrapped: %w", kgo.ErrRecordRetries)) || p.Permanent(kerr.NotLeaderForPartition) || p.Permanent(context.Canceled) {
		t.Errorf("a transient error is Permanent")
	}
	// A message that fits still goes through after the refusal.
	if err := p.Publish(ctx, message("big", "s-1", 1, make([]byte, 100)), a.done); err != nil {
		t.Fatal(err)
	}
	testwait.Until(t, "the second publish answered", func() bool { n, _ := a.count(); return n == 2 })
	if _, errs := a.count(); len(errs) != 1 {
		t.Fatalf("errors %v, want only the first", errs)
	}
}

func TestPublisherBlocksWhenFullAndReturnsCtxError(t *testing.T) {
	k := bustest.StartKafka(t, nil)
	p := openPublisher(t, k, &kafkabus.PublisherOptions{MaxBufferedRecords: 3})
	k.Stop() // nothing is answered while the broker is down
	var a acks
	// The context of a Publish that returned does not cancel its record.
	first, cancelFirst := context.WithCancel(t.Context())
	for i := range 3 {
		if err := p.Publish(first, message("events", "s-1", i, nil), a.done); err != nil {
			t.Fatal(err)
		}
	}
	cancelFirst()
	ctx, cancel := context.WithCancel(t.Context())
	errc := make(chan error, 1)
	go func() {
		errc <- p.Publish(ctx, message("events", "s-1", 3, nil), func(error) { t.Error("done called for a Publish that returned an error") })
	}()
	select {
	case err := <-errc:
		t.Fatalf("Publish returned %v while the buffer was full", err)
	default:
	}
	cancel()
	if err := <-errc; !errors.Is(err, context.Canceled) {
		t.Fatalf("Publish returned %v, want context.Canceled", err)
	}
	k.Start()
	testwait.Until(t, "the buffered publishes answered after the outage", func() bool { n, _ := a.count(); return n == 3 })
	if _, errs := a.count(); len(errs) > 0 {
		t.Fatalf("publishes failed across the outage: %v", errs)
	}
	if got := len(k.ReadAll(t.Context(), t, "events")); got != 3 {
		t.Fatalf("read %d records, want 3", got)
	}
}

func TestOpenPublisherRefuses(t *testing.T) {
	for _, opts := range []kafkabus.PublisherOptions{
		{},
		{Brokers: []string{""}},
		{Brokers: []string{"127.0.0.1:1"}, MaxBufferedRecords: -1},
	} {
		if _, err := kafkabus.OpenPublisher(opts); !errors.Is(err, annals.ErrInvalidArgument) {
			t.Errorf("OpenPublisher(%+v) = %v, want ErrInvalidArgument", opts, err)
		}
	}
}
