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

// pending is a batch planned: what to append, per target stream in offset order.
type pending struct {
	msgs       []bridge.Incoming
	streams    []string // in the order first seen
	plan       map[string][]planned
	last       map[string]uint64 // source → last offset handled in this batch
	duplicates uint64
	// done is closed when the appends end, with err.
	done chan struct{}
	err  error
}

// plan decodes msgs and leaves out those already appended (at or before Done, delivered
// again in this attempt, seen at another offset, or found in their stream).
func (a *attempt) plan(ctx context.Context, msgs []bridge.Incoming) (*pending, error) {
	in := a.in
	p := &pending{msgs: msgs, plan: map[string][]planned{}, last: map[string]uint64{}}
	for i := range msgs {
		m := &msgs[i]
		stream, ev, err := in.opts.Decoder.Decode(m)
		if err != nil {
			return nil, err // it names the message
		}
		s, err := a.source(ctx, m.Source)
		if err != nil {
			return nil, err
		}
		if s.hasDone && m.Offset <= s.done || s.hasHandled && m.Offset <= s.handled {
			// Appended before (at or before Done), or delivered again within this attempt.
			in.recent.seenElsewhere(ev.ID, place{m.Source, m.Offset})
			p.duplicates++
			continue
		}
		s.handled, s.hasHandled = m.Offset, true // only the loop reads handled
		p.last[m.Source] = m.Offset
		if in.recent.seenElsewhere(ev.ID, place{m.Source, m.Offset}) {
			p.duplicates++
			continue
		}
		if s.win.holds(m.Offset) {
			found, err := a.appended(ctx, stream, s.win.since, ev.ID)
			if err != nil {
				return nil, fmt.Errorf("look up message %s offset %d (event %s) in %s: %w", m.Source, m.Offset, ev.ID, stream, err)
			}
			if found {
				p.duplicates++
				continue
			}
		}
		if _, ok := p.plan[stream]; !ok {
			p.streams = append(p.streams, stream)
		}
		p.plan[stream] = append(p.plan[stream], planned{m, ev})
	}
	return p, nil
}

// start starts the appends of p, once its records are written and no other batch is under
// way.
func (a *attempt) start(ctx context.Context, p *pending) {
	a.mu.Lock()
	for name, off := range p.last {
		s := a.mu.sources[name]
		s.running, s.hasRunning = off, true
	}
	a.mu.Unlock()
	p.done = make(chan struct{})
	a.running = p
	go func() {
		defer close(p.done)
		appended, err := a.appendAll(ctx, p.streams, p.plan)
		a.in.count(appended, p.duplicates)
		if err == nil {
			a.in.setOffsets(p.last)
		}
		p.err = err
	}()
}

// wait waits for the batch under way, if any, and marks it durable.
func (a *attempt) wait() error {
	p := a.running
	if p == nil {
		return nil
	}
	<-p.done
	a.running = nil
	a.mu.Lock()
	defer a.mu.Unlock()
	for name := range p.last {
		a.mu.sources[name].hasRunning = false
	}
	if p.err != nil {
		return p.err
	}
	for name, off := range p.last {
		s := a.mu.sources[name]
		s.done, s.hasDone = off, true
		if s.win.open && off >= s.win.upTo {
			for key := range a.found {
				if key.since == s.win.since {
					delete(a.found, key)
				}
			}
			s.win = window{}
		}
	}
	a.durable = append(a.durable, p.msgs...)
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
