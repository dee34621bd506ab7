package natsbus

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"sync"

	"github.com/annalsdb/annals"
	"github.com/annalsdb/annals/bridge"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// SourceOptions configure [OpenSource].
type SourceOptions struct {
	// URL of the NATS server(s), comma-separated. Required unless Conn is set.
	URL string
	// Conn is a connection to use instead of dialing URL (the Source does not close it).
	Conn *nats.Conn
	// Stream is the JetStream stream to ingest. Required (it must exist).
	Stream string
	// FilterSubjects narrows it; empty means all its subjects. More than one needs a NATS
	// server 2.10 or later (Start fails on an older one).
	FilterSubjects []string
	// Buffer is the most messages read ahead of Fetch; 0 means 1,000.
	Buffer int
	// Logger receives disconnections and reconnections of the connection it opens; nil
	// means slog.Default().
	Logger *slog.Logger
}

// Source is an ingest.Source on an ordered JetStream consumer that starts after the
// sequence the ingest recorded: its source is "nats:<stream>", offsets the stream's
// sequences. JetStream keeps no consumer state for it (the ordered consumer is ephemeral,
// in memory, and recreated by nats.go after a gap or a reconnection); the ingest's progress
// record is its offset, and Commit does nothing.
//
// Its methods are called by one goroutine at a time (the ingest's).
type Source struct {
	nc      *nats.Conn
	own     bool
	js      jetstream.JetStream
	stream  string
	source  string
	filters []string
	buffer  int

	// The feed of the current Start: the consumer's callback sends to msgs until stop is
	// closed; failed is closed when the consumer fails for good, with the error in mu;
	// deleted receives when the consumer was deleted (nats.go recreates it, forever, unless
	// the stream is gone, which Fetch then checks).
	cc      jetstream.ConsumeContext
	msgs    chan bridge.Incoming
	stop    chan struct{}
	failed  chan struct{}
	deleted chan struct{}
	mu      struct {
		sync.Mutex
		err error
	}
}

// OpenSource connects (unless opts.Conn is set) and checks that the stream exists. Call
// [Source.Close] when done with it.
func OpenSource(ctx context.Context, opts SourceOptions) (*Source, error) {
	if opts.Stream == "" {
		return nil, errors.New("natsbus: open source: no stream name")
	}
	if opts.Buffer < 0 {
		return nil, fmt.Errorf("natsbus: open source: negative Buffer %d", opts.Buffer)
	}
	if opts.Buffer == 0 {
		opts.Buffer = 1_000
	}
	log := opts.Logger
	if log == nil {
		log = slog.Default()
	}
	s := &Source{nc: opts.Conn, stream: opts.Stream, source: "nats:" + opts.Stream,
		filters: opts.FilterSubjects, buffer: opts.Buffer}
	if s.nc == nil {
		nc, err := connect(opts.URL, "annals ingest", log)
		if err != nil {
			return nil, fmt.Errorf("natsbus: open source: %w", err)
		}
		s.nc, s.own = nc, true
	}
	js, err := jetstream.New(s.nc)
	if err == nil {
		_, err = js.Stream(ctx, opts.Stream)
	}
	if err != nil {
		if s.own {
			s.nc.Close()
		}
		return nil, fmt.Errorf("natsbus: open source: stream %s: %w", opts.Stream, err)
	}
	s.js = js
	return s, nil
}

// Start implements ingest.Source: it (re)starts the ordered consumer after the offset resume
// returns for "nats:<stream>", or at the stream's first message when there is none. More than
// one filter subject on a server older than 2.10 is an error matching
// annals.ErrInvalidArgument (the ingest stops on it).
func (s *Source) Start(ctx context.Context, resume func(ctx context.Context, source string) (uint64, bool, error)) error {
	if err := s.Stop(); err != nil {
		return err
	}
	last, ok, err := resume(ctx, s.source)
	if err != nil {
		return fmt.Errorf("natsbus: start %s: resume: %w", s.source, err)
	}
	cfg := jetstream.OrderedConsumerConfig{FilterSubjects: s.filters, DeliverPolicy: jetstream.DeliverAllPolicy}
	if ok {
		cfg.DeliverPolicy, cfg.OptStartSeq = jetstream.DeliverByStartSequencePolicy, last+1
	}
	c, err := s.js.OrderedConsumer(ctx, s.stream, cfg)
	if errors.Is(err, jetstream.ErrConsumerMultipleFilterSubjectsNotSupported) {
		// Waiting does not upgrade the server: the ingest stops on it.
		return fmt.Errorf("%w: natsbus: start %s: filter subjects %q: %w: give one, or upgrade the server to NATS 2.10 or later",
			annals.ErrInvalidArgument, s.source, s.filters, err)
	}
	if err != nil {
		return fmt.Errorf("natsbus: start %s: %w", s.source, err)
	}
	msgs, stop, failed, deleted := make(chan bridge.Incoming, s.buffer), make(chan struct{}), make(chan struct{}), make(chan struct{}, 1)
	s.mu.Lock()
	s.mu.err = nil
	s.mu.Unlock()
	cc, err := c.Consume(func(m jetstream.Msg) {
		in, err := s.incoming(m)
		s.deliver(in, err, msgs, stop, failed)
	}, jetstream.PullMaxMessages(s.buffer), jetstream.ConsumeErrHandler(func(_ jetstream.ConsumeContext, err error) {
		if fatal(err) {
			s.fail(err, failed)
		}
		if errors.Is(err, jetstream.ErrConsumerDeleted) {
			select {
			case deleted <- struct{}{}:
			default:
			}
		}
	}))
	if err != nil {
		return fmt.Errorf("natsbus: start %s: consume: %w", s.source, err)
	}
	s.cc, s.msgs, s.stop, s.failed, s.deleted = cc, msgs, stop, failed, deleted
	return nil
}

