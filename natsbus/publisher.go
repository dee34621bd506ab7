package natsbus

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/annalsdb/annals/bridge"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// StreamOptions say which JetStream stream to use, and how to create it when it is missing.
type StreamOptions struct {
	// Name of the JetStream stream. Required.
	Name string
	// Subjects it binds when it is created (e.g. "events.>"); empty means the stream must
	// exist. An existing stream is used as it is, whatever its subjects.
	Subjects []string
	// Duplicates is the duplicate window when it is created; 0 means JetStream's default
	// (2 minutes).
	Duplicates time.Duration
}

// Defaults of [PublisherOptions].
const (
	DefaultMaxPending = 4_000
	DefaultAckTimeout = 30 * time.Second
)

// PublisherOptions configure [OpenPublisher].
type PublisherOptions struct {
	// URL of the NATS server(s), comma-separated. Required unless Conn is set. The connection
	// it opens reconnects forever, and does not buffer publishes while it is disconnected
	// (they fail at once, and the relay retries from its checkpoint), so that nothing
	// published after a failed message can reach the stream before it.
	URL string
	// Conn is a connection to use instead of dialing URL (the Publisher does not close it).
	// Give it nats.ReconnectBufSize(-1): with a reconnect buffer (nats.go's default), what is
	// published while it reconnects is sent when it is back, and may be stored before a
	// message that failed when the connection dropped, out of order once the relay publishes
	// that one again.
	Conn *nats.Conn
	// Stream is the JetStream stream the subjects go to.
	Stream StreamOptions
	// MaxPending bounds the publishes awaiting an ack before Publish blocks; 0 means
	// [DefaultMaxPending].
	MaxPending int
	// AckTimeout is how long a publish waits for its ack before it fails (transiently);
	// 0 means [DefaultAckTimeout].
	AckTimeout time.Duration
	// Logger receives disconnections and reconnections of the connection it opens; nil
	// means slog.Default().
	Logger *slog.Logger
}

// Publisher is a relay.Publisher on JetStream's asynchronous publish: each Publish sends at
// once, and the ack (or the error) calls its done function on one of nats.go's goroutines
// (the one that reads acks, an ack timer, the one that sees the connection drop), some of
// them holding nats.go's lock: done must not block nor publish.
//
// What a relay needs of the order holds: the messages of one goroutine's successive Publish
// calls go out on one connection in that order, and none is sent again by nats.go (a publish
// that found no stream listening fails instead of being retried behind later ones; the
// connection it opens buffers nothing while it reconnects). A failed message is published
// again by the relay, from its checkpoint, with the messages after it.
//
// It is safe for concurrent use; [Publisher.Close] ends it.
type Publisher struct {
	nc       *nats.Conn
	own      bool // nc was opened by OpenPublisher, and Close closes it
	js       jetstream.JetStream
	stream   string
	subjects []string // the stream's subjects, that every published subject must match
	target   string
	pubOpts  []jetstream.PublishOpt
	// expectStream is the value of every message's Nats-Expected-Stream header (shared: nats.go
	// only reads it), so that a message that another stream would store is refused.
	expectStream []string

	slots   chan struct{} // a token per publish not yet done: at most MaxPending
	closing chan struct{} // closed when Close starts
	drained chan struct{} // closed once Close started and nothing is pending

	// mu is taken inside nats.go's own lock of its publisher (its timeout calls the error
	// handler with it held), so nothing calls nats.go with mu held.
	mu struct {
		sync.Mutex
		closed bool
		// pending are the publishes that wait for their ack, by message.
		pending map[*nats.Msg]*outMsg
		// free are messages whose publish is done, to reuse: nats.go no longer reads a
		// message once it has called its ack or error handler.
		free []*outMsg
		// drainedDone says drained is closed.
		drainedDone bool
	}
}

// outMsg is a message and the publish it is in; it is reused once its done is called by
// resolve, so that a publish allocates little beyond its header values.
type outMsg struct {
	msg     nats.Msg
	done    func(error)
	subject string
	vals    []string // the backing array of the values of msg.Header
	buf     []byte   // the values, before their conversion to one string
	// shape is what msg.Header was made of, when each of its keys has one value,
	// vals[i:i+1] (nil otherwise): a message of the same shape only sets vals.
	shape *headerShape
}

// headerShape says which keys a header has, in the order of their values.
type headerShape struct {
	keys   []string // the keys of the message's headers
	id     bool     // Nats-Msg-Id follows them
	expect []string // the value of Nats-Expected-Stream
}

