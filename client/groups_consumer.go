package client

import (
	"context"
	"errors"
	"fmt"
	"io"
	"runtime"
	"slices"
	"strings"
	"sync"
	"time"

	"connectrpc.com/connect"
	"github.com/annalsdb/annals"
	"github.com/annalsdb/annals/groups"
	annalsv1 "github.com/annalsdb/annals/internal/gen/annals/v1"
	"github.com/annalsdb/annals/internal/wire"
)

// remoteConsumer is a consumer over a Consume stream. Two goroutines serve it: a reader
// takes the events and the answers off the stream, and a sender sends the acks and nacks of
// every caller that wait, packed: all the acks waiting (and all the nacks of one action)
// go in one message with one seq, so that while one message is sent the next callers
// gather, and the server answers each message once.
type remoteConsumer struct {
	g      *remoteGroups
	stream *connect.BidiStreamForClient[annalsv1.ConsumeRequest, annalsv1.ConsumeResponse]
	cancel context.CancelFunc // cuts the stream
	window int
	notify chan struct{} // capacity 1: a message was queued
	wake   chan struct{} // capacity 1: acks or nacks wait to be sent
	ended  chan struct{} // closed when the stream ended (mu.err is set)
	done   chan struct{} // closed when the reader returned
	sent   chan struct{} // closed when the sender returned

	// sendMu serialises the sends of the stream (Connect's Send is not safe for concurrent
	// use): the sender's and Close's.
	sendMu sync.Mutex

	mu struct {
		sync.Mutex
		// queue holds the messages received and not yet returned by Receive: at most the
		// window (see add); queued holds their ids (an id is queued at most once).
		queue  []groups.Message
		queued map[annals.UUID]struct{}
		// out holds the acks and nacks waiting to be sent; pending those sent, by the seq
		// of their message, waiting for its answer. Each caller waits for its own, so they
		// hold at most one chunk of ids per caller waiting.
		out     []*settleCall
		seq     uint64
		pending map[uint64][]*settleCall
		err     error // why the consumer ended; nil while it runs
		closed  bool  // Close was called
	}
}

// settleCall is one chunk of the ids of an Ack or Nack call (at most [wire.MaxSettleIDs]),
// waiting for its answer.
type settleCall struct {
	ids  []string
	nack *groups.Nack // nil for an ack
	ch   chan error   // capacity 1: the answer
}

// join sends the join and returns the server's answer.
func (rc *remoteConsumer) join(name string, o *groups.JoinOptions) (*annalsv1.ConsumeJoined, error) {
	err := rc.stream.Send(&annalsv1.ConsumeRequest{Kind: &annalsv1.ConsumeRequest_Join{Join: &annalsv1.ConsumeJoin{Group: name, Name: o.Name, Window: uint32(o.Window)}}})
	if err != nil && !errors.Is(err, io.EOF) {
		return nil, err
	}
	// At io.EOF the server ended the stream: Receive returns why.
	m, err := rc.stream.Receive()
	if err != nil {
		return nil, err
	}
	j := m.GetJoined()
	if j == nil {
		return nil, fmt.Errorf("annals client: the server answered a join with %T, not joined", m.Kind)
	}
	return j, nil
}

// read reads the stream until it ends: it queues the events and hands the answers to the
// acks and nacks waiting for them.
func (rc *remoteConsumer) read() {
	for {
		m, err := rc.stream.Receive()
		if err != nil {
			rc.end(err)
			return
		}
		switch k := m.Kind.(type) {
		case *annalsv1.ConsumeResponse_Events:
			msgs := make([]groups.Message, 0, len(k.Events.Messages))
			for _, pm := range k.Events.Messages {
				gm, err := wire.GroupMessageFromProto(pm)
				if err != nil {
					rc.end(fmt.Errorf("annals client: an event from the server: %w", err))
					return
				}
				msgs = append(msgs, gm)
			}
			rc.add(msgs)
		case *annalsv1.ConsumeResponse_Settled:
			rc.mu.Lock()
			for _, seq := range k.Settled.Seqs {
				rc.answerLocked(seq, nil)
			}
			rc.mu.Unlock()
		case *annalsv1.ConsumeResponse_SettleError:
			rc.mu.Lock()
			rc.answerErrorLocked(k.SettleError)
			rc.mu.Unlock()
		default:
			rc.end(fmt.Errorf("annals client: unexpected message %T on a Consume stream", m.Kind))
			return
		}
	}
}

