package server

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync"
	"time"

	"connectrpc.com/connect"
	"github.com/annalsdb/annals/groups"
	annalsv1 "github.com/annalsdb/annals/internal/gen/annals/v1"
	"github.com/annalsdb/annals/internal/wire"
	"google.golang.org/protobuf/proto"
)

// DefaultConsumeSendTimeout is the default of [Options.ConsumeSendTimeout].
const DefaultConsumeSendTimeout = 30 * time.Second

// ConsumeJoinTimeout bounds the wait for the join that opens a Consume stream.
const ConsumeJoinTimeout = 30 * time.Second

// maxConsumeBatchBytes bounds the encoded events of one ConsumeEvents message; an event
// larger than that goes alone.
const maxConsumeBatchBytes = 1 << 20

// maxConsumeAnswers bounds the answers to acks and nacks waiting to be sent on one Consume
// stream: at that bound the server stops reading the stream until some are sent.
const maxConsumeAnswers = 1024

// maxConsumeQueued bounds the events taken from the consumer and waiting for the stream's
// writer, whatever the consumer's window (the window bounds what is in flight, in the engine).
const maxConsumeQueued = 256

// Consume serves a Consume stream through [Server.serveConsume].
func (v *groupService) Consume(ctx context.Context, stream *connect.BidiStream[annalsv1.ConsumeRequest, annalsv1.ConsumeResponse]) error {
	proc := stream.Spec().Procedure
	if err := v.s.serveConsume(ctx, proc, stream.Receive, stream.Send, streamControlOf(ctx)); err != nil {
		return v.s.toConnect(ctx, proc, err)
	}
	return nil
}

// serveConsume serves one Consume stream over any transport: recv returns the next request
// message (io.EOF when the client has sent its last), send sends a response message, and
// sc's interrupt makes a blocked recv return.
//
// The first message must be a join, within [ConsumeJoinTimeout]: its group name is checked,
// then the caller is authorized to read the group's stream (or $all with the group's filter),
// then the consumer joins and is answered joined. From then on three goroutines serve it: a
// pump takes the consumer's messages from the group (Receive) into a queue as long as its
// window; a reader settles the acks and nacks as they come, in order, and queues their
// answers (at most [maxConsumeAnswers]); the handler's goroutine sends what is queued, every
// answer and event waiting in one message each (events up to [maxConsumeBatchBytes]).
// Each send is bounded by [Options.ConsumeSendTimeout] (a second once the server is
// closing): a watchdog aborts the stream's writes once a send is past its bound, so that a
// client that does not read cannot hold the server.
//
// The stream ends, and the consumer leaves the group (its events in flight are delivered
// again to the others), when the client ends its side (nil), when a message breaks the
// protocol (InvalidArgument: a second join, a message with no kind, an ack or nack whose ids
// are not 1 to 10,000 UUIDs, a nack with a wrong action or delay), when the group is deleted
// or the manager closes (the consumer's error), when the server closes ([ErrShuttingDown]),
// or with the error of recv or send. serveConsume waits for its goroutines before it returns.
func (s *Server) serveConsume(ctx context.Context, proc string, recv func() (*annalsv1.ConsumeRequest, error), send func(*annalsv1.ConsumeResponse) error, sc streamControl) error {
	closing, done, err := s.beginLong(ctx, &s.consumeStreams)
	if err != nil {
		return err
	}
	defer done()
	w := newSendWatch(s.opts.ConsumeSendTimeout, sc.abortWrites)
	defer w.stop()
	defer context.AfterFunc(closing, w.cut)()
	j, err := readJoin(ctx, closing, recv, sc)
	if err != nil {
		return err
	}
	c, joined, err := s.join(closing, proc, j)
	if err != nil {
		return err
	}
	defer c.Close()
	if err := w.send(send, &annalsv1.ConsumeResponse{Kind: &annalsv1.ConsumeResponse_Joined{Joined: joined}}); err != nil {
		return err
	}
	cs := &consumeStream{
		s: s, req: ctx, ctx: closing, proc: proc, c: c, send: send, watch: w,
		events: make(chan groups.Message, min(int(joined.Window), maxConsumeQueued)), answers: make(chan answer, maxConsumeAnswers),
		ended: make(chan struct{}),
	}
	return cs.run(recv, sc)
}

