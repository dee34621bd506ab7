package kafkabus

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/annalsdb/annals/bridge"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// SourceOptions configure [OpenSource].
type SourceOptions struct {
	// Brokers are the seed brokers. Required.
	Brokers []string
	// Topics to consume. Required.
	Topics []string
	// Group is the consumer group whose offsets are committed after each batch. Required.
	// The Source joins it as a static member whose instance id is Group (see [Source.Start]).
	Group string
	// ClientOptions are more franz-go options, applied last.
	ClientOptions []kgo.Opt
	// UnreachableAfter is how long [Source.Fetch] waits with no record while no broker
	// answers (no connection open, every dial failing) before it returns the dial error, so
	// that the ingest reports what is wrong and retries instead of waiting in silence; 0 means
	// [DefaultUnreachableAfter].
	UnreachableAfter time.Duration
}

// DefaultUnreachableAfter is SourceOptions.UnreachableAfter when it is 0.
const DefaultUnreachableAfter = 10 * time.Second

// Source is an ingest.Source on a franz-go consumer group: sources are
// "kafka:<topic>/<partition>", offsets Kafka's.
//
// Each [Source.Start] joins the group with a new client, which [Source.Stop] closes (leaving
// the group). A partition is read from the group's committed offset, or from the offset after
// the one resume reports when that is further (the ingest's own record is durable past the
// group's commit after a crash between the two), or from the start of the partition when
// there is neither. Records of aborted transactions are not read (read-committed isolation).
//
// Offsets are committed only by [Source.Commit] (no auto-commit). A rebalance may take a
// partition away while a batch of it is being appended; its commit then fails or is made
// again later, and the partition's next owner reads again from the committed offset, which
// the ingest's idempotence absorbs. Within one Start, records of a partition are returned once
// each, in offset order, even when the client reads some of them again after a rebalance.
//
// Its methods are safe for concurrent use, though a Source serves one ingest at a time.
type Source struct {
	opts SourceOptions
	mu   struct {
		sync.Mutex
		client *kgo.Client // nil while stopped
		// cancel ends the client's context: Stop calls it when leaving the group takes
		// longer than leaveTimeout, so that Close cannot hang on a group that does not answer.
		cancel context.CancelFunc
		// next is, per partition, the offset after the last record Fetch returned since
		// Start; committed the offset last committed.
		next      map[topicPartition]int64
		committed map[topicPartition]int64
		// dials watches the connections of client.
		dials *dials
	}
}

// dials is a franz-go hook that follows a client's connections to the brokers: how many are
// open, and since when every dial fails. It is safe for concurrent use.
type dials struct {
	mu struct {
		sync.Mutex
		open  int
		err   error     // the last dial's error, nil after a dial that worked
		since time.Time // when dials started failing
	}
}

// OnBrokerConnect implements kgo.HookBrokerConnect.
func (d *dials) OnBrokerConnect(_ kgo.BrokerMetadata, _ time.Duration, _ net.Conn, err error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if err == nil {
		d.mu.open++
		d.mu.err = nil
		return
	}
	if d.mu.err == nil {
		d.mu.since = time.Now()
	}
	d.mu.err = err
}

// OnBrokerDisconnect implements kgo.HookBrokerDisconnect.
func (d *dials) OnBrokerDisconnect(kgo.BrokerMetadata, net.Conn) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.mu.open = max(0, d.mu.open-1)
}

// unreachable returns the last dial error when no connection is open and dials have failed
// for at least after, else nil.
func (d *dials) unreachable(after time.Duration) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.mu.open > 0 || d.mu.err == nil || time.Since(d.mu.since) < after {
		return nil
	}
	return d.mu.err
}

type topicPartition struct {
	topic     string
	partition int32
}

// OpenSource returns a Source. It returns an error matching annals.ErrInvalidArgument for
// missing brokers, topics or group. It does not connect: Start does.
func OpenSource(opts SourceOptions) (*Source, error) {
	switch {
	case len(opts.Brokers) == 0:
		return nil, invalid("open source: no brokers")
	case len(opts.Topics) == 0:
		return nil, invalid("open source: no topics")
	case opts.Group == "":
		return nil, invalid("open source: no group")
	}
	for _, b := range opts.Brokers {
		if b == "" {
			return nil, invalid("open source: empty broker address in %q", opts.Brokers)
		}
	}
	for _, t := range opts.Topics {
		if t == "" {
			return nil, invalid("open source: empty topic in %q", opts.Topics)
		}
	}
	opts.Brokers = append([]string(nil), opts.Brokers...)
	opts.Topics = append([]string(nil), opts.Topics...)
	return &Source{opts: opts}, nil
}

