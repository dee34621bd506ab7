package server

import (
	"context"
	"errors"
	"fmt"
	"io"
	"runtime"
	"sync"
	"time"

	"connectrpc.com/connect"
	annalsv1 "github.com/annalsdb/annals/internal/gen/annals/v1"
	"google.golang.org/protobuf/proto"
)

// MaxBatchInFlight bounds the appends of one BatchAppend stream that the server holds at
// once: being made, or answered but not yet sent. A stream that reaches it is not read until
// some of its results are sent, so that a client that sends faster than the store commits
// waits in HTTP/2's flow control.
const MaxBatchInFlight = 256

// BatchSendTimeout bounds each send of a BatchAppend stream's results: a client that reads
// none for this long (its flow-control window full) has its stream broken, so that it cannot
// hold the server's goroutines and budget for ever.
const BatchSendTimeout = 30 * time.Second

// batchCloseGrace bounds the sends of a BatchAppend stream once the server is closing and
// the stream's appends in the store are answered, so that a client that does not read cannot
// hold [Server.Close] longer.
const batchCloseGrace = time.Second

// batchWatchPeriod is how often a stream's watchdog looks at its running send: a send is cut
// at most this long after its bound. The watchdog, not a write deadline per send, enforces
// the bounds, because setting a deadline over HTTP/2 is a hand-off to the connection's serve
// loop, twice per send (it cost a sixth of the CPU of one-append messages).
const batchWatchPeriod = 250 * time.Millisecond

// BatchAppend serves a BatchAppend stream through [Server.serveBatch].
func (v *service) BatchAppend(ctx context.Context, stream *connect.BidiStream[annalsv1.BatchAppendRequest, annalsv1.BatchAppendResponse]) error {
	proc := stream.Spec().Procedure
	if err := v.s.serveBatch(ctx, proc, stream.Receive, stream.Send, streamControlOf(ctx)); err != nil {
		return v.s.toConnect(ctx, proc, err)
	}
	return nil
}

// serveBatch serves one BatchAppend stream over any transport: recv returns the next request
// message (io.EOF when the client has sent its last), send sends a response message, and
// sc's interrupt makes a blocked recv return (serveBatch calls recv in a goroutine of its
// own, the reader, which also starts the appends; once the stream must end, serveBatch
// interrupts it and waits for it before it waits for the appends). recv is called from one
// goroutine, send from one goroutine at a time, each send bounded by [BatchSendTimeout]
// (batchCloseGrace once the server is closing and the appends in the store are answered):
// a watchdog aborts sc's writes once a send is past its bound.
//
// Each append runs as a unary Append does ([Server.append]), in a goroutine of its own, so
// that the store commits the appends of the stream together; at most [MaxBatchInFlight] at a
// time. The encoded size of each message is taken from the server's request budget once it
// is read, and of each of its appends from then until the append returns; a message that
// finds no room (at once, or within [Options.RequestBudgetWait] when sc may wait) has its
// appends answered ResourceExhausted. The results are
// sent by the goroutine of an append that queued one while no send ran: it sends the results
// gathered since the last send in one response message, until none wait (no goroutine of
// its own to wake for each message).
//
// The stream ends, after the appends handed to the store are answered, when the client ends
// its side (nil), when a message breaks the protocol (InvalidArgument: no append, an append
// without its AppendRequest, an id still in flight), when the server closes
// ([ErrShuttingDown]), or with the error of recv or send. A stream runs at most
// MaxBatchInFlight+2 goroutines (its appends, one that sends results after its own was
// answered, and a reader) and waits for them all before it returns.
func (s *Server) serveBatch(ctx context.Context, proc string, recv func() (*annalsv1.BatchAppendRequest, error), send func(*annalsv1.BatchAppendResponse) error, sc streamControl) error {
	closing, done, err := s.beginLong(ctx, &s.batchStreams)
	if err != nil {
		return err
	}
	defer done()
	b := &batcher{s: s, ctx: ctx, proc: proc, send: send, abort: sc.abortWrites, wait: sc.wait,
		slots: make(chan struct{}, MaxBatchInFlight), broken: make(chan struct{})}
	b.mu.ids = make(map[uint64]struct{})
	b.watch()
	defer b.unwatch()
	read := make(chan struct{}) // closed when the reader returned
	go func() {
		defer close(read)
		err = b.read(closing, recv)
	}()
	select {
	case <-read:
	case <-closing.Done():
	case <-b.broken:
	}
	sc.interrupt()
	<-read
	if closing.Err() != nil {
		b.stored.Wait()
		b.cut()
	}
	b.appends.Wait() // their results are sent (or dropped, the stream being broken)
	if err == nil {
		b.mu.Lock()
		err = b.mu.sendErr
		b.mu.Unlock()
	}
	return err
}

