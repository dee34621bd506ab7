package bustest

import (
	"context"
	"fmt"
	"strconv"
	"sync"
	"testing"

	"github.com/annalsdb/annals/internal/testwait"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// KafkaOptions configure [StartKafka]; nil means the defaults of each field.
type KafkaOptions struct {
	// Partitions is the partition count of the topics the cluster creates by itself (a
	// producer's first record to a topic creates it); 0 means 4.
	Partitions int32
	// Topics are created at start, with Partitions partitions each.
	Topics []string
	// BrokerConfigs are kfake's broker configurations (kfake.BrokerConfigs), such as
	// "message.max.bytes".
	BrokerConfigs map[string]string
}

// Kafka is an in-process Kafka cluster of one broker (kfake) listening on 127.0.0.1 on a port
// it keeps for its life. Its data (records, committed offsets, producer ids and sequences) is
// kept in a directory of the test (kfake.DataDir), so that [Kafka.Stop] then [Kafka.Start] is
// a broker outage that loses nothing: Stop closes the listener and every connection, Start
// listens again on the same address with the same data. Stop and Start are safe for
// concurrent use; the cluster is stopped when the test ends.
type Kafka struct {
	t    testing.TB
	opts []kfake.Opt
	addr string
	mu   struct {
		sync.Mutex
		cluster *kfake.Cluster // nil while stopped
	}
}

// StartKafka starts a cluster for t, with opts (nil: defaults), and registers its stop with
// t.Cleanup. It fails the test when the cluster cannot start.
func StartKafka(t testing.TB, opts *KafkaOptions) *Kafka {
	t.Helper()
	if opts == nil {
		opts = &KafkaOptions{}
	}
	partitions := opts.Partitions
	if partitions == 0 {
		partitions = 4
	}
	base := []kfake.Opt{
		kfake.NumBrokers(1),
		kfake.AllowAutoTopicCreation(),
		kfake.DefaultNumPartitions(int(partitions)),
		kfake.DataDir(t.TempDir()),
	}
	if len(opts.BrokerConfigs) > 0 {
		base = append(base, kfake.BrokerConfigs(opts.BrokerConfigs))
	}
	// The first start takes a free port from the kernel; later starts reuse it.
	first := append(append([]kfake.Opt(nil), base...), kfake.Ports(0))
	if len(opts.Topics) > 0 {
		first = append(first, kfake.SeedTopics(partitions, opts.Topics...))
	}
	c, err := kfake.NewCluster(first...)
	if err != nil {
		t.Fatalf("start kafka: %v", err)
	}
	k := &Kafka{t: t, addr: c.ListenAddrs()[0]}
	_, port, err := splitPort(k.addr)
	if err != nil {
		c.Close()
		t.Fatalf("start kafka: %v", err)
	}
	k.opts = append(base, kfake.Ports(port))
	k.mu.cluster = c
	t.Cleanup(k.Stop)
	return k
}

func splitPort(addr string) (string, int, error) {
	for i := len(addr) - 1; i >= 0; i-- {
		if addr[i] == ':' {
			p, err := strconv.Atoi(addr[i+1:])
			if err != nil {
				return "", 0, fmt.Errorf("port of %q: %w", addr, err)
			}
			return addr[:i], p, nil
		}
	}
	return "", 0, fmt.Errorf("no port in %q", addr)
}

// Addr returns the broker's address, host:port, the same across restarts.
func (k *Kafka) Addr() string { return k.addr }

// Cluster returns the running kfake cluster (for its controls and topic information), or nil
// while stopped.
func (k *Kafka) Cluster() *kfake.Cluster {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.mu.cluster
}

// Stop shuts the broker down: it saves its data, closes its listener and its connections.
// Clients see the broker gone until [Kafka.Start]. Stopping a stopped cluster does nothing.
func (k *Kafka) Stop() {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.mu.cluster != nil {
		k.mu.cluster.Close()
		k.mu.cluster = nil
	}
}

// Start starts the broker again on the same address with the data it had when stopped. It
// fails the test when it cannot; starting a running cluster does nothing. The port may be
// briefly held by the teardown of the stopped broker's connections, so Start waits for it
// (testwait). Call it from the test's goroutine.
func (k *Kafka) Start() {
	k.t.Helper()
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.mu.cluster != nil {
		return
	}
	testwait.UntilNil(k.t, "kafka to listen again on "+k.addr, func() error {
		c, err := kfake.NewCluster(k.opts...)
		if err != nil {
			return err
		}
		k.mu.cluster = c
		return nil
	})
}

// ReadAll returns every record of topic, in offset order per partition (partitions one after
// another in ascending order), read by a plain franz-go consumer from the start up to the end
// offsets when called. It fails the test on an error or when ctx ends first.
func (k *Kafka) ReadAll(ctx context.Context, t testing.TB, topic string) []*kgo.Record {
	t.Helper()
	c, err := kgo.NewClient(kgo.SeedBrokers(k.addr), kgo.ConsumeTopics(topic),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	if err != nil {
		t.Fatalf("read %s: %v", topic, err)
	}
	defer c.Close()
	ends, err := endOffsets(ctx, c, topic)
	if err != nil {
		t.Fatalf("read %s: end offsets: %v", topic, err)
	}
	byPart := map[int32][]*kgo.Record{}
	left := 0
	for p, end := range ends {
		left += int(end)
		byPart[p] = nil
	}
	for left > 0 {
		fs := c.PollFetches(ctx)
		if err := ctx.Err(); err != nil {
			t.Fatalf("read %s: %d records left: %v", topic, left, err)
		}
		fs.EachError(func(tp string, p int32, err error) {
			t.Fatalf("read %s/%d: %v", tp, p, err)
		})
		fs.EachRecord(func(r *kgo.Record) {
			if r.Offset < ends[r.Partition] {
				byPart[r.Partition] = append(byPart[r.Partition], r)
				left--
			}
		})
	}
	var out []*kgo.Record
	for p := int32(0); int(p) < len(ends); p++ {
		out = append(out, byPart[p]...)
	}
	return out
}

// endOffsets returns the end offset of each partition of topic (the offsets start at 0: the
// test clusters never delete records).
func endOffsets(ctx context.Context, c *kgo.Client, topic string) (map[int32]int64, error) {
	meta := kmsg.NewPtrMetadataRequest()
	mt := kmsg.NewMetadataRequestTopic()
	mt.Topic = kmsg.StringPtr(topic)
	meta.Topics = append(meta.Topics, mt)
	mresp, err := meta.RequestWith(ctx, c)
	if err != nil {
		return nil, err
	}
	if len(mresp.Topics) != 1 {
		return nil, fmt.Errorf("metadata: %d topics", len(mresp.Topics))
	}
	if err := kerr.ErrorForCode(mresp.Topics[0].ErrorCode); err != nil {
		return nil, fmt.Errorf("metadata: %w", err)
	}
	list := kmsg.NewPtrListOffsetsRequest()
	list.ReplicaID = -1
	lt := kmsg.NewListOffsetsRequestTopic()
	lt.Topic = topic
	for _, p := range mresp.Topics[0].Partitions {
		lp := kmsg.NewListOffsetsRequestTopicPartition()
		lp.Partition = p.Partition
		lp.Timestamp = -1 // the end
		lt.Partitions = append(lt.Partitions, lp)
	}
	list.Topics = append(list.Topics, lt)
	lresp, err := list.RequestWith(ctx, c)
	if err != nil {
		return nil, err
	}
	ends := map[int32]int64{}
	for _, t := range lresp.Topics {
		for _, p := range t.Partitions {
			if err := kerr.ErrorForCode(p.ErrorCode); err != nil {
				return nil, fmt.Errorf("list offsets %s/%d: %w", topic, p.Partition, err)
			}
			ends[p.Partition] = p.Offset
		}
	}
	return ends, nil
}