// is says whether a message with msg's headers and expectStream has shape s.
func (s *headerShape) is(msg *bridge.Message, expectStream []string) bool {
	if s == nil || s.id == msg.ID.IsZero() || len(s.keys) != len(msg.Headers) || !sameSlice(s.expect, expectStream) {
		return false
	}
	for i, h := range msg.Headers {
		if s.keys[i] != h.Key {
			return false
		}
	}
	return true
}

// sameSlice says whether a and b are the same slice (not only equal).
func sameSlice(a, b []string) bool {
	return len(a) == len(b) && (a == nil) == (b == nil) && (len(a) == 0 || &a[0] == &b[0])
}

// OpenPublisher connects (unless opts.Conn is set) and makes sure the stream exists (creating
// it when Stream.Subjects is set). Errors say whether the server could not be reached, has
// no JetStream, or the stream is missing (and how to create it). Call [Publisher.Close] when
// done with it.
func OpenPublisher(ctx context.Context, opts PublisherOptions) (*Publisher, error) {
	if opts.Stream.Name == "" {
		return nil, errors.New("natsbus: open publisher: no stream name")
	}
	if opts.MaxPending < 0 || opts.AckTimeout < 0 || opts.Stream.Duplicates < 0 {
		return nil, fmt.Errorf("natsbus: open publisher: negative MaxPending (%d), AckTimeout (%s) or Stream.Duplicates (%s)",
			opts.MaxPending, opts.AckTimeout, opts.Stream.Duplicates)
	}
	if opts.MaxPending == 0 {
		opts.MaxPending = DefaultMaxPending
	}
	if opts.AckTimeout == 0 {
		opts.AckTimeout = DefaultAckTimeout
	}
	log := opts.Logger
	if log == nil {
		log = slog.Default()
	}
	p := &Publisher{nc: opts.Conn, stream: opts.Stream.Name}
	if p.nc == nil {
		nc, err := connect(opts.URL, "annals relay", log, nats.ReconnectBufSize(-1))
		if err != nil {
			return nil, fmt.Errorf("natsbus: open publisher: %w", err)
		}
		p.nc, p.own = nc, true
	}
	fail := func(err error) (*Publisher, error) {
		if p.own {
			p.nc.Close()
		}
		return nil, fmt.Errorf("natsbus: open publisher: %w", err)
	}
	js, err := jetstream.New(p.nc,
		jetstream.WithPublishAsyncMaxPending(opts.MaxPending),
		jetstream.WithPublishAsyncTimeout(opts.AckTimeout),
		jetstream.WithPublishAsyncAckHandler(func(_ jetstream.JetStream, m *nats.Msg, _ *jetstream.PubAck) {
			p.resolve(m, nil)
		}),
		jetstream.WithPublishAsyncErrHandler(func(_ jetstream.JetStream, m *nats.Msg, err error) {
			p.resolve(m, err)
		}))
	if err != nil {
		return fail(err)
	}
	p.js = js
	subjects, err := ensureStream(ctx, js, opts.Stream)
	if err != nil {
		return fail(err)
	}
	p.subjects = subjects
	p.target = fmt.Sprintf("nats %s stream %s", p.nc.ConnectedUrlRedacted(), p.stream)
	// No retry of a publish that found no stream listening: a retry would land after the
	// messages published since, out of order. The relay retries from its checkpoint instead.
	p.pubOpts = []jetstream.PublishOpt{jetstream.WithRetryAttempts(0)}
	p.expectStream = []string{p.stream}
	p.slots = make(chan struct{}, opts.MaxPending)
	p.closing = make(chan struct{})
	p.mu.pending = make(map[*nats.Msg]*outMsg, opts.MaxPending)
	p.drained = make(chan struct{})
	return p, nil
}

// ensureStream returns the subjects of the stream so, creating it when it is missing and
// so.Subjects says how.
func ensureStream(ctx context.Context, js jetstream.JetStream, so StreamOptions) ([]string, error) {
	s, err := js.Stream(ctx, so.Name)
	switch {
	case err == nil:
		return s.CachedInfo().Config.Subjects, nil
	case !errors.Is(err, jetstream.ErrStreamNotFound):
		return nil, fmt.Errorf("stream %s: %w", so.Name, err)
	case len(so.Subjects) == 0:
		return nil, fmt.Errorf("stream %s: %w: create it (e.g. `nats stream add %s --subjects 'events.>'`) or give its subjects to create it",
			so.Name, err, so.Name)
	}
	s, err = js.CreateStream(ctx, jetstream.StreamConfig{
		Name:       so.Name,
		Subjects:   so.Subjects,
		Duplicates: so.Duplicates,
		Storage:    jetstream.FileStorage,
	})
	if errors.Is(err, jetstream.ErrStreamNameAlreadyInUse) {
		// Created by another publisher meanwhile.
		s, err = js.Stream(ctx, so.Name)
	}
	if err != nil {
		return nil, fmt.Errorf("create stream %s: %w", so.Name, err)
	}
	return s.CachedInfo().Config.Subjects, nil
}