// batcher is the state of one BatchAppend stream.
type batcher struct {
	s    *Server
	ctx  context.Context // the request's: the appends run under it, not under Close
	proc string
	send func(*annalsv1.BatchAppendResponse) error
	// abort makes the running send, and any to come, fail at once.
	abort func()
	wait  bool // a message may wait for room in the budget
	// slots holds a token for each append in flight: taken before the append starts, given
	// back once its result is sent (or dropped, the stream being broken).
	slots   chan struct{}
	appends sync.WaitGroup
	stored  sync.WaitGroup // the appends whose result is not queued yet
	broken  chan struct{}  // closed when a send failed

	mu struct {
		sync.Mutex
		ids     map[uint64]struct{}           // the appends in flight, by id
		running int                           // the appends admitted whose result is not queued yet
		results []*annalsv1.BatchAppendResult // waiting to be sent
		writing bool                          // an append's goroutine is sending results
		sendErr error                         // the first failed send; no result is sent after it
		sendBy  time.Time                     // the bound of the send running (zero: none runs)
		cut     bool                          // the server is closing: sends get batchCloseGrace
		watch   *time.Timer                   // the watchdog's; nil once the stream ended
	}
}

// read starts the appends of each message of recv, in the reader's goroutine (no hand-off
// per message), until the stream must end, and returns why: the stream's closing, a protocol
// error, recv's error, or nil when the client ended its side or a send failed (serveBatch
// returns the send's error).
func (b *batcher) read(closing context.Context, recv func() (*annalsv1.BatchAppendRequest, error)) error {
	for {
		m, err := recv()
		select {
		case <-closing.Done():
			return b.closed()
		case <-b.broken:
			return nil
		default:
		}
		switch {
		case errors.Is(err, io.EOF):
			return nil
		case err != nil:
			return err
		}
		if err := b.start(closing, m); err != nil {
			return err
		}
	}
}

// closed is the error of a stream whose closing context ended: the request's end, or the
// server's Close.
func (b *batcher) closed() error {
	if err := b.ctx.Err(); err != nil {
		return err
	}
	return ErrShuttingDown
}

// start checks m against the protocol, takes its size from the request budget (the message
// is within the budget's largest request) and starts each append once a slot is free, handing
// it its own share; what no append took is given back once they are started.
func (b *batcher) start(closing context.Context, m *annalsv1.BatchAppendRequest) error {
	if err := b.admit(m); err != nil {
		return err
	}
	held := int64(proto.Size(m))
	busy := b.s.budget.acquire(closing, held, b.wait)
	if busy != nil {
		if closing.Err() != nil {
			return b.closed()
		}
		held = 0
	}
	defer func() { b.s.budget.release(held) }()
	for i, a := range m.Appends {
		select {
		case b.slots <- struct{}{}:
		case <-closing.Done():
			b.mu.Lock()
			b.mu.running -= len(m.Appends) - i // admitted, never to run
			b.mu.Unlock()
			return b.closed()
		}
		var n int64
		if busy == nil {
			n = int64(proto.Size(a)) // within its message's size
			held -= n
		}
		b.stored.Add(1)
		b.appends.Go(func() { b.run(a, n, busy) })
	}
	return nil
}