// closedError is the error of a stream whose closing context ended: the request's end, or
// the server's Close.
func closedError(req context.Context) error {
	if err := req.Err(); err != nil {
		return err
	}
	return ErrShuttingDown
}

// consumeProtocolError is the error that ends a Consume stream whose client broke the
// protocol.
func consumeProtocolError(format string, args ...any) error {
	return connect.NewError(connect.CodeInvalidArgument, fmt.Errorf("Consume: "+format, args...))
}

// readJoin reads the first message of a Consume stream, which must be a join, within
// [ConsumeJoinTimeout] and before closing ends.
func readJoin(req, closing context.Context, recv func() (*annalsv1.ConsumeRequest, error), sc streamControl) (*annalsv1.ConsumeJoin, error) {
	stop := context.AfterFunc(closing, sc.interrupt)
	timer := time.AfterFunc(ConsumeJoinTimeout, sc.interrupt)
	m, err := recv()
	late := !timer.Stop()
	stop()
	switch {
	case closing.Err() != nil:
		return nil, closedError(req)
	case late:
		return nil, connect.NewError(connect.CodeDeadlineExceeded, fmt.Errorf("Consume: no join within %v", ConsumeJoinTimeout))
	case errors.Is(err, io.EOF):
		return nil, consumeProtocolError("the stream ended before its join")
	case err != nil:
		return nil, err
	}
	j := m.GetJoin()
	if j == nil {
		return nil, consumeProtocolError("the first message must be a join")
	}
	return j, nil
}

// join checks j, authorizes reading its group, and joins a consumer to it. It returns the
// consumer and the joined message that answers j.
func (s *Server) join(ctx context.Context, proc string, j *annalsv1.ConsumeJoin) (groups.Consumer, *annalsv1.ConsumeJoined, error) {
	if err := groups.ValidateName("group", j.Group); err != nil {
		return nil, nil, err
	}
	if j.Name != "" {
		if err := groups.ValidateName("consumer", j.Name); err != nil {
			return nil, nil, err
		}
	}
	if j.Window > groups.MaxWindow {
		return nil, nil, consumeProtocolError("window %d is over %d", j.Window, groups.MaxWindow)
	}
	mgr, err := s.groupManager(ctx)
	if err != nil {
		return nil, nil, err
	}
	if _, err := s.authorizeGroupRead(ctx, proc, mgr, j.Group); err != nil {
		return nil, nil, err
	}
	c, err := mgr.Join(ctx, j.Group, &groups.JoinOptions{Name: j.Name, Window: int(j.Window)})
	if err != nil {
		return nil, nil, err
	}
	joined := &annalsv1.ConsumeJoined{Window: j.Window}
	if joined.Window == 0 {
		joined.Window = groups.DefaultWindow
	}
	if id, ok := c.(interface{ ID() string }); ok {
		joined.ConsumerId = id.ID()
	}
	return c, joined, nil
}

// notInFlight is the engine's error for the events of an ack or nack that were not in
// flight: it names their ids.
type notInFlight interface {
	error
	NotInFlightIDs() []string
}

// answer is the answer to an ack or nack: settled (err nil) or a settle error.
type answer struct {
	seq uint64
	ids []string
	err error
}

// consumeStream is the state of one Consume stream once its consumer joined.
type consumeStream struct {
	s     *Server
	req   context.Context // the request's
	ctx   context.Context // the request's, ended by the server's Close too
	proc  string
	c     groups.Consumer
	send  func(*annalsv1.ConsumeResponse) error
	watch *sendWatch

	events  chan groups.Message // from the pump
	answers chan answer         // from the reader

	// ended is closed by end, with endErr, the first reason the stream ends.
	ended   chan struct{}
	endOnce sync.Once
	endErr  error
}

// end ends the stream with err, unless it ended already.
func (cs *consumeStream) end(err error) {
	cs.endOnce.Do(func() {
		cs.endErr = err
		close(cs.ended)
	})
}