// Publish implements relay.Publisher: msg.Subject is the subject, msg.ID the Nats-Msg-Id (when
// not zero), msg.Headers the headers (keys as they are). It blocks while MaxPending publishes
// wait for their ack, until ctx is done (returning ctx's error without calling done).
// Otherwise it returns nil, and done receives the ack's outcome: a subject the stream does
// not bind, a message over the server's max payload, or a publish after Close fail at once,
// through done.
func (p *Publisher) Publish(ctx context.Context, msg *bridge.Message, done func(error)) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	select {
	case p.slots <- struct{}{}:
	case <-ctx.Done():
		return ctx.Err()
	case <-p.closing:
		done(fmt.Errorf("natsbus: publish to %s: %w", msg.Subject, ErrClosed))
		return nil
	}
	if !matchAny(p.subjects, msg.Subject) {
		<-p.slots
		done(&UnboundSubjectError{Subject: msg.Subject, Stream: p.stream, Subjects: p.subjects})
		return nil
	}
	p.mu.Lock()
	if p.mu.closed {
		p.mu.Unlock()
		<-p.slots
		done(fmt.Errorf("natsbus: publish to %s: %w", msg.Subject, ErrClosed))
		return nil
	}
	var o *outMsg
	if n := len(p.mu.free); n > 0 {
		o = p.mu.free[n-1]
		p.mu.free[n-1] = nil
		p.mu.free = p.mu.free[:n-1]
	} else {
		o = &outMsg{}
	}
	o.done, o.subject = done, msg.Subject
	m := &o.msg
	p.mu.pending[m] = o
	p.mu.Unlock()
	o.fill(msg, p.expectStream)
	if _, err := p.js.PublishMsgAsync(m, p.pubOpts...); err != nil {
		if errors.Is(err, nats.ErrReconnectBufExceeded) {
			// The connection keeps no buffer: this is what a publish meets while it reconnects.
			err = fmt.Errorf("disconnected from NATS, reconnecting: %w", err)
		}
		p.resolve(m, err)
	}
	return nil
}

// fill makes o.msg the NATS message of msg: its subject, value and headers (keys as they are),
// Nats-Msg-Id, and Nats-Expected-Stream when expectStream is not nil. The header map, the
// slices of its values and the message are those of o's previous use: only the values,
// one string, are allocated, and the map is only written when the keys differ from the
// previous use's.
func (o *outMsg) fill(msg *bridge.Message, expectStream []string) {
	size := uuidTextLen
	for _, h := range msg.Headers {
		size += len(h.Value)
	}
	b := o.buf[:0]
	if cap(b) < size {
		b = make([]byte, 0, size)
	}
	for _, h := range msg.Headers {
		b = append(b, h.Value...)
	}
	n := len(msg.Headers)
	if !msg.ID.IsZero() {
		b, _ = msg.ID.AppendText(b) // never fails
		n++
	}
	o.buf = b
	all := string(b)
	same := o.shape.is(msg, expectStream)
	if cap(o.vals) < n {
		o.vals = make([]string, n)
		same = false
	}
	vals := o.vals[:n]
	start := 0
	for i := range vals {
		end := len(all)
		if i < len(msg.Headers) {
			end = start + len(msg.Headers[i].Value)
		}
		vals[i] = all[start:end]
		start = end
	}
	hdr := o.msg.Header
	o.msg = nats.Msg{Subject: msg.Subject, Data: msg.Value, Header: hdr}
	if same {
		return
	}
	if hdr == nil {
		hdr = make(nats.Header, len(msg.Headers)+2)
		o.msg.Header = hdr
	} else {
		clear(hdr)
	}
	for i := range vals {
		key := jetstream.MsgIDHeader
		if i < len(msg.Headers) {
			key = msg.Headers[i].Key
		}
		if prev, ok := hdr[key]; ok {
			hdr[key] = append(prev[:len(prev):len(prev)], vals[i])
		} else {
			hdr[key] = vals[i : i+1 : i+1]
		}
	}
	keys := n
	if expectStream != nil {
		hdr[jetstream.ExpectedStreamHeader] = expectStream
		keys++
	}
	o.shape = nil
	if len(hdr) == keys {
		// Each key has its own value, vals[i], and Nats-Expected-Stream is none of them.
		s := &headerShape{id: !msg.ID.IsZero(), expect: expectStream, keys: make([]string, len(msg.Headers))}
		for i, h := range msg.Headers {
			s.keys[i] = h.Key
		}
		o.shape = s
	}
}

