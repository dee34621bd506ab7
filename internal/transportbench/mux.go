package transportbench

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync"
	"sync/atomic"

	"github.com/annalsdb/annals"
	annalsv1 "github.com/annalsdb/annals/internal/gen/annals/v1"
	"github.com/annalsdb/annals/internal/wire"
)

// maxInFlight bounds the appends of one stream that the server runs or holds answered but not
// yet written, and the appends a client has queued but not yet sent.
const maxInFlight = 1024

// maxBatch bounds the appends in one request message and the results in one response.
const maxBatch = 256

// serverStream is the server's side of one BatchAppend stream. Recv returns io.EOF (or an
// error matching it) when the client has sent everything; Flush pushes what Send wrote to the
// network, for transports whose Send does not.
type serverStream interface {
	Recv() (*annalsv1.BatchAppendRequest, error)
	Send(*annalsv1.BatchAppendResponse) error
	Flush() error
}

// serve answers the appends of s until the client ends its side: each append runs in a
// goroutine of its own (at most maxInFlight at once), and one writer answers every result
// ready at once in one message, flushing when no result is waiting. It returns after every
// append started has finished.
func serve(ctx context.Context, st annals.Store, s serverStream) error {
	results := make(chan *annalsv1.BatchAppendResult, maxInFlight)
	slots := make(chan struct{}, maxInFlight)
	written := make(chan error, 1)
	go func() { written <- writeResults(s, results, slots) }()
	var wg sync.WaitGroup
	var err error
	for {
		req, rerr := s.Recv()
		if rerr != nil {
			if !errors.Is(rerr, io.EOF) {
				err = rerr
			}
			break
		}
		for _, a := range req.GetAppends() {
			slots <- struct{}{} // the writer frees the slot once it has taken the result
			wg.Go(func() { results <- appendOne(ctx, st, a) })
		}
	}
	wg.Wait()
	close(results)
	if werr := <-written; err == nil {
		err = werr
	}
	return err
}

// writeResults sends the results as they come, every one waiting at once in one message, and
// flushes when none is waiting. After a failed send it goes on taking results (and freeing
// their slots) without sending them, so that no append waits on it.
func writeResults(s serverStream, results <-chan *annalsv1.BatchAppendResult, slots <-chan struct{}) error {
	var err error
	for r := range results {
		<-slots
		batch := []*annalsv1.BatchAppendResult{r}
	more:
		for len(batch) < maxBatch {
			select {
			case r, ok := <-results:
				if !ok {
					break more
				}
				<-slots
				batch = append(batch, r)
			default:
				break more
			}
		}
		if err != nil {
			continue
		}
		err = s.Send(&annalsv1.BatchAppendResponse{Results: batch})
		if err == nil && len(results) == 0 {
			err = s.Flush()
		}
	}
	return err
}

// appendOne runs one append against the store and returns its result.
func appendOne(ctx context.Context, st annals.Store, a *annalsv1.BatchAppend) *annalsv1.BatchAppendResult {
	m := a.GetAppend()
	evs := make([]annals.Event, len(m.GetEvents()))
	var err error
	for i, e := range m.GetEvents() {
		if evs[i], err = wire.EventFromProto(e); err != nil {
			break
		}
	}
	var res annals.AppendResult
	if err == nil {
		res, err = st.Append(ctx, m.GetStream(), wire.ExpectedFromProto(m.GetExpected()), evs...)
	}
	if err != nil {
		return &annalsv1.BatchAppendResult{Id: a.GetId(), Result: &annalsv1.BatchAppendResult_Error{Error: statusOf(err)}}
	}
	return &annalsv1.BatchAppendResult{Id: a.GetId(), Result: &annalsv1.BatchAppendResult_Ok{Ok: &annalsv1.AppendResponse{Revision: res.Revision, Position: res.Position}}}
}

// The gRPC codes the harness answers with: enough to tell a conflict from the rest.
const (
	codeInvalidArgument = 3
	codeAborted         = 10
	codeInternal        = 13
)

func statusOf(err error) *annalsv1.Status {
	code := int32(codeInternal)
	switch {
	case errors.Is(err, annals.ErrWrongExpectedVersion):
		code = codeAborted
	case errors.Is(err, annals.ErrInvalidArgument):
		code = codeInvalidArgument
	}
	return &annalsv1.Status{Code: code, Message: err.Error()}
}

// clientStream is the client's side of one BatchAppend stream. Send need not push what it
// writes to the network until Flush; Close ends the stream and its connection.
type clientStream interface {
	Send(*annalsv1.BatchAppendRequest) error
	Recv() (*annalsv1.BatchAppendResponse, error)
	Flush() error
	Close() error
}

