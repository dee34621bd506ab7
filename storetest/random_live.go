package storetest

// Subscriptions in the randomized test: catch-up subscriptions compared with the oracle, and
// live ones kept across the sequence.

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/annalsdb/annals"
)

// asOf sets opts.AsOf, in each store, to the time that store gave the event at position pos,
// and reports false (skip) when the next event has the same time.
func asOf(ctx context.Context, s annals.Store, pos uint64, opts *annals.ReadOptions) bool {
	var evs []annals.RecordedEvent
	for e, err := range s.ReadAll(ctx, &annals.ReadOptions{From: pos, Limit: 2}) {
		if err != nil {
			return false
		}
		evs = append(evs, e)
	}
	if len(evs) == 0 || (len(evs) == 2 && evs[1].Time.Equal(evs[0].Time)) {
		return false
	}
	opts.AsOf = evs[0].Time
	return true
}

// subscribe takes, from a subscription, as many events as the oracle has stored for it (so
// that it does not wait for live events), and compares them.
func (r *randomRun) subscribe() {
	r.settle()
	ctx := r.t.Context()
	filter := r.filter()
	if r.chance(50) {
		from := uint64(r.rng.IntN(int(r.lastPos) + 2))
		n := 0
		for _, err := range r.oracle.ReadAll(ctx, &annals.ReadOptions{From: from, Filter: filter}) {
			if err != nil {
				r.fail("memstore ReadAll: %v", err)
			}
			n++
		}
		if n == 0 {
			return
		}
		opts := &annals.SubscribeOptions{From: from, Filter: filter}
		r.do(fmt.Sprintf("SubscribeAll(%s), %d events", describe(opts), n), func(s annals.Store) outcome {
			ctx, cancel := context.WithTimeout(ctx, waitTimeout)
			defer cancel()
			return collectOutcome(s.SubscribeAll(ctx, opts), n)
		})
		return
	}
	stream := r.stream()
	from := uint64(r.rng.IntN(10))
	if rev, ok := r.known[stream].Revision(); ok {
		from = uint64(r.rng.IntN(int(rev) + 2))
	}
	n := 0
	for _, err := range r.oracle.ReadStream(ctx, stream, &annals.ReadOptions{From: from, Filter: filter}) {
		switch {
		case errors.Is(err, annals.ErrStreamDeleted):
			n = 1 // the subscription's error
		case err != nil:
			return // not found: the subscription would wait for the stream
		default:
			n++
		}
	}
	if n == 0 {
		return
	}
	opts := &annals.SubscribeOptions{From: from, Filter: filter}
	r.do(fmt.Sprintf("SubscribeStream(%q, %s), %d events", stream, describe(opts), n), func(s annals.Store) outcome {
		ctx, cancel := context.WithTimeout(ctx, waitTimeout)
		defer cancel()
		return collectOutcome(s.SubscribeStream(ctx, stream, opts), n)
	})
}

