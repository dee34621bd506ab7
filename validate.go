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

// Limits bounds what one append may carry, and the event that records new stream metadata.
// Backends take them in their options; a zero field means its default.
type Limits struct {
	// MaxEventSize bounds [Event.Size]; default [DefaultMaxEventSize] (1 MiB).
	MaxEventSize int
	// MaxAppendSize bounds the sum of the sizes of one append's events; default
	// [DefaultMaxAppendSize] (16 MiB).
	MaxAppendSize int
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

// ValidateSystemStreamID is [ValidateStreamID] plus the rules of the streams the toolkit keeps
// for itself through [SystemAppender] (consumer groups' settings, checkpoints and parked
// events): the id starts with "$", and is not a [MetaStream], which only the store writes.
func ValidateSystemStreamID(stream string) error {
	if err := ValidateStreamID(stream); err != nil {
		return err
	}
	switch {
	case !strings.HasPrefix(stream, "$"):
		return fmt.Errorf("%w: stream id %q: a system stream starts with $", ErrInvalidArgument, stream)
	case strings.HasPrefix(stream, metaPrefix):
		return fmt.Errorf("%w: stream id %q: metadata streams are written by the store only", ErrInvalidArgument, stream)
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