// settleError is the error of a settle_error answer.
func settleError(se *annalsv1.ConsumeSettleError) error {
	sentinels := map[string]error{
		wire.ReasonNotInFlight:    groups.ErrNotInFlight,
		wire.ReasonGroupDeleted:   groups.ErrGroupDeleted,
		wire.ReasonConsumerClosed: groups.ErrConsumerClosed,
		wire.ReasonClosed:         annals.ErrClosed,
		wire.ReasonShuttingDown:   annals.ErrClosed,
	}
	if s, ok := sentinels[se.Reason]; ok {
		return &remoteError{sentinel: s, err: connect.NewError(connect.CodeFailedPrecondition, errors.New(se.Message))}
	}
	return fmt.Errorf("annals client: %s", se.Message)
}

// notInFlightError is the error of a call whose events of ids were not in flight.
func notInFlightError(ids []string) error {
	msg := groups.ErrNotInFlight.Error() + ": " + strings.Join(ids, ", ")
	return &remoteError{sentinel: groups.ErrNotInFlight, err: connect.NewError(connect.CodeFailedPrecondition, errors.New(msg))}
}

// answerLocked hands err to the calls of the message seq, if they still wait.
func (rc *remoteConsumer) answerLocked(seq uint64, err error) {
	calls, ok := rc.mu.pending[seq]
	if !ok {
		return
	}
	delete(rc.mu.pending, seq)
	for _, x := range calls {
		x.ch <- err
	}
}

// answerErrorLocked hands the settle_error se to the calls of its message: when it names
// the events not in flight, each call gets an error naming its own (nil when none is);
// otherwise every call gets it.
func (rc *remoteConsumer) answerErrorLocked(se *annalsv1.ConsumeSettleError) {
	calls, ok := rc.mu.pending[se.Seq]
	if !ok {
		return
	}
	delete(rc.mu.pending, se.Seq)
	if se.Reason != wire.ReasonNotInFlight || len(se.NotInFlight) == 0 {
		err := settleError(se)
		for _, x := range calls {
			x.ch <- err
		}
		return
	}
	missing := make(map[string]bool, len(se.NotInFlight))
	for _, id := range se.NotInFlight {
		missing[id] = true
	}
	for _, x := range calls {
		var mine []string
		for _, id := range x.ids {
			if missing[id] {
				mine = append(mine, id)
			}
		}
		if len(mine) == 0 {
			x.ch <- nil
			continue
		}
		x.ch <- notInFlightError(mine)
	}
}

// add queues msgs for Receive. A message of an event already queued replaces it (the server
// took the event back after the message timeout and delivered it again). The queue holds
// at most the window: the server never has more events in flight to the consumer, so when
// it would hold more, the oldest were taken back (and are delivered again) and are dropped.
func (rc *remoteConsumer) add(msgs []groups.Message) {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	if rc.mu.err != nil {
		return
	}
	if rc.mu.queued == nil {
		rc.mu.queued = make(map[annals.UUID]struct{})
	}
	for _, m := range msgs {
		if _, ok := rc.mu.queued[m.Event.ID]; ok {
			i := slices.IndexFunc(rc.mu.queue, func(q groups.Message) bool { return q.Event.ID == m.Event.ID })
			rc.mu.queue[i] = m
			continue
		}
		rc.mu.queue = append(rc.mu.queue, m)
		rc.mu.queued[m.Event.ID] = struct{}{}
	}
	if over := len(rc.mu.queue) - rc.window; over > 0 {
		for _, m := range rc.mu.queue[:over] {
			delete(rc.mu.queued, m.Event.ID)
		}
		rc.mu.queue = slices.Delete(rc.mu.queue, 0, over)
	}
	select {
	case rc.notify <- struct{}{}:
	default:
	}
}

// end ends the consumer with the error that ended its stream, unless it ended already, and
// fails the acks and nacks waiting.
func (rc *remoteConsumer) end(err error) {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	if rc.mu.err != nil {
		return
	}
	switch {
	case rc.mu.closed:
		err = fmt.Errorf("annals client: %w", groups.ErrConsumerClosed)
	case rc.g.c.life.Err() != nil:
		err = errClosed
	case errors.Is(err, io.EOF):
		err = fmt.Errorf("annals client: the server ended the Consume stream")
	default:
		err = fromConnect(err)
		if ce, ok := errors.AsType[*connect.Error](err); ok {
			if d := detailOf(ce); d != nil && d.Reason == wire.ReasonShuttingDown {
				err = &remoteError{sentinel: annals.ErrClosed, err: ce}
			}
		}
	}
	rc.mu.err = err
	rc.mu.queue, rc.mu.queued = nil, nil
	for seq := range rc.mu.pending {
		rc.answerLocked(seq, err)
	}
	for _, x := range rc.mu.out {
		x.ch <- err
	}
	rc.mu.out = nil
	close(rc.ended)
}