// SourceName returns the bridge.Incoming.Source of a partition: "kafka:<topic>/<partition>".
func SourceName(topic string, partition int32) string {
	return "kafka:" + topic + "/" + strconv.Itoa(int(partition))
}

// parseSource reads a name SourceName made.
func parseSource(s string) (topicPartition, error) {
	rest, ok := strings.CutPrefix(s, "kafka:")
	i := strings.LastIndexByte(rest, '/')
	if !ok || i <= 0 {
		return topicPartition{}, invalid("source %q is not kafka:<topic>/<partition>", s)
	}
	p, err := strconv.ParseInt(rest[i+1:], 10, 32)
	if err != nil || p < 0 {
		return topicPartition{}, invalid("source %q is not kafka:<topic>/<partition>", s)
	}
	return topicPartition{rest[:i], int32(p)}, nil
}

// Start implements ingest.Source: it joins the group with a new client (stopping the one a
// previous Start made). resume is called when partitions are assigned, on franz-go's group
// goroutine; when it fails the partition starts from the committed offset (the ingest drops
// what it already appended). It returns an error matching annals.ErrInvalidArgument when
// franz-go refuses ClientOptions.
func (s *Source) Start(ctx context.Context, resume func(ctx context.Context, source string) (uint64, bool, error)) error {
	if err := s.Stop(); err != nil {
		return err
	}
	opts := []kgo.Opt{
		kgo.SeedBrokers(s.opts.Brokers...),
		kgo.ConsumerGroup(s.opts.Group),
		kgo.ConsumeTopics(s.opts.Topics...),
		kgo.DisableAutoCommit(),
		kgo.FetchIsolationLevel(kgo.ReadCommitted()),
		// Never skip: a partition with no commit, or whose committed offset is gone, is
		// read from its start; the ingest appends a message once however often it is read.
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
		kgo.AdjustFetchOffsetsFn(func(ctx context.Context, offs map[string]map[int32]kgo.Offset) (map[string]map[int32]kgo.Offset, error) {
			if resume == nil {
				return offs, nil
			}
			for topic, parts := range offs {
				for p, o := range parts {
					done, ok, err := resume(ctx, SourceName(topic, p))
					if err != nil || !ok {
						continue
					}
					if cur := o.EpochOffset().Offset; cur < int64(done)+1 {
						parts[p] = kgo.NewOffset().At(int64(done) + 1).WithEpoch(-1)
					}
				}
			}
			return offs, nil
		}),
	}
	cctx, cancel := context.WithCancel(context.Background())
	d := &dials{}
	// One ingest at a time consumes the group (the one that holds the ingest's lease), so every
	// Start joins as the same static member: it replaces the member of an earlier Start (a
	// crashed process, a client closed during a broker outage without leaving) at once,
	// instead of waiting for that member's session to time out.
	opts = append(opts, kgo.WithContext(cctx), kgo.WithHooks(d), kgo.InstanceID(s.opts.Group))
	opts = append(opts, s.opts.ClientOptions...)
	c, err := kgo.NewClient(opts...)
	if err != nil {
		cancel()
		return invalid("start source: %v", err)
	}
	s.mu.Lock()
	s.mu.client, s.mu.cancel, s.mu.dials = c, cancel, d
	s.mu.next = map[topicPartition]int64{}
	s.mu.committed = map[topicPartition]int64{}
	s.mu.Unlock()
	return nil
}

// errStopped is returned by Fetch and Commit on a Source not started.
var errStopped = errors.New("kafkabus: source not started")

func (s *Source) client() (*kgo.Client, error) {
	c, _, err := s.clientDials()
	return c, err
}

func (s *Source) clientDials() (*kgo.Client, *dials, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.mu.client == nil {
		return nil, nil, errStopped
	}
	return s.mu.client, s.mu.dials, nil
}

