package groups

import (
	"context"
	"errors"
	"strings"
	"time"
)

// ErrPermanent marks a handler error that no retry can fix (a malformed event, a rule the
// event breaks for good): [Run] parks the event instead of retrying it. Wrap it:
// fmt.Errorf("order %s: unknown currency: %w", id, groups.ErrPermanent).
var ErrPermanent = errors.New("groups: permanent failure")

// RunOptions configure [Run]. A nil *RunOptions means the defaults.
type RunOptions struct {
	// RetryDelay is the delay of the first retry after the handler fails; each later retry of
	// the same event waits twice as long, up to MaxRetryDelay. Default 100 ms; the delays are
	// capped at [MaxNackDelay].
	RetryDelay time.Duration
	// MaxRetryDelay bounds the delay; default 10 s.
	MaxRetryDelay time.Duration
}

// Run receives the messages of c and calls handle for each, one at a time: it acks the event
// when handle returns nil, parks it when the error wraps [ErrPermanent], and otherwise nacks
// it for a retry after a delay that grows with the event's retries (the group parks it past
// its MaxRetries). The error's text is the nack's reason.
//
// Run returns nil when ctx ends, and the consumer's error when the consumer ends
// ([ErrConsumerClosed], [ErrGroupDeleted], an error matching annals.ErrClosed) or an ack or
// nack fails for another reason than the event's having been taken back ([ErrNotInFlight],
// after the message timeout: the event is then delivered again, to c or another consumer).
// It does not close c. handle must be idempotent by event id: delivery is at least once.
func Run(ctx context.Context, c Consumer, handle func(ctx context.Context, m Message) error, opts *RunOptions) error {
	var o RunOptions
	if opts != nil {
		o = *opts
	}
	if o.RetryDelay <= 0 {
		o.RetryDelay = 100 * time.Millisecond
	}
	if o.MaxRetryDelay <= 0 {
		o.MaxRetryDelay = 10 * time.Second
	}
	o.MaxRetryDelay = min(o.MaxRetryDelay, MaxNackDelay)
	for {
		m, err := c.Receive(ctx)
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return err
		}
		id := m.Event.ID
		herr := handle(ctx, m)
		switch {
		case herr == nil:
			err = c.Ack(ctx, id)
		case errors.Is(herr, ErrPermanent):
			err = c.Nack(ctx, Nack{Action: Park, Reason: reason(herr)}, id)
		default:
			delay := o.RetryDelay
			for i := 0; i < m.Retries && delay < o.MaxRetryDelay; i++ {
				delay *= 2
			}
			err = c.Nack(ctx, Nack{Action: Retry, Delay: min(delay, o.MaxRetryDelay), Reason: reason(herr)}, id)
		}
		if err != nil && !errors.Is(err, ErrNotInFlight) {
			if ctx.Err() != nil {
				return nil
			}
			return err
		}
	}
}

// reason returns err's text cut to the 1,024 bytes a nack's reason may hold.
func reason(err error) string {
	s := err.Error()
	if len(s) > 1024 {
		s = strings.ToValidUTF8(s[:1024], "")
	}
	return s
}