// Receive implements [groups.Consumer.Receive].
func (rc *remoteConsumer) Receive(ctx context.Context) (groups.Message, error) {
	for {
		if err := ctx.Err(); err != nil {
			return groups.Message{}, err
		}
		rc.mu.Lock()
		if len(rc.mu.queue) > 0 {
			m := rc.mu.queue[0]
			rc.mu.queue[0] = groups.Message{}
			rc.mu.queue = rc.mu.queue[1:]
			delete(rc.mu.queued, m.Event.ID)
			rc.mu.Unlock()
			return m, nil
		}
		err := rc.mu.err
		rc.mu.Unlock()
		if err != nil {
			return groups.Message{}, err
		}
		select {
		case <-ctx.Done():
			return groups.Message{}, ctx.Err()
		case <-rc.notify:
		case <-rc.ended:
		}
	}
}

// Ack implements [groups.Consumer.Ack]: its ids go to the server in the sender's next
// message (by [wire.MaxSettleIDs]), and it waits for the answer.
//
// The messages of ids still queued are dropped, before the ack is sent and again once it
// succeeded: a copy of an event received before the ack's answer is one the server took back
// (the ack settled another delivery of it, or none), and an event acked is not delivered
// again, as in process.
func (rc *remoteConsumer) Ack(ctx context.Context, ids ...annals.UUID) error {
	return rc.settle(ctx, ids, nil)
}

// Nack implements [groups.Consumer.Nack], as Ack; the messages of ids still queued are
// dropped before the nack is sent (a retry delivers the event again).
func (rc *remoteConsumer) Nack(ctx context.Context, n groups.Nack, ids ...annals.UUID) error {
	if err := n.Validate(); err != nil {
		return err
	}
	return rc.settle(ctx, ids, &n)
}

// settle queues the ids, in chunks of at most wire.MaxSettleIDs, for the sender, as an ack
// (nack nil) or a nack, and waits for their answers; it returns the first error. With no
// ids it only reports whether the consumer ended.
func (rc *remoteConsumer) settle(ctx context.Context, ids []annals.UUID, nack *groups.Nack) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if len(ids) == 0 {
		rc.mu.Lock()
		defer rc.mu.Unlock()
		return rc.mu.err
	}
	all := wire.UUIDsToProto(ids)
	calls := make([]*settleCall, 0, (len(all)+wire.MaxSettleIDs-1)/wire.MaxSettleIDs)
	rc.mu.Lock()
	if err := rc.mu.err; err != nil {
		rc.mu.Unlock()
		return err
	}
	rc.dropLocked(ids)
	for len(all) > 0 {
		x := &settleCall{ids: all[:min(len(all), wire.MaxSettleIDs)], nack: nack, ch: make(chan error, 1)}
		all = all[len(x.ids):]
		calls = append(calls, x)
		rc.mu.out = append(rc.mu.out, x)
	}
	rc.mu.Unlock()
	select {
	case rc.wake <- struct{}{}:
	default:
	}
	var first error
	for _, x := range calls {
		select {
		case err := <-x.ch:
			if err != nil && first == nil {
				first = err
			}
		case <-ctx.Done():
			// The calls stay queued or pending; their answers go to their buffered
			// channels, and nobody reads them.
			return ctx.Err()
		}
	}
	if nack == nil && first == nil {
		rc.drop(ids)
	}
	return first
}

// drop removes the messages of ids from the queue.
func (rc *remoteConsumer) drop(ids []annals.UUID) {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	rc.dropLocked(ids)
}

func (rc *remoteConsumer) dropLocked(ids []annals.UUID) {
	var set map[annals.UUID]struct{}
	for _, id := range ids {
		if _, ok := rc.mu.queued[id]; ok {
			if set == nil {
				set = make(map[annals.UUID]struct{})
			}
			set[id] = struct{}{}
			delete(rc.mu.queued, id)
		}
	}
	if set == nil {
		return
	}
	rc.mu.queue = slices.DeleteFunc(rc.mu.queue, func(m groups.Message) bool {
		_, ok := set[m.Event.ID]
		return ok
	})
}

