package groups

import (
	"context"
	"fmt"
	"hash/maphash"
	"slices"
	"strings"
	"time"

	"github.com/annalsdb/annals"
)

// consumer is a member of a group, joined through [Manager.Join]. Its mutable fields are
// guarded by its group's mu.
type consumer struct {
	g      *group
	id     string
	name   string
	window int
	joined time.Time
	hash   uint64        // its part of the rendezvous hash
	notify chan struct{} // a delivery (capacity 1)
	done   chan struct{} // closed when it ends

	inflight map[annals.UUID]*entry
	mailbox  []slot // delivered, not yet received (stale slots are skipped)
	queue    queue  // pinned: entries waiting for it
	err      error  // why it ended; nil while joined

	delivered, acked, nacked uint64
}

// slot is a delivery waiting in a mailbox: stale once the entry was delivered again or settled.
type slot struct {
	e   *entry
	seq uint64
}

func (s slot) live(c *consumer) bool {
	return s.e.state == stInFlight && s.e.cons == c && s.e.seq == s.seq
}

func (c *consumer) hasRoomLocked() bool { return c.err == nil && len(c.inflight) < c.window }

func (c *consumer) compactMailboxLocked() {
	c.mailbox = slices.DeleteFunc(c.mailbox, func(s slot) bool { return !s.live(c) })
}

// endLocked ends c with err: its events in flight are dropped by the caller.
func (c *consumer) endLocked(err error) {
	if c.err == nil {
		c.err = err
		c.mailbox = nil
		close(c.done)
	}
}

// join adds a consumer to g.
func (g *group) join(opts *JoinOptions) (*consumer, error) {
	var o JoinOptions
	if opts != nil {
		o = *opts
	}
	if o.Window == 0 {
		o.Window = DefaultWindow
	}
	if o.Window < 0 || o.Window > MaxWindow {
		return nil, fmt.Errorf("%w: join: window %d is not between 1 and %d", annals.ErrInvalidArgument, o.Window, MaxWindow)
	}
	id := annals.NewUUID().String()
	if o.Name == "" {
		o.Name = "consumer-" + id[len(id)-12:]
	} else if err := ValidateName("consumer", o.Name); err != nil {
		return nil, err
	}
	c := &consumer{
		g: g, id: id, name: o.Name, window: o.Window, joined: time.Now().UTC(),
		hash:     maphash.String(g.seed, id),
		notify:   make(chan struct{}, 1),
		done:     make(chan struct{}),
		inflight: make(map[annals.UUID]*entry),
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.mu.ended != nil {
		return nil, g.mu.ended
	}
	if len(g.mu.consumers) >= MaxConsumers {
		return nil, fmt.Errorf("%w: group %q has %d", ErrTooManyConsumers, g.name, MaxConsumers)
	}
	g.mu.consumers = append(g.mu.consumers, c)
	g.rebalanceLocked()
	return c, nil
}

// ID returns the consumer's id, as [ConsumerInfo.ID] shows it.
func (c *consumer) ID() string { return c.id }

// Receive implements [Consumer.Receive].
func (c *consumer) Receive(ctx context.Context) (Message, error) {
	g := c.g
	for {
		if err := ctx.Err(); err != nil {
			return Message{}, err
		}
		g.mu.Lock()
		for len(c.mailbox) > 0 {
			s := c.mailbox[0]
			c.mailbox[0] = slot{}
			c.mailbox = c.mailbox[1:]
			if s.live(c) {
				m := Message{Event: s.e.ev, Retries: s.e.retries, Parked: s.e.replay}
				g.mu.Unlock()
				return m, nil
			}
		}
		err := c.err
		g.mu.Unlock()
		if err != nil {
			return Message{}, err
		}
		select {
		case <-ctx.Done():
			return Message{}, ctx.Err()
		case <-c.notify:
		case <-c.done:
		}
	}
}

// settle applies fn to each entry of ids in flight to c, and returns an error that matches
// [ErrNotInFlight] and names the others.
func (c *consumer) settle(ctx context.Context, ids []annals.UUID, fn func(e *entry)) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	g := c.g
	g.mu.Lock()
	defer g.mu.Unlock()
	if c.err != nil {
		return c.err
	}
	var missing []string
	var seen map[annals.UUID]bool // an id named twice in one call counts once
	if len(ids) > 1 {
		seen = make(map[annals.UUID]bool, len(ids))
	}
	for _, id := range ids {
		if seen != nil {
			if seen[id] {
				continue
			}
			seen[id] = true
		}
		e := c.inflight[id]
		if e == nil {
			missing = append(missing, id.String())
			continue
		}
		g.takeBackLocked(e)
		fn(e)
	}
	g.dispatchConsumerLocked(c)
	if len(missing) > 0 {
		return &notInFlightError{ids: missing}
	}
	return nil
}

// notInFlightError is the error of an ack or nack that named events not in flight: it
// matches [ErrNotInFlight] and names them. The server reads their ids through its
// NotInFlightIDs method, to tell each caller whose acks a client packed in one message of
// its own.
type notInFlightError struct{ ids []string }

func (e *notInFlightError) Error() string {
	return ErrNotInFlight.Error() + ": " + strings.Join(e.ids, ", ")
}

func (e *notInFlightError) Is(target error) bool { return target == ErrNotInFlight }

// NotInFlightIDs returns the ids of the events that were not in flight.
func (e *notInFlightError) NotInFlightIDs() []string { return e.ids }

// Ack implements [Consumer.Ack].
func (c *consumer) Ack(ctx context.Context, ids ...annals.UUID) error {
	g := c.g
	return c.settle(ctx, ids, func(e *entry) {
		c.acked++
		g.mu.acked++
		g.settleLocked(e)
	})
}

// Nack implements [Consumer.Nack].
func (c *consumer) Nack(ctx context.Context, n Nack, ids ...annals.UUID) error {
	if err := n.Validate(); err != nil {
		return err
	}
	g := c.g
	return c.settle(ctx, ids, func(e *entry) {
		c.nacked++
		switch n.Action {
		case Retry:
			g.retryLocked(e, n.Delay, reasonOr(n.Reason, "nacked"))
		case Park:
			g.parkLocked(e, reasonOr(n.Reason, "parked by the consumer"))
		case Skip:
			g.mu.skipped++
			g.settleLocked(e)
		}
	})
}

func reasonOr(reason, def string) string {
	if reason == "" {
		return def
	}
	return reason
}

// Close implements [Consumer.Close]: the events in flight go back to the group, each
// counting a retry.
func (c *consumer) Close() error {
	g := c.g
	g.mu.Lock()
	defer g.mu.Unlock()
	if c.err != nil {
		return nil
	}
	c.endLocked(ErrConsumerClosed)
	g.mu.consumers = slices.DeleteFunc(g.mu.consumers, func(o *consumer) bool { return o == c })
	for _, e := range c.queue.takeAll() {
		g.mu.shared.push(e)
	}
	back := make([]*entry, 0, len(c.inflight))
	for _, e := range c.inflight {
		back = append(back, e)
	}
	slices.SortFunc(back, func(a, b *entry) int {
		if a.before(b) {
			return -1
		}
		return 1
	})
	for _, e := range back {
		g.takeBackLocked(e)
		g.retryLocked(e, 0, "consumer left")
	}
	g.rebalanceLocked()
	return nil
}

// info returns c's figures.
func (c *consumer) infoLocked() ConsumerInfo {
	return ConsumerInfo{
		ID: c.id, Name: c.name, Joined: c.joined, Window: c.window, InFlight: len(c.inflight),
		Delivered: c.delivered, Acked: c.acked, Nacked: c.nacked,
	}
}