// run serves the stream until it ends, then stops the reader (interrupt) and the pump and
// waits for them.
func (cs *consumeStream) run(recv func() (*annalsv1.ConsumeRequest, error), sc streamControl) error {
	pctx, cancel := context.WithCancel(cs.ctx)
	var wg sync.WaitGroup
	wg.Go(func() { cs.read(recv) })
	wg.Go(func() { cs.pump(pctx) })
	cs.end(cs.write())
	sc.interrupt()
	cancel()
	wg.Wait()
	return cs.endErr
}

// pump takes the consumer's messages into events until ctx ends or Receive fails.
func (cs *consumeStream) pump(ctx context.Context) {
	for {
		m, err := cs.c.Receive(ctx)
		if err != nil {
			if ctx.Err() == nil {
				cs.end(err)
			}
			return
		}
		select {
		case cs.events <- m:
		case <-ctx.Done():
			return
		}
	}
}

// read settles the acks and nacks of recv, in order, and queues their answers, until recv
// fails (io.EOF: the client ended its side) or a message breaks the protocol.
func (cs *consumeStream) read(recv func() (*annalsv1.ConsumeRequest, error)) {
	for {
		m, err := recv()
		switch {
		case errors.Is(err, io.EOF):
			cs.end(nil)
			return
		case err != nil:
			cs.end(err)
			return
		}
		a, ok, err := cs.settle(m)
		if err != nil {
			cs.end(err)
			return
		}
		if !ok {
			continue
		}
		select {
		case cs.answers <- a:
		case <-cs.ended:
			return
		}
	}
}

// settle acks or nacks the events of m and returns its answer, and whether it needs one (a
// seq, or an error); or the protocol error of m.
func (cs *consumeStream) settle(m *annalsv1.ConsumeRequest) (answer, bool, error) {
	var (
		seq uint64
		raw []string
		err error
	)
	switch k := m.Kind.(type) {
	case *annalsv1.ConsumeRequest_Ack:
		seq, raw = k.Ack.Seq, k.Ack.Ids
		ids, perr := wire.UUIDsFromProto("ack", k.Ack.Ids)
		if perr != nil {
			return answer{}, false, perr
		}
		err = cs.c.Ack(cs.ctx, ids...)
	case *annalsv1.ConsumeRequest_Nack:
		seq, raw = k.Nack.Seq, k.Nack.Ids
		ids, perr := wire.UUIDsFromProto("nack", k.Nack.Ids)
		if perr != nil {
			return answer{}, false, perr
		}
		n, perr := wire.NackFromProto(k.Nack)
		if perr != nil {
			return answer{}, false, perr
		}
		err = cs.c.Nack(cs.ctx, n, ids...)
	case *annalsv1.ConsumeRequest_Join:
		return answer{}, false, consumeProtocolError("a second join")
	default:
		return answer{}, false, consumeProtocolError("a message with neither join, ack nor nack")
	}
	if err == nil {
		return answer{seq: seq}, seq != 0, nil
	}
	if cs.ctx.Err() != nil && errors.Is(err, cs.ctx.Err()) {
		err = closedError(cs.req) // the server is closing: not the client's context
	}
	return answer{seq: seq, ids: raw, err: err}, true, nil
}

// write sends the answers and events queued, as they come, until the stream ends, the
// server closes, or a send fails.
func (cs *consumeStream) write() error {
	var (
		settled []uint64
		errs    []*annalsv1.ConsumeSettleError
		batch   []*annalsv1.GroupMessage
		size    int
	)
	take := func(a answer) {
		if a.err == nil {
			settled = append(settled, a.seq)
			return
		}
		_, msg, detail := cs.s.explain(cs.ctx, cs.proc, a.err)
		se := &annalsv1.ConsumeSettleError{Ids: a.ids, Message: msg, Seq: a.seq}
		if detail != nil {
			se.Reason = detail.Reason
		}
		if nif, ok := errors.AsType[notInFlight](a.err); ok {
			se.NotInFlight = nif.NotInFlightIDs()
		}
		errs = append(errs, se)
	}
	add := func(m groups.Message) {
		pm := wire.GroupMessageToProto(&m)
		batch = append(batch, pm)
		size += proto.Size(pm)
	}
	for {
		select {
		case <-cs.ended:
			if cs.endErr == nil {
				// The client ended its side: answer the acks and nacks it sent before, which
				// the reader queued before it ended the stream.
				for len(cs.answers) > 0 {
					take(<-cs.answers)
				}
				return cs.sendAnswers(settled, errs)
			}
			return cs.endErr
		case <-cs.ctx.Done():
			return closedError(cs.req)
		case a := <-cs.answers:
			take(a)
		case m := <-cs.events:
			add(m)
		}
	drain:
		for size < maxConsumeBatchBytes {
			select {
			case a := <-cs.answers:
				take(a)
			case m := <-cs.events:
				add(m)
			default:
				break drain
			}
		}
		// The events first: one taken from the group before an ack was settled is sent before
		// the ack's answer, so that the client, which drops its copies of the events an ack
		// settled once the answer comes, never hands out one of them after it.
		if len(batch) > 0 {
			if err := cs.watch.send(cs.send, &annalsv1.ConsumeResponse{Kind: &annalsv1.ConsumeResponse_Events{Events: &annalsv1.ConsumeEvents{Messages: batch}}}); err != nil {
				return err
			}
			batch, size = nil, 0
		}
		if err := cs.sendAnswers(settled, errs); err != nil {
			return err
		}
		settled, errs = settled[:0], errs[:0]
	}
}