// client multiplexes the appends of any number of goroutines over one stream. It holds one
// entry per unanswered append (as many as there are goroutines appending at once) and queues
// at most maxInFlight appends not yet sent.
type client struct {
	s     clientStream
	queue chan *call
	ids   atomic.Uint64

	mu      sync.Mutex
	pending map[uint64]*call
	err     error // why the stream ended; set once, before done is closed
	done    chan struct{}
}

// call is one append waiting for its result.
type call struct {
	m      *annalsv1.BatchAppend
	result chan *annalsv1.BatchAppendResult
}

func newClient(s clientStream) *client {
	c := &client{s: s, queue: make(chan *call, maxInFlight), pending: map[uint64]*call{}, done: make(chan struct{})}
	go c.send()
	go c.receive()
	return c
}

// Append sends one append on the stream and waits for its result. A conflict matches
// annals.ErrWrongExpectedVersion. It is safe for concurrent use.
func (c *client) Append(ctx context.Context, stream string, expected annals.ExpectedRevision, events ...annals.Event) (annals.AppendResult, error) {
	m := &annalsv1.AppendRequest{Stream: stream, Expected: wire.ExpectedToProto(expected), Events: make([]*annalsv1.Event, len(events))}
	for i := range events {
		m.Events[i] = wire.EventToProto(&events[i])
	}
	k := &call{m: &annalsv1.BatchAppend{Id: c.ids.Add(1), Append: m}, result: make(chan *annalsv1.BatchAppendResult, 1)}
	c.mu.Lock()
	if c.err != nil {
		c.mu.Unlock()
		return annals.AppendResult{}, c.err
	}
	c.pending[k.m.Id] = k
	c.mu.Unlock()
	select {
	case c.queue <- k:
	case <-ctx.Done():
		c.forget(k.m.Id)
		return annals.AppendResult{}, ctx.Err()
	case <-c.done:
		return annals.AppendResult{}, c.err
	}
	select {
	case r := <-k.result:
		return resultOf(r)
	case <-ctx.Done():
		c.forget(k.m.Id)
		return annals.AppendResult{}, ctx.Err()
	case <-c.done:
		return annals.AppendResult{}, c.err
	}
}

func resultOf(r *annalsv1.BatchAppendResult) (annals.AppendResult, error) {
	if s := r.GetError(); s != nil {
		switch s.GetCode() {
		case codeAborted:
			return annals.AppendResult{}, fmt.Errorf("%w: %s", annals.ErrWrongExpectedVersion, s.GetMessage())
		case codeInvalidArgument:
			return annals.AppendResult{}, fmt.Errorf("%w: %s", annals.ErrInvalidArgument, s.GetMessage())
		}
		return annals.AppendResult{}, fmt.Errorf("append: code %d: %s", s.GetCode(), s.GetMessage())
	}
	return annals.AppendResult{Revision: r.GetOk().GetRevision(), Position: r.GetOk().GetPosition()}, nil
}

func (c *client) forget(id uint64) {
	c.mu.Lock()
	delete(c.pending, id)
	c.mu.Unlock()
}

// send writes the queued appends, every one waiting at once in one message, and flushes when
// none is waiting.
func (c *client) send() {
	for {
		var k *call
		select {
		case k = <-c.queue:
		case <-c.done:
			return
		}
		req := &annalsv1.BatchAppendRequest{Appends: []*annalsv1.BatchAppend{k.m}}
	more:
		for len(req.Appends) < maxBatch {
			select {
			case k := <-c.queue:
				req.Appends = append(req.Appends, k.m)
			default:
				break more
			}
		}
		err := c.s.Send(req)
		if err == nil && len(c.queue) == 0 {
			err = c.s.Flush()
		}
		if err != nil {
			c.fail(fmt.Errorf("send: %w", err))
			return
		}
	}
}

// receive hands each result to the append waiting for it.
func (c *client) receive() {
	for {
		resp, err := c.s.Recv()
		if err != nil {
			c.fail(fmt.Errorf("receive: %w", err))
			return
		}
		for _, r := range resp.GetResults() {
			c.mu.Lock()
			k := c.pending[r.GetId()]
			delete(c.pending, r.GetId())
			c.mu.Unlock()
			if k != nil {
				k.result <- r
			}
		}
	}
}

// fail ends the stream with err: every waiting and later append returns it.
func (c *client) fail(err error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.err == nil {
		c.err = err
		close(c.done)
		c.s.Close()
	}
}

// Close ends the stream and its connection; waiting and later appends fail.
func (c *client) Close() error {
	c.fail(annals.ErrClosed)
	return nil
}