// admit registers the ids of m's appends, or returns the protocol error of m.
func (b *batcher) admit(m *annalsv1.BatchAppendRequest) error {
	if len(m.Appends) == 0 {
		return protocolError("a request message with no appends")
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	for i, a := range m.Appends {
		if a.Append == nil {
			return protocolError("append %d of a request message (id %d) has no AppendRequest", i, a.Id)
		}
		if _, dup := b.mu.ids[a.Id]; dup {
			return protocolError("id %d is already in flight", a.Id)
		}
		b.mu.ids[a.Id] = struct{}{}
	}
	b.mu.running += len(m.Appends)
	return nil
}

// protocolError is the error that ends a BatchAppend stream whose client broke the protocol.
func protocolError(format string, args ...any) error {
	return connect.NewError(connect.CodeInvalidArgument, fmt.Errorf("BatchAppend: "+format, args...))
}

// run makes one append, gives back its share n of the budget, and queues its result, which
// it sends itself (see write) when no other goroutine is sending; err, when not nil, answers
// the append without making it.
func (b *batcher) run(a *annalsv1.BatchAppend, n int64, err error) {
	var ok *annalsv1.AppendResponse
	if err == nil {
		ok, err = b.s.append(b.ctx, b.proc, a.Append)
	}
	b.s.budget.release(n)
	r := &annalsv1.BatchAppendResult{Id: a.Id}
	if err != nil {
		r.Result = &annalsv1.BatchAppendResult_Error{Error: b.s.toStatus(b.ctx, b.proc, err)}
	} else {
		r.Result = &annalsv1.BatchAppendResult_Ok{Ok: ok}
	}
	b.mu.Lock()
	b.mu.running--
	failed, write := b.mu.sendErr != nil, false
	if !failed {
		b.mu.results = append(b.mu.results, r)
		write = !b.mu.writing
		b.mu.writing = true
	}
	b.mu.Unlock()
	b.stored.Done()
	if failed {
		b.answered([]*annalsv1.BatchAppendResult{r})
	} else if write {
		b.write()
	}
}

// write sends the results waiting, all of them in one message, until none wait (take then
// ends the writing) or a send fails.
func (b *batcher) write() {
	for {
		// The appends the store commits together finish together: let the others of the
		// group queue their results before this message takes what is there. With none of
		// them left running, yielding would only delay the message.
		if b.waiting() {
			runtime.Gosched()
		}
		results := b.take()
		if len(results) == 0 {
			return
		}
		b.arm()
		err := b.send(&annalsv1.BatchAppendResponse{Results: results})
		b.disarm()
		b.answered(results)
		if err != nil {
			b.fail(err)
			return
		}
	}
}

// arm starts the bound of a send: BatchSendTimeout, or batchCloseGrace once cut.
func (b *batcher) arm() {
	b.mu.Lock()
	defer b.mu.Unlock()
	d := BatchSendTimeout
	if b.mu.cut {
		d = batchCloseGrace
	}
	b.mu.sendBy = time.Now().Add(d)
}

// disarm ends the bound of the send that returned.
func (b *batcher) disarm() {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.mu.sendBy = time.Time{}
}

// cut gives the send running, and those to come, batchCloseGrace: the server is closing and
// the stream's appends in the store are answered.
func (b *batcher) cut() {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.mu.cut = true
	if grace := time.Now().Add(batchCloseGrace); !b.mu.sendBy.IsZero() && grace.Before(b.mu.sendBy) {
		b.mu.sendBy = grace
	}
}

// watch starts the watchdog: every batchWatchPeriod it aborts the writes of a send that is
// past its bound (the send fails, and the stream with it).
func (b *batcher) watch() {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.mu.watch = time.AfterFunc(batchWatchPeriod, b.check)
}

func (b *batcher) check() {
	b.mu.Lock()
	late := !b.mu.sendBy.IsZero() && time.Now().After(b.mu.sendBy)
	if !late && b.mu.watch != nil {
		b.mu.watch.Reset(batchWatchPeriod)
	}
	b.mu.Unlock()
	if late {
		b.abort()
	}
}

// unwatch stops the watchdog.
func (b *batcher) unwatch() {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.mu.watch.Stop()
	b.mu.watch = nil
}

// waiting reports whether some appends admitted have not queued their result yet.
func (b *batcher) waiting() bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.mu.running > 0
}

// take returns the results waiting, and frees their ids: the client may reuse one as soon
// as it has its result, which may be before send returns. With none waiting, the writing
// ends: the next result queued starts it again.
func (b *batcher) take() []*annalsv1.BatchAppendResult {
	b.mu.Lock()
	defer b.mu.Unlock()
	results := b.mu.results
	b.mu.results = nil
	b.mu.writing = len(results) > 0
	for _, r := range results {
		delete(b.mu.ids, r.Id)
	}
	return results
}

// answered frees the slots of results, sent or dropped.
func (b *batcher) answered(results []*annalsv1.BatchAppendResult) {
	for range results {
		<-b.slots
	}
}

// fail records the error of a send: the results waiting and to come are dropped.
func (b *batcher) fail(err error) {
	b.mu.Lock()
	b.mu.sendErr = err
	b.mu.Unlock()
	b.answered(b.take())
	close(b.broken)
}
