package annals

import (
	"fmt"
	"slices"
	"strings"
	"time"
)

// End, as ReadOptions.From or SubscribeOptions.From, means "the end": a backwards read starts
// at the last event, a subscription delivers only events appended after it started.
const End = ^uint64(0)

// ReadOptions shape a read. The zero value (and a nil *ReadOptions) reads everything forwards.
type ReadOptions struct {
	// Backwards reads from From towards the start. Set From to [End] to start at the last
	// event: left at 0, a backwards read returns only revision 0 of a stream, and nothing of
	// $all.
	Backwards bool
	// From is the first revision (stream) or position ($all) to read, inclusive. Forwards, 0 is
	// the start; backwards, [End] is the end.
	From uint64
	// Limit stops after that many events; 0 means no limit.
	Limit int
	// Until, when not 0, is an exclusive upper bound: only events with a revision (stream) or
	// position ($all) below it are read. To read a stream as of revision r, set Until to r+1.
	Until uint64
	// AsOf, when not zero, reads the store as it was at that moment: only events recorded at or
	// before AsOf. Until and AsOf narrow what a read returns; they never bring back events that
	// a stream's metadata or soft deletion hides now.
	AsOf time.Time
	// Filter keeps only the matching events; nil keeps all.
	Filter *Filter
}

// SubscribeOptions shape a subscription. The zero value (and nil) delivers everything from the
// start, then live.
type SubscribeOptions struct {
	// From is the first revision (stream) or position ($all) to deliver, inclusive: 0 is the
	// start, [End] means only what is appended from now on. To resume after a checkpoint c (the
	// last event handled), use c+1.
	From uint64
	// Filter keeps only the matching events; nil keeps all.
	Filter *Filter
}

// Filter selects events by stream and type; the store applies it before events leave it, and
// backends use indexes for categories and event types, so that reading them costs in proportion
// to the events that match.
//
// An event matches when its stream matches (there are no StreamPrefixes and no Categories, or
// its stream id has one of the prefixes, or its category is one of the Categories) and its type
// matches (EventTypes is empty or holds it).
type Filter struct {
	StreamPrefixes []string
	Categories     []string
	EventTypes     []string
}

// Match reports whether an event of the given stream and type passes f. A nil filter matches
// everything.
func (f *Filter) Match(stream, eventType string) bool {
	if f == nil {
		return true
	}
	if len(f.EventTypes) > 0 && !slices.Contains(f.EventTypes, eventType) {
		return false
	}
	if len(f.StreamPrefixes) == 0 && len(f.Categories) == 0 {
		return true
	}
	for _, p := range f.StreamPrefixes {
		if strings.HasPrefix(stream, p) {
			return true
		}
	}
	return len(f.Categories) > 0 && slices.Contains(f.Categories, Category(stream))
}

// Validate returns an error matching [ErrInvalidArgument] when a prefix, category or type is
// empty, is not valid UTF-8 or holds a control character (no stream id or event type does).
// Every backend applies it to the filters it is given.
func (f *Filter) Validate() error {
	if f == nil {
		return nil
	}
	for _, list := range []struct {
		what   string
		values []string
	}{{"stream prefix", f.StreamPrefixes}, {"category", f.Categories}, {"event type", f.EventTypes}} {
		for _, v := range list.values {
			if v == "" {
				return fmt.Errorf("%w: filter holds an empty %s", ErrInvalidArgument, list.what)
			}
			if err := validateText("filter "+list.what, v); err != nil {
				return err
			}
		}
	}
	return nil
}

// Validate returns an error matching [ErrInvalidArgument] for a negative Limit or an invalid
// Filter (see [Filter.Validate]). Any Limit up to the largest int is valid.
func (o *ReadOptions) Validate() error {
	if o == nil {
		return nil
	}
	if o.Limit < 0 {
		return fmt.Errorf("%w: negative read limit %d", ErrInvalidArgument, o.Limit)
	}
	return o.Filter.Validate()
}

// Validate returns an error matching [ErrInvalidArgument] for an invalid Filter (see
// [Filter.Validate]).
func (o *SubscribeOptions) Validate() error {
	if o == nil {
		return nil
	}
	return o.Filter.Validate()
}

// Validate returns an error matching [ErrInvalidArgument] for a negative Limit, or a Prefix or
// After that is not valid UTF-8 or holds a control character (no stream id does).
func (o *ListOptions) Validate() error {
	if o == nil {
		return nil
	}
	if o.Limit < 0 {
		return fmt.Errorf("%w: negative list limit %d", ErrInvalidArgument, o.Limit)
	}
	if err := validateText("list prefix", o.Prefix); err != nil {
		return err
	}
	return validateText("list start (After)", o.After)
}

// Category returns the category of a stream: the part before its first "-" ("cart-42" →
// "cart"), or the whole id when it has none.
func Category(stream string) string {
	if i := strings.IndexByte(stream, '-'); i >= 0 {
		return stream[:i]
	}
	return stream
}
