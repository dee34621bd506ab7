package client

import (
	"context"
	"errors"
	"io"
	"runtime"
	"sync"

	"connectrpc.com/connect"
	annalsv1 "github.com/annalsdb/annals/internal/gen/annals/v1"
	"google.golang.org/protobuf/proto"
)

// MaxPendingAppends bounds the appends of one [Client] that wait to be sent or wait for their
// result on its BatchAppend stream; an Append beyond it waits for room (or for its ctx).
const MaxPendingAppends = 1024

// maxBatchBytes bounds the encoded appends of one request message: the appends waiting go
// in as many messages as it takes (an append larger than that goes alone).
const maxBatchBytes = 1 << 20

// batchStream is one stream of BatchAppend messages to the server. The client's BatchAppend
// stream is one (connectBatch); another transport fits behind the same methods.
type batchStream interface {
	// Send sends one message. An error ends the stream; when it matches io.EOF the server
	// ended it, and Receive returns why.
	Send(*annalsv1.BatchAppendRequest) error
	// Receive returns the next message; io.EOF when the server ended the stream without an
	// error.
	Receive() (*annalsv1.BatchAppendResponse, error)
	// Close ends the stream: a Send or Receive running or to come returns an error. It may
	// be called while they run.
	Close()
}

// connectBatch is a BatchAppend call of the Connect client (gRPC protocol).
type connectBatch struct {
	*connect.BidiStreamForClient[annalsv1.BatchAppendRequest, annalsv1.BatchAppendResponse]
	cancel context.CancelFunc
}

// Close cancels the call and closes its request side: Go's HTTP/2 transport notices the
// cancellation only once the request body ends.
func (s *connectBatch) Close() {
	s.cancel()
	_ = s.CloseRequest()
}

// maxEnqueueTries bounds the streams an append tries when each is found broken before the
// append went in (a server that ends every stream at once).
const maxEnqueueTries = 3

// errNoBatch answers an append that must go through the unary call: the server does not
// serve BatchAppend.
var errNoBatch = errors.New("annals client: the server does not serve BatchAppend")

// batcher multiplexes the appends of a Client on one BatchAppend stream at a time, opened at
// the first append and again at the first one after it broke. A server that answers
// Unimplemented sends the client's appends to the unary call from then on.
type batcher struct {
	open  func(ctx context.Context) batchStream
	life  context.Context // the Client's
	slots chan struct{}   // a token per append waiting or in flight: MaxPendingAppends
	// wg counts the goroutines of the streams (two each); Client.Close waits for them.
	wg sync.WaitGroup

	// mu is taken inside a batchConn's mu (fail), never the other way.
	mu struct {
		sync.Mutex
		conn   *batchConn // the current stream; nil before the first append and once broken
		unary  bool       // the server does not serve BatchAppend
		closed bool       // the Client is closed: no stream is opened any more
	}
}

func newBatcher(life context.Context, open func(ctx context.Context) batchStream) *batcher {
	return &batcher{open: open, life: life, slots: make(chan struct{}, MaxPendingAppends)}
}

// call is one append on the stream.
type call struct {
	id   uint64
	req  *annalsv1.AppendRequest
	size int
	done chan callResult // buffered: the answer never waits for the caller
}

type callResult struct {
	ok  *annalsv1.AppendResponse
	err error
}

// append sends req on the stream and returns its answer: the error of its Status (see
// statusError), the stream's error when it broke first, errNoBatch when the server does not
// serve BatchAppend, ctx's error, or errClosed.
func (b *batcher) append(ctx context.Context, req *annalsv1.AppendRequest) (*annalsv1.AppendResponse, error) {
	select {
	case b.slots <- struct{}{}:
	case <-ctx.Done():
		return nil, ctx.Err()
	case <-b.life.Done():
		return nil, errClosed
	}
	x := &call{req: req, size: proto.Size(req), done: make(chan callResult, 1)}
	// A stream found broken before the append went in is already dropped (see fail): the
	// append was not sent, and goes to a new stream, up to maxEnqueueTries streams.
	for try := 1; ; try++ {
		conn, err := b.conn()
		if err != nil {
			<-b.slots
			return nil, err
		}
		if conn.enqueue(x) {
			break
		}
		if try == maxEnqueueTries {
			<-b.slots
			return nil, conn.err()
		}
	}
	select {
	case r := <-x.done:
		return r.ok, r.err
	case <-ctx.Done():
		return nil, ctx.Err()
	case <-b.life.Done():
		return nil, errClosed
	}
}

// finish answers x and frees its token.
func (b *batcher) finish(x *call, ok *annalsv1.AppendResponse, err error) {
	x.done <- callResult{ok: ok, err: err}
	<-b.slots
}

// conn returns the current stream, opening one if there is none.
func (b *batcher) conn() (*batchConn, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	switch {
	case b.mu.unary:
		return nil, errNoBatch
	case b.mu.closed:
		return nil, errClosed
	case b.mu.conn == nil:
		c := &batchConn{b: b, st: b.open(b.life), wake: make(chan struct{}, 1), done: make(chan struct{})}
		c.mu.pending = make(map[uint64]*call)
		b.wg.Add(2)
		go c.send()
		go c.receive()
		b.mu.conn = c
	}
	return b.mu.conn, nil
}

