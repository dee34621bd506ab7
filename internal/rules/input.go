package rules

import (
	"encoding/json"
	"fmt"
	"slices"

	"github.com/annalsdb/annals"
)

// Limits returns l with its zero (or negative) fields set to their defaults:
// [annals.DefaultMaxEventSize] and [annals.DefaultMaxAppendSize].
func Limits(l annals.Limits) annals.Limits {
	if l.MaxEventSize <= 0 {
		l.MaxEventSize = annals.DefaultMaxEventSize
	}
	if l.MaxAppendSize <= 0 {
		l.MaxAppendSize = annals.DefaultMaxAppendSize
	}
	return l
}

// ValidateAppend checks an append to a user stream before it reaches storage: the stream id
// ([annals.ValidateUserStreamID]), then [ValidateEvents]. It returns the events prepared for
// storage in a new slice, and leaves the caller's slice as it was.
func ValidateAppend(l annals.Limits, stream string, expected annals.ExpectedRevision, events []annals.Event) ([]annals.Event, error) {
	if err := annals.ValidateUserStreamID(stream); err != nil {
		return nil, err
	}
	return ValidateEvents(l, stream, expected, events)
}

// ValidateSystemAppend is [ValidateAppend] for [annals.SystemAppender.AppendSystem]: the stream
// id must pass [annals.ValidateSystemStreamID] instead.
func ValidateSystemAppend(l annals.Limits, stream string, expected annals.ExpectedRevision, events []annals.Event) ([]annals.Event, error) {
	if err := annals.ValidateSystemStreamID(stream); err != nil {
		return nil, err
	}
	return ValidateEvents(l, stream, expected, events)
}

// ValidateEvents checks the expectation, that there is at least one event, each event's names
// ([annals.Event.Validate]), that no ID is there twice, and the size limits of l (zero fields
// mean the defaults). It returns a copy of events prepared for storage: an event with a zero
// ID gets a fresh one, and an empty content type becomes [annals.ContentTypeJSON]. The
// caller's slice is not changed; the copy shares the events' Data and Metadata.
// Errors match [annals.ErrInvalidArgument] (and [annals.ErrTooLarge] for sizes) and say which
// event is at fault.
func ValidateEvents(l annals.Limits, stream string, expected annals.ExpectedRevision, events []annals.Event) ([]annals.Event, error) {
	l = Limits(l)
	if err := expected.Validate(); err != nil {
		return nil, err
	}
	if len(events) == 0 {
		return nil, fmt.Errorf("%w: append to %q has no events", annals.ErrInvalidArgument, stream)
	}
	events = slices.Clone(events)
	total := 0
	for i := range events {
		e := &events[i]
		if e.ContentType == "" {
			e.ContentType = annals.ContentTypeJSON
		}
		if err := e.Validate(); err != nil {
			return nil, fmt.Errorf("event %d of the append to %q: %w", i, stream, err)
		}
		size := e.Size()
		if size > l.MaxEventSize {
			return nil, fmt.Errorf("%w: event %d of the append to %q is %d bytes, over the limit of %d", annals.ErrTooLarge, i, stream, size, l.MaxEventSize)
		}
		total += size
		if e.ID.IsZero() {
			e.ID = annals.NewUUID()
		}
	}
	if total > l.MaxAppendSize {
		return nil, fmt.Errorf("%w: append to %q is %d bytes, over the limit of %d", annals.ErrTooLarge, stream, total, l.MaxAppendSize)
	}
	if len(events) > 1 {
		seen := make(map[annals.UUID]struct{}, len(events))
		for i := range events {
			if _, dup := seen[events[i].ID]; dup {
				return nil, fmt.Errorf("%w: event %d of the append to %q repeats id %s", annals.ErrInvalidArgument, i, stream, events[i].ID)
			}
			seen[events[i].ID] = struct{}{}
		}
	}
	return events, nil
}

// MetadataEvent checks a SetMetadata call and returns the [annals.MetadataEventType] event
// that records it in [annals.MetaStream](stream), with a fresh ID. It checks the stream id
// (a user stream), the expectation, the metadata ([annals.StreamMetadata.Validate]) and the
// event against the limits of l, like any append: metadata whose event is over
// l.MaxEventSize is [annals.ErrTooLarge], whatever the state of the stream (see the order of
// checks in the package doc).
func MetadataEvent(l annals.Limits, stream string, expected annals.ExpectedRevision, meta annals.StreamMetadata) (annals.Event, error) {
	if err := annals.ValidateUserStreamID(stream); err != nil {
		return annals.Event{}, err
	}
	if err := expected.Validate(); err != nil {
		return annals.Event{}, err
	}
	if err := meta.Validate(); err != nil {
		return annals.Event{}, err
	}
	data, err := json.Marshal(meta)
	if err != nil {
		return annals.Event{}, fmt.Errorf("%w: stream metadata of %q: %w", annals.ErrInvalidArgument, stream, err)
	}
	ev, err := ValidateEvents(l, annals.MetaStream(stream), expected, []annals.Event{{ID: annals.NewUUID(), Type: annals.MetadataEventType, ContentType: annals.ContentTypeJSON, Data: data}})
	if err != nil {
		return annals.Event{}, fmt.Errorf("stream metadata of %q: %w", stream, err)
	}
	return ev[0], nil
}

// ValidateDelete checks the input of Delete and Tombstone: a user stream id and a valid
// expectation.
func ValidateDelete(stream string, expected annals.ExpectedRevision) error {
	if err := annals.ValidateUserStreamID(stream); err != nil {
		return err
	}
	return expected.Validate()
}

// ReadOptions checks the options of a read of $all ([annals.ReadOptions.Validate]) and
// returns a copy (the zero value for nil).
func ReadOptions(opts *annals.ReadOptions) (annals.ReadOptions, error) {
	var o annals.ReadOptions
	if opts != nil {
		o = *opts
	}
	return o, o.Validate()
}

// StreamReadOptions is [ReadOptions] for a read of one stream: it checks the stream id
// ([annals.ValidateStreamID]; system streams may be read) first.
func StreamReadOptions(stream string, opts *annals.ReadOptions) (annals.ReadOptions, error) {
	if err := annals.ValidateStreamID(stream); err != nil {
		return annals.ReadOptions{}, err
	}
	return ReadOptions(opts)
}

// SubscribeOptions checks the options of a subscription to $all
// ([annals.SubscribeOptions.Validate]) and returns a copy (the zero value for nil).
func SubscribeOptions(opts *annals.SubscribeOptions) (annals.SubscribeOptions, error) {
	var o annals.SubscribeOptions
	if opts != nil {
		o = *opts
	}
	return o, o.Validate()
}

// StreamSubscribeOptions is [SubscribeOptions] for a subscription to one stream: it checks
// the stream id ([annals.ValidateStreamID]) first.
func StreamSubscribeOptions(stream string, opts *annals.SubscribeOptions) (annals.SubscribeOptions, error) {
	if err := annals.ValidateStreamID(stream); err != nil {
		return annals.SubscribeOptions{}, err
	}
	return SubscribeOptions(opts)
}

// ListOptions checks the options of a listing ([annals.ListOptions.Validate]) and returns a
// copy (the zero value for nil).
func ListOptions(opts *annals.ListOptions) (annals.ListOptions, error) {
	var o annals.ListOptions
	if opts != nil {
		o = *opts
	}
	return o, o.Validate()
}