// Fetch implements ingest.Source: it returns at most max records (all that are buffered when
// max ≤ 0), waiting for one. It returns ctx's error when ctx ends first, an error when the
// Source is stopped (or stopped while waiting), and the first fetch error of the client when
// there are no records (records lost by the broker, a *kgo.ErrDataLoss, are only reported when
// nothing else comes). While no broker answers it returns, after SourceOptions.UnreachableAfter
// with no record, an error naming the brokers and wrapping the last dial's.
func (s *Source) Fetch(ctx context.Context, max int) ([]bridge.Incoming, error) {
	c, d, err := s.clientDials()
	if err != nil {
		return nil, err
	}
	after := s.opts.UnreachableAfter
	if after <= 0 {
		after = DefaultUnreachableAfter
	}
	// Poll in slices of a fraction of after, to look at the dials between them.
	slice := after / 4
	for {
		pctx, cancel := context.WithTimeout(ctx, slice)
		fs := c.PollRecords(pctx, max)
		cancel()
		if err := ctx.Err(); err != nil && fs.NumRecords() == 0 {
			return nil, err // records taken from the client are returned even so: dropped, they would be lost
		}
		if pctx.Err() != nil && fs.NumRecords() == 0 {
			if err := d.unreachable(after); err != nil {
				return nil, fmt.Errorf("kafkabus: fetch: no broker of %s answers: %w", strings.Join(s.opts.Brokers, ","), err)
			}
			continue
		}
		var ferr error
		fs.EachError(func(topic string, p int32, err error) {
			if ferr == nil {
				ferr = fmt.Errorf("kafkabus: fetch %s: %w", SourceName(topic, p), err)
			}
		})
		if errors.Is(ferr, kgo.ErrClientClosed) {
			return nil, errStopped
		}
		out := make([]bridge.Incoming, 0, fs.NumRecords())
		s.mu.Lock()
		if s.mu.client != c {
			s.mu.Unlock()
			return nil, errStopped
		}
		fs.EachRecord(func(r *kgo.Record) {
			tp := topicPartition{r.Topic, r.Partition}
			if next, ok := s.mu.next[tp]; ok && r.Offset < next {
				return // read again after a rebalance; returned already
			}
			s.mu.next[tp] = r.Offset + 1
			out = append(out, bridge.Incoming{
				Message: Message(r),
				Source:  SourceName(r.Topic, r.Partition),
				Offset:  uint64(r.Offset),
			})
		})
		s.mu.Unlock()
		if len(out) > 0 {
			return out, nil
		}
		var loss *kgo.ErrDataLoss
		if ferr != nil && !errors.As(ferr, &loss) {
			return nil, ferr
		}
	}
}

// Commit implements ingest.Source: it commits to the group, for each partition in msgs, the
// offset after the highest of msgs (never moving a partition's commit back). It waits for the
// broker's answer (or ctx) and returns its error: a partition the group took away in a
// rebalance fails to commit, and is read again by its next owner.
func (s *Source) Commit(ctx context.Context, msgs []bridge.Incoming) error {
	c, err := s.client()
	if err != nil {
		return err
	}
	offsets := map[string]map[int32]kgo.EpochOffset{}
	s.mu.Lock()
	for _, m := range msgs {
		tp, err := parseSource(m.Source)
		if err != nil {
			s.mu.Unlock()
			return fmt.Errorf("kafkabus: commit: %w", err)
		}
		next := int64(m.Offset) + 1
		if done, ok := s.mu.committed[tp]; ok && next <= done {
			continue
		}
		if offsets[tp.topic] == nil {
			offsets[tp.topic] = map[int32]kgo.EpochOffset{}
		}
		if eo, ok := offsets[tp.topic][tp.partition]; !ok || eo.Offset < next {
			offsets[tp.topic][tp.partition] = kgo.EpochOffset{Epoch: -1, Offset: next}
		}
	}
	s.mu.Unlock()
	if len(offsets) == 0 {
		return nil
	}
	var cerr error
	c.CommitOffsetsSync(ctx, offsets, func(_ *kgo.Client, _ *kmsg.OffsetCommitRequest, resp *kmsg.OffsetCommitResponse, err error) {
		if err != nil {
			cerr = err
			return
		}
		for _, t := range resp.Topics {
			for _, p := range t.Partitions {
				if err := kerr.ErrorForCode(p.ErrorCode); err != nil && cerr == nil {
					cerr = fmt.Errorf("%s: %w", SourceName(t.Topic, p.Partition), err)
				}
			}
		}
	})
	if cerr != nil {
		return fmt.Errorf("kafkabus: commit: %w", cerr)
	}
	s.mu.Lock()
	if s.mu.client == c {
		for topic, parts := range offsets {
			for p, eo := range parts {
				s.mu.committed[topicPartition{topic, p}] = eo.Offset
			}
		}
	}
	s.mu.Unlock()
	return nil
}

// Stop implements ingest.Source: it closes the client Start made, leaving the group (a Fetch
// waiting then returns an error). Stopping a stopped Source does nothing.
func (s *Source) Stop() error {
	s.mu.Lock()
	c, cancel := s.mu.client, s.mu.cancel
	s.mu.client, s.mu.cancel = nil, nil
	s.mu.Unlock()
	if c == nil {
		return nil
	}
	ctx, stop := context.WithTimeout(context.Background(), leaveTimeout)
	defer stop()
	c.LeaveGroupContext(ctx) // best effort: the group also drops a member that stops answering
	cancel()
	c.Close()
	return nil
}

// leaveTimeout bounds how long Stop waits to leave the group (a broker that just came back
// may not answer at once).
const leaveTimeout = 5 * time.Second

// Close stops the Source; it may be started again.
func (s *Source) Close() error { return s.Stop() }
