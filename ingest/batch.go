package ingest

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/annalsdb/annals"
	"github.com/annalsdb/annals/bridge"
)

// maxConcurrent bounds the appends (and record writes) of one batch under way at once.
const maxConcurrent = 16

// appendTimeout bounds an append of events. Appends do not end with Run's context: an append
// abandoned by its caller may still be written by the store, after the next attempt looked
// for its events, so an attempt waits for its appends' outcome (within this bound).
const appendTimeout = time.Minute

// maxChunk bounds the bytes of events of one append (at least one event each).
const maxChunk = 1 << 20

// planned is a message of a batch to append.
type planned struct {
	m  *bridge.Incoming
	ev annals.Event
}

// batch appends the events of msgs: it decodes them, leaves out those already appended,
// records the progress of their sources, commits the batch before, and appends the rest,
// each target stream in offset order.
func (a *attempt) batch(ctx context.Context, msgs []bridge.Incoming) error {
	in := a.in
	var (
		streams    []string // in the order first seen
		plan       = map[string][]planned{}
		last       = map[string]uint64{} // source → last offset handled in this batch
		duplicates uint64
	)
	for i := range msgs {
		m := &msgs[i]
		stream, ev, err := in.opts.Decoder.Decode(m)
		if err != nil {
			return err // it names the message
		}
		s, err := a.source(ctx, m.Source)
		if err != nil {
			return err
		}
		if s.hasDone && m.Offset <= s.done || s.hasHandled && m.Offset <= s.handled {
			// Appended before (at or before Done), or delivered again within this attempt.
			in.recent.seenElsewhere(ev.ID, place{m.Source, m.Offset})
			duplicates++
			continue
		}
		s.handled, s.hasHandled = m.Offset, true // only the loop reads handled
		last[m.Source] = m.Offset
		if in.recent.seenElsewhere(ev.ID, place{m.Source, m.Offset}) {
			duplicates++
			continue
		}
		if s.win.holds(m.Offset) {
			found, err := a.appended(ctx, stream, s.win.since, ev.ID)
			if err != nil {
				return fmt.Errorf("look up message %s offset %d (event %s) in %s: %w", m.Source, m.Offset, ev.ID, stream, err)
			}
			if found {
				duplicates++
				continue
			}
		}
		if _, ok := plan[stream]; !ok {
			streams = append(streams, stream)
		}
		plan[stream] = append(plan[stream], planned{m, ev})
	}
	if err := a.record(ctx, last); err != nil {
		return err
	}
	if err := a.commit(ctx); err != nil {
		return err
	}
	appended, err := a.appendAll(ctx, streams, plan)
	in.count(appended, duplicates)
	if err != nil {
		return err
	}
	a.mu.Lock()
	offsets := make(map[string]uint64, len(last))
	for name, off := range last {
		s := a.mu.sources[name]
		s.done, s.hasDone = off, true
		offsets[name] = off
		if s.win.open && off >= s.win.upTo {
			s.win = window{}
		}
	}
	a.mu.Unlock()
	in.setOffsets(offsets)
	a.prev = msgs
	return nil
}

// appended reports whether an event id is among the events of stream from position since
// on, reading the stream backwards once per attempt and window.
func (a *attempt) appended(ctx context.Context, stream string, since uint64, id annals.UUID) (bool, error) {
	key := foundKey{stream, since}
	ids, ok := a.found[key]
	if !ok {
		ids = map[annals.UUID]struct{}{}
		for ev, err := range a.in.store.ReadStream(ctx, stream, &annals.ReadOptions{Backwards: true, From: annals.End}) {
			if errors.Is(err, annals.ErrStreamNotFound) {
				break
			}
			if err != nil {
				return false, err
			}
			if ev.Position < since {
				break
			}
			ids[ev.ID] = struct{}{}
		}
		a.found[key] = ids
	}
	_, found := ids[id]
	return found, nil
}

// appendAll appends the planned events, streams concurrently, and returns how many were
// appended.
func (a *attempt) appendAll(ctx context.Context, streams []string, plan map[string][]planned) (uint64, error) {
	counts := make([]uint64, len(streams))
	actx, cancel := context.WithTimeout(context.WithoutCancel(ctx), appendTimeout)
	defer cancel()
	err := parallel(actx, len(streams), func(actx context.Context, i int) error {
		stream := streams[i]
		todo := plan[stream]
		for len(todo) > 0 {
			n, size := 0, 0
			for n < len(todo) && (n == 0 || size+todo[n].ev.Size() <= maxChunk) {
				size += todo[n].ev.Size()
				n++
			}
			events := make([]annals.Event, n)
			for j := range events {
				events[j] = todo[j].ev
			}
			if _, err := a.in.append(actx, stream, annals.Any, events...); err != nil {
				first, last := todo[0].m, todo[n-1].m
				return fmt.Errorf("messages %s offsets %d to %d: %w", first.Source, first.Offset, last.Offset, err)
			}
			counts[i] += uint64(n)
			todo = todo[n:]
		}
		return nil
	})
	var total uint64
	for _, c := range counts {
		total += c
	}
	return total, err
}

// parallel runs fn for 0..n-1, at most maxConcurrent at once, and returns the first error.
// After an error it starts no more calls, but waits for those under way; fn gets a context
// that the others' errors do not cancel, so that no write it hands to the store is left to
// land after parallel returns (and after the next attempt looked for it).
func parallel(ctx context.Context, n int, fn func(ctx context.Context, i int) error) error {
	if n == 1 {
		return fn(ctx, 0)
	}
	var (
		wg    sync.WaitGroup
		sem   = make(chan struct{}, maxConcurrent)
		mu    sync.Mutex
		first error
	)
	failed := func() bool {
		mu.Lock()
		defer mu.Unlock()
		return first != nil
	}
	for i := range n {
		sem <- struct{}{}
		if failed() {
			<-sem
			break
		}
		wg.Go(func() {
			defer func() { <-sem }()
			if err := fn(ctx, i); err != nil {
				mu.Lock()
				if first == nil {
					first = err
				}
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	return first
}
