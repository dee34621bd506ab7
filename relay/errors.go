package relay

import (
	"errors"
	"fmt"

	"github.com/annalsdb/annals"
)

// ErrRefused matches the error that stops [Relay.Run] when the broker refuses an event for
// good (see [Publisher].Permanent), or the event cannot be made into a message: the error is
// a [*PublishError] naming the event.
var ErrRefused = errors.New("relay: event refused")

// PublishError is the failure to publish one event: the broker's answer (or Publish's error,
// or the encoder's) and the event it was about.
type PublishError struct {
	// Relay is the relay's name.
	Relay string
	// The event.
	Stream   string
	Revision uint64
	Position uint64
	ID       annals.UUID
	// Permanent is set when publishing the event again cannot succeed: Run stops.
	Permanent bool
	Err       error
}

func (e *PublishError) Error() string {
	what := "publish"
	if e.Permanent {
		what = "publish (refused for good)"
	}
	return fmt.Sprintf("relay %q: %s event %d (%s@%d, id %s): %v",
		e.Relay, what, e.Position, e.Stream, e.Revision, e.ID, e.Err)
}

// Unwrap returns the cause.
func (e *PublishError) Unwrap() error { return e.Err }

// Is makes errors.Is(err, ErrRefused) true for a permanent failure.
func (e *PublishError) Is(target error) bool { return target == ErrRefused && e.Permanent }
