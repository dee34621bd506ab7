package storetest

// The comparison of the store under test with the oracle: outcomes, and normalising what
// each store returns so that they compare equal when they agree.

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/annalsdb/annals"
	"github.com/google/go-cmp/cmp"
)

// describe formats read or subscription options for failure messages, filter included.
func describe(opts any) string {
	switch o := opts.(type) {
	case *annals.ReadOptions:
		if o == nil {
			return "nil"
		}
		var b strings.Builder
		fmt.Fprintf(&b, "{From:%d", o.From)
		if o.From == annals.End {
			b.Reset()
			b.WriteString("{From:End")
		}
		if o.Backwards {
			b.WriteString(" Backwards")
		}
		if o.Limit != 0 {
			fmt.Fprintf(&b, " Limit:%d", o.Limit)
		}
		if o.Until != 0 {
			fmt.Fprintf(&b, " Until:%d", o.Until)
		}
		if !o.AsOf.IsZero() {
			fmt.Fprintf(&b, " AsOf:%v", o.AsOf)
		}
		if o.Filter != nil {
			fmt.Fprintf(&b, " Filter:%+v", *o.Filter)
		}
		return b.String() + "}"
	case *annals.SubscribeOptions:
		if o == nil {
			return "nil"
		}
		if o.Filter == nil {
			return fmt.Sprintf("{From:%d}", o.From)
		}
		return fmt.Sprintf("{From:%d Filter:%+v}", o.From, *o.Filter)
	case annals.StreamMetadata:
		if o.MaxAge < 0 || (len(o.Custom) > 0 && !json.Valid(o.Custom)) {
			return fmt.Sprintf("{MaxAge:%v Custom:%q}", o.MaxAge, o.Custom)
		}
		b, _ := json.Marshal(o)
		return string(b)
	}
	return fmt.Sprintf("%+v", opts)
}

// sameOutcome is the fast path of comparing normalized outcomes.
func sameOutcome(a, b outcome) bool {
	return a.Err == b.Err && a.Result == b.Result && a.Pos == b.Pos && a.Exp == b.Exp &&
		slices.Equal(a.Infos, b.Infos) && sameEvents(a.Events, b.Events) &&
		cmp.Equal(a.Meta, b.Meta, jsonEqual)
}

// normalize clears what may differ between two correct stores: Time, the IDs stores give
// system events, and nil versus empty. It writes the data of system events in one JSON
// spelling.
func normalize(evs []annals.RecordedEvent) []annals.RecordedEvent {
	if len(evs) == 0 {
		return nil
	}
	out := slices.Clone(evs)
	for i := range out {
		e := &out[i]
		e.Time = time.Time{}
		if len(e.Data) == 0 {
			e.Data = nil
		}
		if len(e.Metadata) == 0 {
			e.Metadata = nil
		}
		if strings.HasPrefix(e.Stream, "$") {
			e.ID = annals.UUID{}
			var v any
			if json.Unmarshal(e.Data, &v) == nil {
				e.Data, _ = json.Marshal(v)
			}
		}
	}
	return out
}

// classify names the sentinel err matches, and the actual revision of a conflict.
func classify(err error) string {
	if err == nil {
		return ""
	}
	if wev, ok := errors.AsType[*annals.WrongExpectedVersionError](err); ok {
		return "wrong expected version, actual " + wev.Actual.String()
	}
	for _, s := range []struct {
		err  error
		name string
	}{
		{annals.ErrWrongExpectedVersion, "wrong expected version without detail"},
		{annals.ErrTooLarge, "too large"},
		{annals.ErrInvalidArgument, "invalid argument"},
		{annals.ErrStreamNotFound, "stream not found"},
		{annals.ErrStreamDeleted, "stream deleted"},
		{annals.ErrClosed, "closed"},
		{annals.ErrCorrupt, "corrupt"},
		{context.Canceled, "canceled"},
		{context.DeadlineExceeded, "deadline exceeded"},
	} {
		if errors.Is(err, s.err) {
			return s.name
		}
	}
	return "unexpected error: " + err.Error()
}

// collectOutcome reads seq to its end, or up to max events when max > 0.
func collectOutcome(seq eventSeq, max int) outcome {
	var o outcome
	for e, err := range seq {
		if err != nil {
			o.Err = classify(err)
			break
		}
		if o.Events = append(o.Events, e); len(o.Events) == max {
			break
		}
	}
	return o
}

// compareState compares everything both stores hold: the log, the streams, each stream's
// events and metadata. It also checks the store's times.
func (r *randomRun) compareState() {
	r.settle()
	ctx := r.t.Context()
	r.do("ReadAll(nil) and check times", func(s annals.Store) outcome {
		o := collectOutcome(s.ReadAll(ctx, nil), 0)
		for i, e := range o.Events {
			if e.Time.Location() != time.UTC || (i > 0 && e.Time.Before(o.Events[i-1].Time)) {
				r.fail("event at position %d has Time %v after %v: want UTC times that never decrease", e.Position, e.Time, o.Events[max(i-1, 0)].Time)
			}
		}
		return o
	})
	r.do("ListStreams(nil)", func(s annals.Store) outcome {
		infos, err := collect(r.t, s.ListStreams(ctx, nil))
		return outcome{Err: classify(err), Infos: infos}
	})
	for _, stream := range r.streams {
		r.do(fmt.Sprintf("ReadStream(%q, nil)", stream), func(s annals.Store) outcome {
			return collectOutcome(s.ReadStream(ctx, stream, nil), 0)
		})
		r.do(fmt.Sprintf("GetMetadata(%q)", stream), func(s annals.Store) outcome {
			meta, e, err := s.GetMetadata(ctx, stream)
			if err != nil {
				return outcome{Err: classify(err)}
			}
			return outcome{Meta: meta, Exp: e}
		})
	}
}
