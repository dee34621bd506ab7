package groups

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/annalsdb/annals"
)

// This file writes what a group keeps in the store as it runs: its checkpoint, its replay
// marker and its parked events. Only the group's loop goroutine (and end, after the loop has
// stopped) writes them, so writes of one group never race each other in one process.

// checkpointDueLocked tells whether the checkpoint or the replay marker has moved since it was
// last written, and when it may be written: one interval after the last write.
func (g *group) checkpointDueLocked() (time.Time, bool) {
	cpMoved := g.mu.dirty && g.mu.log.first() != g.mu.written
	replayMoved := g.mu.replays.first() > g.mu.writtenReplayed
	if !cpMoved && !replayMoved {
		return time.Time{}, false
	}
	return g.mu.lastWrite.Add(g.mu.set.CheckpointInterval), true
}

// flush writes the checkpoint and the replay marker when they moved (with final, whenever
// they differ from what was written). It returns false when the write failed (logged).
func (g *group) flush(ctx context.Context, final bool) bool {
	g.mu.Lock()
	cp, rp := g.mu.log.first(), g.mu.replays.first()
	writeCP := cp != g.mu.written && (g.mu.dirty || final)
	writeRP := rp > g.mu.writtenReplayed
	expected := g.mu.cpExpected
	g.mu.dirty = false
	g.mu.Unlock()
	if !writeCP && !writeRP {
		return true
	}
	for attempt := 0; ; attempt++ {
		var events []annals.Event
		if writeCP {
			data, _ := json.Marshal(checkpointRecord{Created: g.created, Checkpoint: cp})
			events = append(events, annals.Event{ID: annals.NewUUID(), Type: CheckpointEventType, Data: data})
		}
		if writeRP {
			data, _ := json.Marshal(replayedRecord{Created: g.created, Replayed: rp})
			events = append(events, annals.Event{ID: annals.NewUUID(), Type: ReplayedEventType, Data: data})
		}
		_, err := g.appendSystem(ctx, func(res annals.AppendResult) {
			g.mu.Lock()
			g.mu.cpExpected = annals.Exact(res.Revision)
			if writeCP {
				g.mu.written = cp
			}
			if writeRP {
				g.mu.writtenReplayed = rp
			}
			g.mu.lastWrite = time.Now()
			g.mu.Unlock()
		}, CheckpointStream(g.name), expected, events...)
		if err == nil {
			return true
		}
		if !errors.Is(err, annals.ErrWrongExpectedVersion) || attempt >= 5 {
			g.mu.Lock()
			g.mu.dirty = g.mu.dirty || writeCP
			g.mu.Unlock()
			if ctx.Err() == nil {
				g.logger().Warn("group: writing the checkpoint failed", "err", err)
			}
			return false
		}
		// Another manager wrote it: keep the highest, never move it back.
		st, lerr := loadState(ctx, g.m.store, Definition{Name: g.name, Created: g.created}, false)
		if lerr != nil {
			g.logger().Warn("group: reading the checkpoint failed", "err", lerr)
			return false
		}
		expected = st.cpExpected
		if st.haveCP && st.checkpoint >= cp {
			writeCP = false
		}
		if st.replayed >= rp {
			writeRP = false
		}
		if !writeCP && !writeRP {
			g.mu.Lock()
			g.mu.cpExpected = expected
			g.mu.lastWrite = time.Now()
			g.mu.Unlock()
			return true
		}
	}
}

// park appends the entries to the group's parked stream and then settles them: in one append,
// or one by one when they are too large together, and an event too large to be parked with
// its record is parked without its data and metadata (a replay reads them from the log).
func (g *group) park(ctx context.Context, parks []*entry) error {
	err := g.appendParked(ctx, parks, false)
	if errors.Is(err, annals.ErrTooLarge) {
		err = nil
		for i, e := range parks {
			one := parks[i : i+1]
			perr := g.appendParked(ctx, one, false)
			if errors.Is(perr, annals.ErrTooLarge) {
				perr = g.appendParked(ctx, one, true)
			}
			if perr != nil {
				g.mu.Lock()
				g.mu.parking = append(parks[i:], g.mu.parking...) // once the loop stopped, parkPending writes them
				g.mu.Unlock()
				return fmt.Errorf("park event %s in %s: %w", e.ev.ID, ParkedStream(g.name), perr)
			}
			g.mu.Lock()
			g.parkedLocked(one)
			g.mu.Unlock()
		}
		return nil
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	if err != nil {
		g.mu.parking = append(parks, g.mu.parking...) // once the loop stopped, parkPending writes them
		return fmt.Errorf("park %d events in %s: %w", len(parks), ParkedStream(g.name), err)
	}
	g.parkedLocked(parks)
	return nil
}

// parkedLocked settles entries whose parked copies were written.
func (g *group) parkedLocked(parks []*entry) {
	for _, e := range parks {
		g.mu.parked++
		g.mu.parkedTotal++
		g.settleLocked(e)
	}
}

// appendParked appends the parked copies of parks in one append.
func (g *group) appendParked(ctx context.Context, parks []*entry, omit bool) error {
	events := make([]annals.Event, 0, len(parks))
	for _, e := range parks {
		pe, err := parkedEvent(e.parkID, g.created, &e.ev, e.reason, omit)
		if err != nil {
			return err
		}
		events = append(events, pe)
	}
	_, err := g.appendSystem(ctx, nil, ParkedStream(g.name), annals.Any, events...)
	return err
}