// subscribeLive starts a subscription to a stream on both stores, then appends to the stream,
// one event at a time, until both delivered the last event appended, and checks what each
// delivered. When a subscription starts cannot be observed, so its first event may be any from
// where memstore starts before the appends (the stream's soft deletion and metadata choose it:
// truncateBefore beyond the end, maxCount, maxAge) up to the last one appended; from there on
// it must deliver every event of the stream, as the oracle recorded them.
func (r *randomRun) subscribeLive() {
	r.settle()
	ctx := r.t.Context()
	stream := r.stream()
	if r.chance(60) {
		// What the subscription's start depends on.
		meta := pick(r, annals.StreamMetadata{TruncateBefore: uint64(30 + r.rng.IntN(100))},
			annals.StreamMetadata{MaxCount: uint64(1 + r.rng.IntN(3))}, annals.StreamMetadata{MaxAge: tinyAge},
			r.metadata())
		r.setMetadataOn(stream, annals.Any, meta)
		r.settle()
	}
	from := pick(r, 0, annals.End, uint64(r.rng.IntN(12)))
	opts := &annals.SubscribeOptions{From: from}
	desc := fmt.Sprintf("SubscribeStream(%q, %s) then appends", stream, describe(opts))
	if _, _, err := r.oracle.GetMetadata(ctx, stream); errors.Is(err, annals.ErrStreamDeleted) {
		r.do(desc+" to a tombstoned stream", func(s annals.Store) outcome {
			ctx, cancel := context.WithTimeout(ctx, waitTimeout)
			defer cancel()
			return collectOutcome(s.SubscribeStream(ctx, stream, opts), 1)
		})
		return
	}
	earliest := r.oracleStart(stream, from)
	stores := []annals.Store{r.oracle, r.store}
	subs := make([]*collector, len(stores))
	for i, s := range stores {
		subs[i] = subscribe(r.t, func(ctx contextT) eventSeq { return s.SubscribeStream(ctx, stream, opts) })
	}
	defer func() {
		for _, c := range subs {
			c.stop()
		}
	}()
	// Appends until the stream reaches earliest (a subscription from beyond the end waits for
	// it), then until each subscription delivered something, which shows that it started, with
	// growing patience; then each must deliver up to the last event appended.
	const maxAppends = 10
	var last uint64
	patience := 20 * time.Millisecond
	for i := 0; ; {
		r.appendCall(appendCall{stream: stream, expected: annals.Any, events: r.events()[:1]})
		rev, ok := r.known[stream].Revision()
		if !ok {
			r.fail("%s: append with Any failed", desc)
		}
		last = rev
		if last < earliest {
			continue
		}
		i++
		started := true
		for _, c := range subs {
			started = c.waitFor(patience, func(evs []annals.RecordedEvent, _ error, ended bool) bool {
				return ended || len(evs) > 0
			}) && started
		}
		if started || i == maxAppends {
			break
		}
		patience = min(2*patience, time.Second)
	}
	for _, c := range subs {
		c.waitFor(waitTimeout, func(evs []annals.RecordedEvent, _ error, ended bool) bool {
			return ended || (len(evs) > 0 && evs[len(evs)-1].Revision >= last)
		})
	}
	var want []annals.RecordedEvent
	for e, err := range r.oracle.ReadAll(ctx, &annals.ReadOptions{Filter: &annals.Filter{StreamPrefixes: []string{stream}}}) {
		if err != nil {
			r.fail("memstore ReadAll: %v", err)
		}
		if e.Stream == stream {
			want = append(want, e)
		}
	}
	for i, c := range subs {
		name := []string{"memstore", "store"}[i]
		evs, err, _ := c.state()
		if err != nil {
			r.fail("%s: %s's subscription ended with %v", desc, name, err)
		}
		if len(evs) == 0 || evs[len(evs)-1].Revision != last {
			r.fail("%s: after appending up to revision %d, %s's subscription delivered revisions %v (it should start at %d at the earliest, and deliver every event from there)", desc, last, name, revisions(evs), earliest)
		}
		first := evs[0].Revision
		if first < earliest {
			r.fail("%s: %s's subscription started at revision %d, which the stream's visibility hides (memstore starts at %d)", desc, name, first, earliest)
		}
		if got, wantEvs := normalize(evs), normalize(want[first:last+1]); !sameEvents(wantEvs, got) {
			r.fail("%s: %s's subscription delivered, from revision %d:\n%s", desc, name, first, diffEvents(wantEvs, got))
		}
	}
}

// oracleStart returns where memstore starts a subscription to stream from revision from now.
func (r *randomRun) oracleStart(stream string, from uint64) uint64 {
	ctx := r.t.Context()
	var next uint64
	for e, err := range r.oracle.ReadAll(ctx, &annals.ReadOptions{Filter: &annals.Filter{StreamPrefixes: []string{stream}}}) {
		if err != nil {
			r.fail("memstore ReadAll: %v", err)
		}
		if e.Stream == stream {
			next = e.Revision + 1
		}
	}
	if from == annals.End {
		return next
	}
	for e, err := range r.oracle.ReadStream(ctx, stream, &annals.ReadOptions{From: from, Limit: 1}) {
		if err == nil {
			return e.Revision
		}
	}
	return max(from, next)
}
