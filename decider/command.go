package decider

import (
	"context"
	"errors"
	"time"

	"github.com/annalsdb/annals"
	"github.com/annalsdb/annals/codec"
)

// handleState is a step of [Handler.Handle]. Each step is a method of [command] that does its
// work and returns the next step; stateDone ends the command with its answer in the command.
// The transitions (any step may also end in stateDone with an error):
//
//	start   → decide (a state from the cache) | load
//	load    → decide
//	decide  → done (a repeated idempotency key) | recheck (a refusal or a no-op decided on a
//	          state from the cache) | decided
//	recheck → load (the stream has moved on) | decided
//	decided → done (a refusal or a no-op) | append
//	append  → load (a conflict, within the retries) | done (written, or an error)
type handleState int

const (
	// stateLoad reads what the stream holds beyond the state; after a conflict it also brings
	// the state up to the revision that the conflict reported.
	stateLoad handleState = iota
	// stateDecide answers a repeated idempotency key with the first result, or decides.
	stateDecide
	// stateRecheck follows a refusal or a no-op decided on a state taken from the cache, which
	// may be stale: it reads what is new, and decides again when there is anything.
	stateRecheck
	// stateDecided returns a refusal or a no-op, or goes on to append the events decided.
	stateDecided
	// stateAppend appends the events decided with the state's revision as the expected one.
	stateAppend
	// stateDone: the command's result and error are set.
	stateDone
)

// command is one call of [Handler.Handle] as it goes through its [handleState] steps.
type command[S, C, E any] struct {
	h      *Handler[S, C, E]
	stream string
	cmd    C
	key    string // idempotency key, or ""
	md     codec.Metadata

	agg *aggregate[S]
	// verified: agg has been read from the stream by this command. A state taken from the
	// cache is used unverified: the append's expected revision checks it, and its first
	// conflict only says that it was stale, and costs no retry.
	verified bool
	// conflict is the last conflict the append met, nil before any.
	conflict error
	// missing: the last read found no stream (it does not exist, or was deleted).
	missing           bool
	attempts, retries int

	events    []E   // what Decide returned
	decideErr error // Decide's error

	res Result[E]
	err error
}

// start takes the stream's state from the cache, or from its latest snapshot.
func (c *command[S, C, E]) start(ctx context.Context) handleState {
	c.agg = c.h.cache.take(c.stream)
	if c.agg != nil {
		return stateDecide
	}
	c.agg = c.h.fromSnapshot(ctx, c.stream, SnapshotQuery{})
	c.verified = true
	return stateLoad
}

// done ends the command with res and err.
func (c *command[S, C, E]) done(res Result[E], err error) handleState {
	c.res, c.err = res, err
	return stateDone
}

// fail ends the command with err.
func (c *command[S, C, E]) fail(err error) handleState {
	return c.done(Result[E]{}, err)
}

// keep puts the state back in the cache and ends the command with res and err.
func (c *command[S, C, E]) keep(res Result[E], err error) handleState {
	c.h.cache.put(c.agg)
	return c.done(res, err)
}

func (c *command[S, C, E]) load(ctx context.Context) handleState {
	var err error
	if c.missing, err = c.h.catchUp(ctx, c.agg, 0, time.Time{}); err != nil {
		return c.fail(err)
	}
	if c.conflict != nil {
		if err := c.h.awaitConflict(ctx, c.agg, c.conflict, c.missing); err != nil {
			return c.fail(err)
		}
	}
	return stateDecide
}

func (c *command[S, C, E]) decide(ctx context.Context) handleState {
	if c.key != "" {
		if rec, ok := c.agg.keys.get(c.key); ok {
			c.h.cache.put(c.agg)
			return c.done(c.h.duplicate(ctx, c.stream, rec))
		}
	}
	c.events, c.decideErr = c.h.d.Decide(c.agg.state, c.cmd)
	if (c.decideErr != nil || len(c.events) == 0) && !c.verified {
		return stateRecheck
	}
	return stateDecided
}

func (c *command[S, C, E]) recheck(ctx context.Context) handleState {
	next := c.agg.next
	if _, err := c.h.catchUp(ctx, c.agg, 0, time.Time{}); err != nil {
		return c.fail(err)
	}
	c.verified = true
	if c.agg.next != next {
		return stateLoad
	}
	return stateDecided
}

func (c *command[S, C, E]) decided() handleState {
	if c.decideErr != nil {
		return c.keep(Result[E]{}, Refuse(c.decideErr))
	}
	if len(c.events) == 0 {
		return c.keep(Result[E]{Stream: c.stream, Revision: c.agg.revision, Position: c.agg.position}, nil)
	}
	return stateAppend
}

func (c *command[S, C, E]) append(ctx context.Context) handleState {
	h, agg := c.h, c.agg
	encoded, stored, err := h.encode(c.stream, c.events, c.md)
	if err != nil {
		return c.keep(Result[E]{}, err)
	}
	expected := annals.NoStream
	if agg.exists {
		expected = annals.Exact(agg.revision)
	}
	c.attempts++
	ar, err := h.store.Append(ctx, c.stream, expected, encoded...)
	if errors.Is(err, annals.ErrWrongExpectedVersion) {
		if c.verified {
			if c.retries >= h.maxRetries {
				return c.fail(&ConflictError{Stream: c.stream, Attempts: c.attempts, Last: err})
			}
			c.retries++
		}
		c.verified = true
		c.conflict = err
		return stateLoad
	}
	if err != nil {
		return c.fail(err)
	}
	// Fold what was stored, decoded as every later load decodes it, not the values Decide
	// returned: the two differ where encoding loses something.
	size := 0
	for i, e := range stored {
		agg.state = h.d.Evolve(agg.state, e)
		size += len(encoded[i].Data) + len(encoded[i].Metadata)
	}
	first := ar.Revision + 1 - uint64(len(c.events))
	agg.exists, agg.revision, agg.next, agg.position = true, ar.Revision, ar.Revision+1, ar.Position
	if c.key != "" {
		agg.keys.record(c.key, first, ar.Revision, ar.Position)
	}
	agg.sinceSnap += uint64(len(c.events))
	agg.sinceBytes += size
	// A snapshot check that fails comes back with the result: the command is written.
	snapErr := h.maybeSnapshot(ctx, agg)
	return c.keep(Result[E]{Stream: c.stream, Revision: ar.Revision, Position: ar.Position, Events: c.events, Written: true}, snapErr)
}
