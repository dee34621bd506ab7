package annals

import (
	"fmt"
	"strings"
	"unicode"
	"unicode/utf8"
)

// MaxStreamIDLength is the longest stream id, in bytes.
const MaxStreamIDLength = 256

// Default size limits; see [Limits].
const (
	DefaultMaxEventSize  = 1 << 20
	DefaultMaxAppendSize = 16 << 20
)

// AllStream is the name of the global log in user-facing places such as the CLI.
const AllStream = "$all"

// Limits bounds what one append may carry. Backends take them in their options; a zero field
// means its default.
type Limits struct {
	// MaxEventSize bounds [Event.Size]; default [DefaultMaxEventSize] (1 MiB).
	MaxEventSize int
	// MaxAppendSize bounds the sum of the sizes of one append's events; default
	// [DefaultMaxAppendSize] (16 MiB).
	MaxAppendSize int
}

// WithDefaults returns l with zero fields set to their defaults.
func (l Limits) WithDefaults() Limits {
	if l.MaxEventSize <= 0 {
		l.MaxEventSize = DefaultMaxEventSize
	}
	if l.MaxAppendSize <= 0 {
		l.MaxAppendSize = DefaultMaxAppendSize
	}
	return l
}

// ValidateStreamID checks the rules every stream id follows: not empty, at most
// [MaxStreamIDLength] bytes of valid UTF-8 (plus the "$meta-" of a [MetaStream]), no control
// characters, and not [AllStream]. It returns an error matching [ErrInvalidArgument].
func ValidateStreamID(stream string) error {
	switch {
	case stream == "":
		return fmt.Errorf("%w: empty stream id", ErrInvalidArgument)
	case len(stream) > MaxStreamIDLength && !(strings.HasPrefix(stream, metaPrefix) && len(stream) <= len(metaPrefix)+MaxStreamIDLength):
		return fmt.Errorf("%w: stream id of %d bytes is longer than %d", ErrInvalidArgument, len(stream), MaxStreamIDLength)
	case stream == AllStream:
		return fmt.Errorf("%w: %s is the global log, not a stream (use ReadAll or SubscribeAll)", ErrInvalidArgument, AllStream)
	}
	return validateText("stream id", stream)
}

// ValidateUserStreamID is [ValidateStreamID] plus the rule that users may not write to
// "$"-prefixed (system) streams.
func ValidateUserStreamID(stream string) error {
	if err := ValidateStreamID(stream); err != nil {
		return err
	}
	if strings.HasPrefix(stream, "$") {
		return fmt.Errorf("%w: stream id %q: names starting with $ are reserved for the system", ErrInvalidArgument, stream)
	}
	return nil
}

func validateText(what, s string) error {
	if !utf8.ValidString(s) {
		return fmt.Errorf("%w: %s %q is not valid UTF-8", ErrInvalidArgument, what, s)
	}
	if i := strings.IndexFunc(s, unicode.IsControl); i >= 0 {
		return fmt.Errorf("%w: %s %q has a control character at byte %d", ErrInvalidArgument, what, s, i)
	}
	return nil
}

// ValidateAppend checks an append to a user stream before it reaches storage: the stream id
// ([ValidateUserStreamID]), the expectation, at least one event, each event's type (not empty,
// at most 256 bytes, no control characters) and content type, no ID twice, and the size limits.
// In place, events with a zero ID get a fresh one and an empty content type becomes
// [ContentTypeJSON]; backends pass a copy of the caller's slice. Errors match [ErrInvalidArgument] (and
// [ErrTooLarge] for sizes) and say which event is at fault.
func (l Limits) ValidateAppend(stream string, expected ExpectedRevision, events []Event) error {
	if err := ValidateUserStreamID(stream); err != nil {
		return err
	}
	return l.ValidateEvents(stream, expected, events)
}

// ValidateEvents is [Limits.ValidateAppend] without the user-stream rule, for backends writing
// system streams.
func (l Limits) ValidateEvents(stream string, expected ExpectedRevision, events []Event) error {
	l = l.WithDefaults()
	if err := expected.Validate(); err != nil {
		return err
	}
	if len(events) == 0 {
		return fmt.Errorf("%w: append to %q has no events", ErrInvalidArgument, stream)
	}
	total := 0
	for i := range events {
		e := &events[i]
		if e.ContentType == "" {
			e.ContentType = ContentTypeJSON
		}
		switch {
		case e.Type == "":
			return fmt.Errorf("%w: event %d of the append to %q has an empty type", ErrInvalidArgument, i, stream)
		case len(e.Type) > 256:
			return fmt.Errorf("%w: event %d of the append to %q: type of %d bytes is longer than 256", ErrInvalidArgument, i, stream, len(e.Type))
		case len(e.ContentType) > 256:
			return fmt.Errorf("%w: event %d of the append to %q: content type of %d bytes is longer than 256", ErrInvalidArgument, i, stream, len(e.ContentType))
		}
		if err := validateText("event type", e.Type); err != nil {
			return fmt.Errorf("event %d of the append to %q: %w", i, stream, err)
		}
		if err := validateText("content type", e.ContentType); err != nil {
			return fmt.Errorf("event %d of the append to %q: %w", i, stream, err)
		}
		size := e.Size()
		if size > l.MaxEventSize {
			return fmt.Errorf("%w: event %d of the append to %q is %d bytes, over the limit of %d", ErrTooLarge, i, stream, size, l.MaxEventSize)
		}
		total += size
		if e.ID.IsZero() {
			e.ID = NewUUID()
		}
	}
	if total > l.MaxAppendSize {
		return fmt.Errorf("%w: append to %q is %d bytes, over the limit of %d", ErrTooLarge, stream, total, l.MaxAppendSize)
	}
	if len(events) > 1 {
		seen := make(map[UUID]struct{}, len(events))
		for i := range events {
			if _, dup := seen[events[i].ID]; dup {
				return fmt.Errorf("%w: event %d of the append to %q repeats id %s", ErrInvalidArgument, i, stream, events[i].ID)
			}
			seen[events[i].ID] = struct{}{}
		}
	}
	return nil
}