// sendAnswers sends the answers to acks and nacks: the settled ones in one message, then each
// settle error.
func (cs *consumeStream) sendAnswers(settled []uint64, errs []*annalsv1.ConsumeSettleError) error {
	if len(settled) > 0 {
		if err := cs.watch.send(cs.send, &annalsv1.ConsumeResponse{Kind: &annalsv1.ConsumeResponse_Settled{Settled: &annalsv1.ConsumeSettled{Seqs: settled}}}); err != nil {
			return err
		}
	}
	for _, se := range errs {
		if err := cs.watch.send(cs.send, &annalsv1.ConsumeResponse{Kind: &annalsv1.ConsumeResponse_SettleError{SettleError: se}}); err != nil {
			return err
		}
	}
	return nil
}

// sendWatch bounds the sends of one stream: a watchdog looks at the running send every
// batchWatchPeriod (or the bound, when shorter) and aborts the stream's writes once it is
// past its bound. Its methods are safe for concurrent use.
type sendWatch struct {
	timeout time.Duration
	period  time.Duration
	abort   func()

	mu struct {
		sync.Mutex
		by    time.Time   // the bound of the send running; zero when none runs
		cut   bool        // the server is closing: sends get batchCloseGrace
		timer *time.Timer // nil once stopped
	}
}

// newSendWatch starts a watchdog of sends bounded by timeout (0: [DefaultConsumeSendTimeout])
// that calls abort on a late one. Stop it with stop.
func newSendWatch(timeout time.Duration, abort func()) *sendWatch {
	if timeout <= 0 {
		timeout = DefaultConsumeSendTimeout
	}
	w := &sendWatch{timeout: timeout, period: min(batchWatchPeriod, timeout), abort: abort}
	w.mu.timer = time.AfterFunc(w.period, w.check)
	return w
}

// send calls fn(m) under the bound.
func (w *sendWatch) send(fn func(*annalsv1.ConsumeResponse) error, m *annalsv1.ConsumeResponse) error {
	w.mu.Lock()
	d := w.timeout
	if w.mu.cut {
		d = min(d, batchCloseGrace)
	}
	w.mu.by = time.Now().Add(d)
	w.mu.Unlock()
	err := fn(m)
	w.mu.Lock()
	w.mu.by = time.Time{}
	w.mu.Unlock()
	return err
}

// cut gives the send running, and those to come, at most batchCloseGrace: the server is
// closing.
func (w *sendWatch) cut() {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.mu.cut = true
	if grace := time.Now().Add(batchCloseGrace); !w.mu.by.IsZero() && grace.Before(w.mu.by) {
		w.mu.by = grace
	}
}

func (w *sendWatch) check() {
	w.mu.Lock()
	late := !w.mu.by.IsZero() && time.Now().After(w.mu.by)
	if !late && w.mu.timer != nil {
		w.mu.timer.Reset(w.period)
	}
	w.mu.Unlock()
	if late {
		w.abort()
	}
}

// stop stops the watchdog.
func (w *sendWatch) stop() {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.mu.timer.Stop()
	w.mu.timer = nil
}