// deliver hands the message in (or its error) of the consumer's callback to Fetch through
// msgs, until stop. The first error fails the feed (closing failed), and no message after it
// is handed over: Fetch must not return a message that follows one it never saw.
func (s *Source) deliver(in bridge.Incoming, err error, msgs chan<- bridge.Incoming, stop, failed chan struct{}) {
	if err != nil {
		s.fail(err, failed)
		return
	}
	select {
	case <-failed:
		return
	default:
	}
	select {
	case msgs <- in:
	case <-stop:
	case <-failed:
	}
}

// fail records err as the feed's failure, when it has none, and closes failed.
func (s *Source) fail(err error, failed chan struct{}) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.mu.err == nil {
		s.mu.err = fmt.Errorf("natsbus: %s: %w", s.source, err)
		close(failed)
	}
}

// fatal reports whether an error of the consumer is one it does not recover from.
func fatal(err error) bool {
	return errors.Is(err, jetstream.ErrStreamNotFound) ||
		errors.Is(err, jetstream.ErrConsumerMultipleFilterSubjectsNotSupported) ||
		errors.Is(err, jetstream.ErrConnectionClosed)
}

// incoming turns a message of the stream into an Incoming.
func (s *Source) incoming(m jetstream.Msg) (bridge.Incoming, error) {
	md, err := m.Metadata()
	if err != nil {
		return bridge.Incoming{}, fmt.Errorf("message metadata: %w", err)
	}
	in := bridge.Incoming{
		Message: bridge.Message{Subject: m.Subject(), Value: m.Data()},
		Source:  s.source,
		Offset:  md.Sequence.Stream,
	}
	h := m.Headers()
	for _, k := range slices.Sorted(maps.Keys(h)) {
		for _, v := range h[k] {
			in.Headers = append(in.Headers, bridge.Header{Key: k, Value: []byte(v)})
		}
	}
	if id, err := annals.ParseUUID(h.Get(jetstream.MsgIDHeader)); err == nil {
		in.ID = id
	}
	return in, nil
}

// Fetch implements ingest.Source: it waits until a message is there (or ctx is done) and
// returns it with those that follow without waiting, at most max, in stream order. While no
// message comes, it returns the consumer's fatal errors (the stream deleted); the transient
// ones (a reconnection) the ordered consumer recovers from by itself.
func (s *Source) Fetch(ctx context.Context, max int) ([]bridge.Incoming, error) {
	if s.msgs == nil {
		return nil, fmt.Errorf("natsbus: fetch %s: not started", s.source)
	}
	if max <= 0 {
		return nil, fmt.Errorf("natsbus: fetch %s: max %d: %w", s.source, max, annals.ErrInvalidArgument)
	}
	var out []bridge.Incoming
	for out == nil {
		select {
		case in := <-s.msgs:
			out = append(out, in)
		case <-s.failed:
			s.mu.Lock()
			defer s.mu.Unlock()
			return nil, s.mu.err
		case <-s.deleted:
			if _, err := s.js.Stream(ctx, s.stream); errors.Is(err, jetstream.ErrStreamNotFound) {
				return nil, fmt.Errorf("natsbus: fetch %s: %w", s.source, err)
			}
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	for len(out) < max {
		select {
		case in := <-s.msgs:
			out = append(out, in)
		default:
			return out, nil
		}
	}
	return out, nil
}

// Commit implements ingest.Source; JetStream needs nothing (see Source).
func (s *Source) Commit(ctx context.Context, msgs []bridge.Incoming) error { return nil }

// Stop implements ingest.Source: it stops the consumer started by Start and drops what it
// read ahead.
func (s *Source) Stop() error {
	if s.cc == nil {
		return nil
	}
	close(s.stop)
	s.cc.Stop()
	<-s.cc.Closed()
	s.cc, s.msgs, s.stop, s.failed, s.deleted = nil, nil, nil, nil, nil
	return nil
}

// Close stops the feed and closes the connection it opened.
func (s *Source) Close() error {
	err := s.Stop()
	if s.own {
		s.nc.Close()
	}
	return err
}