// drop forgets c, broken; unimplemented says the server does not serve BatchAppend.
func (b *batcher) drop(c *batchConn, unimplemented bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.mu.conn == c {
		b.mu.conn = nil
	}
	if unimplemented {
		b.mu.unary = true
	}
}

// close stops opening streams, ends the current one and waits for its goroutines.
func (b *batcher) close() {
	b.mu.Lock()
	b.mu.closed = true
	c := b.mu.conn
	b.mu.Unlock()
	if c != nil {
		c.fail(errClosed)
	}
	b.wg.Wait()
}

// batchConn is one BatchAppend stream: a sender that sends every append waiting in one
// message (so that while one Send runs the next appends gather), and a receiver that answers
// them by id.
type batchConn struct {
	b    *batcher
	st   batchStream
	wake chan struct{} // buffered: appends are waiting
	done chan struct{} // closed when the stream broke

	mu struct {
		sync.Mutex
		nextID   uint64
		queue    []*call          // waiting to be sent
		pending  map[uint64]*call // sent, by id
		answered bool             // a result came: the server serves BatchAppend
		err      error            // why the stream broke
	}
}

// enqueue queues x to be sent, or reports false when the stream is broken.
func (c *batchConn) enqueue(x *call) bool {
	c.mu.Lock()
	if c.mu.err != nil {
		c.mu.Unlock()
		return false
	}
	c.mu.nextID++
	x.id = c.mu.nextID
	c.mu.queue = append(c.mu.queue, x)
	c.mu.Unlock()
	select {
	case c.wake <- struct{}{}:
	default:
	}
	return true
}

// err returns why the stream broke.
func (c *batchConn) err() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.mu.err
}

func (c *batchConn) send() {
	defer c.b.wg.Done()
	for {
		select {
		case <-c.wake:
			// While answers come back, their callers append again: let them queue
			// theirs, so that one message takes them all. With no append in flight,
			// yielding would only delay this one.
			if c.inFlight() {
				runtime.Gosched()
			}
		case <-c.done:
			return
		}
		for m := c.take(); m != nil; m = c.take() {
			if err := c.st.Send(m); err != nil {
				if !errors.Is(err, io.EOF) {
					c.fail(err)
				}
				return // on io.EOF, the receiver learns why
			}
		}
	}
}

// inFlight reports whether some appends sent wait for their answer.
func (c *batchConn) inFlight() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.mu.pending) > 0
}

// take moves the appends waiting, up to maxBatchBytes of them, to pending and returns their
// message; nil when none wait or the stream is broken.
func (c *batchConn) take() *annalsv1.BatchAppendRequest {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.mu.err != nil || len(c.mu.queue) == 0 {
		return nil
	}
	n, size := 0, 0
	for n < len(c.mu.queue) && (n == 0 || size+c.mu.queue[n].size <= maxBatchBytes) {
		size += c.mu.queue[n].size
		n++
	}
	m := &annalsv1.BatchAppendRequest{Appends: make([]*annalsv1.BatchAppend, n)}
	for i, x := range c.mu.queue[:n] {
		m.Appends[i] = &annalsv1.BatchAppend{Id: x.id, Append: x.req}
		c.mu.pending[x.id] = x
	}
	rest := copy(c.mu.queue, c.mu.queue[n:])
	clear(c.mu.queue[rest:])
	c.mu.queue = c.mu.queue[:rest]
	return m
}

func (c *batchConn) receive() {
	defer c.b.wg.Done()
	for {
		m, err := c.st.Receive()
		if err != nil {
			c.fail(err)
			return
		}
		for _, r := range m.Results {
			c.answer(r)
		}
	}
}

// answer gives r to its append; a result for no append in flight is ignored.
func (c *batchConn) answer(r *annalsv1.BatchAppendResult) {
	c.mu.Lock()
	x := c.mu.pending[r.Id]
	delete(c.mu.pending, r.Id)
	c.mu.answered = true
	c.mu.Unlock()
	if x == nil {
		return
	}
	if st := r.GetError(); st != nil {
		c.b.finish(x, nil, statusError(st))
		return
	}
	c.b.finish(x, r.GetOk(), nil)
}

// fail breaks the stream with err: every append not answered fails with it (errNoBatch when
// the server does not serve BatchAppend, to be sent again by the unary call), and the next
// append opens a new stream.
func (c *batchConn) fail(err error) {
	if errors.Is(err, io.EOF) {
		err = connect.NewError(connect.CodeUnavailable, errors.New("the server ended the BatchAppend stream"))
	}
	c.mu.Lock()
	if c.mu.err != nil {
		c.mu.Unlock()
		return
	}
	unimplemented := !c.mu.answered && connect.CodeOf(err) == connect.CodeUnimplemented
	if unimplemented {
		err = errNoBatch
	}
	c.mu.err = err
	// Dropped in the same step: an append that finds c broken finds the batcher without it
	// (and unary when unimplemented), so that it goes to a new stream or the unary call.
	c.b.drop(c, unimplemented)
	calls := c.mu.queue
	for _, x := range c.mu.pending {
		calls = append(calls, x)
	}
	c.mu.queue, c.mu.pending = nil, nil
	c.mu.Unlock()
	close(c.done)
	c.st.Close()
	for _, x := range calls {
		c.b.finish(x, nil, err)
	}
}