// header returns the NATS header of msg, as fill makes it.
func header(msg *bridge.Message, expectStream []string) nats.Header {
	var o outMsg
	o.fill(msg, expectStream)
	return o.msg.Header
}

// uuidTextLen is the length of the canonical form of a UUID.
const uuidTextLen = 36

// resolve calls the done function of the publish of m with err (nil for an ack), unless it
// was called already (by Close), and keeps m for reuse: it is called once nats.go is done
// with m (from its ack or error handler, or when PublishMsgAsync failed).
func (p *Publisher) resolve(m *nats.Msg, err error) {
	p.mu.Lock()
	o, ok := p.mu.pending[m]
	if !ok {
		p.mu.Unlock()
		return
	}
	delete(p.mu.pending, m)
	p.drainedLocked()
	done, subject := o.done, o.subject
	o.done = nil
	p.mu.free = append(p.mu.free, o)
	p.mu.Unlock()
	if err != nil {
		err = fmt.Errorf("natsbus: publish to %s: %w", subject, err)
	}
	done(err)
	<-p.slots
}

// drainedLocked closes drained when the Publisher is closed and nothing is pending.
func (p *Publisher) drainedLocked() {
	if p.mu.closed && len(p.mu.pending) == 0 && !p.mu.drainedDone {
		p.mu.drainedDone = true
		close(p.drained)
	}
}

// UnboundSubjectError is the error of a message whose subject the stream does not bind:
// JetStream would store it nowhere. It is permanent.
type UnboundSubjectError struct {
	Subject  string
	Stream   string
	Subjects []string
}

func (e *UnboundSubjectError) Error() string {
	return fmt.Sprintf("natsbus: subject %s is not bound by stream %s (subjects %s): change the subject template or the stream's subjects",
		e.Subject, e.Stream, strings.Join(e.Subjects, ", "))
}

// JetStream error codes that no publish of the same message cures.
const (
	errCodeMessageTooLarge = jetstream.JSErrCodeStreamMessageExceedsMaximum
	errCodeStreamMismatch  = 10060 // the subject is bound by another stream than the expected one
)

// Permanent implements relay.Publisher: a message larger than the server's max payload or the
// stream's max message size, a subject no stream binds or another stream binds, an invalid
// subject, a connection closed for good, a Publisher closed.
func (p *Publisher) Permanent(err error) bool {
	if _, ok := errors.AsType[*UnboundSubjectError](err); ok {
		return true
	}
	if apiErr, ok := errors.AsType[*jetstream.APIError](err); ok {
		return apiErr.ErrorCode == errCodeMessageTooLarge || apiErr.ErrorCode == errCodeStreamMismatch
	}
	for _, e := range []error{nats.ErrMaxPayload, nats.ErrBadSubject, nats.ErrHeadersNotSupported, nats.ErrConnectionClosed, ErrClosed} {
		if errors.Is(err, e) {
			return true
		}
	}
	return false
}

// String names the target: "nats <url> stream <name>".
func (p *Publisher) String() string { return p.target }

// Close stops new publishes, waits for the acks of those pending (until ctx is done: those
// still pending then get ErrClosed, and Close returns ctx's error), and closes the connection
// it opened. Every done function has been called when it returns. It is safe to call more
// than once.
func (p *Publisher) Close(ctx context.Context) error {
	p.mu.Lock()
	if p.mu.closed {
		p.mu.Unlock()
		return nil
	}
	p.mu.closed = true
	close(p.closing)
	p.drainedLocked()
	p.mu.Unlock()

	var err error
	select {
	case <-p.drained:
	case <-ctx.Done():
		err = fmt.Errorf("natsbus: close %s: %w", p.target, ctx.Err())
		p.mu.Lock()
		left := p.mu.pending
		p.mu.pending = map[*nats.Msg]*outMsg{}
		p.drainedLocked()
		p.mu.Unlock()
		for _, w := range left {
			// Not kept for reuse: nats.go may still hold them.
			w.done(fmt.Errorf("natsbus: publish to %s: no ack before close: %w", w.subject, ErrClosed))
			<-p.slots
		}
	}
	if p.own {
		p.nc.Close()
	}
	return err
}