// sendLoop sends the acks and nacks waiting, as they come, until the stream ends or a send
// fails (then the reader ends the consumer, which answers every call waiting).
func (rc *remoteConsumer) sendLoop() {
	for {
		select {
		case <-rc.wake:
			// While answers come back, their callers settle again: let them queue theirs,
			// so that one message takes them all. With none waiting for an answer,
			// yielding would only delay this one.
			if rc.waiting() {
				runtime.Gosched()
			}
		case <-rc.ended:
			return
		}
		for m := rc.take(); m != nil; m = rc.take() {
			rc.sendMu.Lock()
			err := rc.stream.Send(m)
			rc.sendMu.Unlock()
			if err != nil {
				return
			}
		}
	}
}

// waiting reports whether messages sent wait for their answer.
func (rc *remoteConsumer) waiting() bool {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	return len(rc.mu.pending) > 0
}

// take moves the calls waiting that go in one message to pending, under a new seq, and
// returns the message; nil when none wait or the consumer ended. The message takes the
// first call waiting and every later one of the same kind (an ack, or a nack of the same
// action, delay and reason) up to [wire.MaxSettleIDs] ids, but for a call that names an id
// the message has already: the server settles an id once per message, and the second call
// must learn that its event is not in flight any more.
func (rc *remoteConsumer) take() *annalsv1.ConsumeRequest {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	if rc.mu.err != nil || len(rc.mu.out) == 0 {
		return nil
	}
	first := rc.mu.out[0]
	var (
		batch []*settleCall
		ids   []string
		seen  map[string]struct{} // the ids of batch, once it has more than one call
		kept  int
	)
	for _, x := range rc.mu.out {
		if len(batch) > 0 && (!sameSettle(x.nack, first.nack) || len(ids)+len(x.ids) > wire.MaxSettleIDs || overlaps(&seen, ids, x.ids)) {
			rc.mu.out[kept] = x
			kept++
			continue
		}
		batch = append(batch, x)
		if len(batch) == 1 {
			ids = x.ids
			continue
		}
		if len(batch) == 2 {
			ids = slices.Clip(ids)
		}
		ids = append(ids, x.ids...)
		for _, id := range x.ids {
			seen[id] = struct{}{}
		}
	}
	clear(rc.mu.out[kept:])
	rc.mu.out = rc.mu.out[:kept]
	rc.mu.seq++
	seq := rc.mu.seq
	if rc.mu.pending == nil {
		rc.mu.pending = make(map[uint64][]*settleCall)
	}
	rc.mu.pending[seq] = batch
	if first.nack == nil {
		return &annalsv1.ConsumeRequest{Kind: &annalsv1.ConsumeRequest_Ack{Ack: &annalsv1.ConsumeAck{Ids: ids, Seq: seq}}}
	}
	m := wire.NackToProto(*first.nack, nil, seq)
	m.Ids = ids
	return &annalsv1.ConsumeRequest{Kind: &annalsv1.ConsumeRequest_Nack{Nack: m}}
}

// sameSettle reports whether a and b (nil: an ack) go in one message.
func sameSettle(a, b *groups.Nack) bool {
	if a == nil || b == nil {
		return a == b
	}
	return *a == *b
}

// overlaps reports whether next names one of ids, which *seen holds once it is made (it is
// made here, from ids, at the first call).
func overlaps(seen *map[string]struct{}, ids, next []string) bool {
	if *seen == nil {
		*seen = make(map[string]struct{}, len(ids)+len(next))
		for _, id := range ids {
			(*seen)[id] = struct{}{}
		}
	}
	for _, id := range next {
		if _, ok := (*seen)[id]; ok {
			return true
		}
	}
	return false
}

// Close implements [groups.Consumer.Close]: it ends its side of the stream, waits for the
// server to end it (at most consumerCloseGrace), and waits for the reader and the sender.
func (rc *remoteConsumer) Close() error {
	rc.mu.Lock()
	if rc.mu.closed {
		rc.mu.Unlock()
		<-rc.done
		<-rc.sent
		return nil
	}
	rc.mu.closed = true
	rc.mu.Unlock()
	rc.sendMu.Lock()
	_ = rc.stream.CloseRequest()
	rc.sendMu.Unlock()
	t := time.NewTimer(consumerCloseGrace)
	select {
	case <-rc.done:
	case <-t.C:
	}
	t.Stop()
	rc.cancel()
	<-rc.done
	<-rc.sent
	_ = rc.stream.CloseResponse()
	// Whatever ended the stream, the consumer is closed now.
	rc.mu.Lock()
	rc.mu.err = fmt.Errorf("annals client: %w", groups.ErrConsumerClosed)
	rc.mu.Unlock()
	return nil
}
