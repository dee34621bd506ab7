package bench

import (
	"context"
	"fmt"
	"math/rand/v2"
	"sync"
	"sync/atomic"

	"github.com/annalsdb/annals"
)

// streamLength is the number of events of each stream that read-stream reads.
const streamLength = 1000

// minStoreEvents is the least number of events one population phase writes: every round
// holds at least one event of a read stream and one other.
const minStoreEvents = 2 * streamLength

// populateWriters is the number of concurrent writers that fill the read store.
const populateWriters = 16

// fillBatch is the number of events of each filler append.
const fillBatch = 100

// population is what has been written to the read store.
type population struct {
	stored int64 // the last position written
	phases []phase
}

// phase is one population step: streamLength rounds, each of which appends one event to each
// of the phase's read streams (one append each) and then fills up with fillAppends appends of
// up to fillBatch events to new streams. The read streams thus get their events spread evenly
// over the part of the log the phase wrote.
type phase struct {
	id          int
	targets     []string
	fillAppends int
}

func fillName(phase, round, j int) string { return fmt.Sprintf("fill-%d.%d.%d", phase, round, j) }

// randomFill returns the id of a random filler stream written so far.
func (p *population) randomFill(rng *rand.Rand) string {
	total := 0
	for _, ph := range p.phases {
		total += streamLength * ph.fillAppends
	}
	i := rng.IntN(total)
	for _, ph := range p.phases {
		n := streamLength * ph.fillAppends
		if i < n {
			return fillName(ph.id, i/ph.fillAppends, i%ph.fillAppends)
		}
		i -= n
	}
	panic("bench: randomFill out of range")
}

// latest returns the read streams of the last phase.
func (p *population) latest() []string { return p.phases[len(p.phases)-1].targets }

// populate appends events to s until it holds at least to events (and at least minStoreEvents
// more than now, rounded up to whole rounds), in one new phase, counting the events written
// in done.
func (p *population) populate(ctx context.Context, s annals.Store, to int64, done *atomic.Int64) error {
	n := max(to-p.stored, minStoreEvents)
	perRound := int((n + streamLength - 1) / streamLength)
	targets := min(max(perRound/10, 1), 100)
	filler := perRound - targets
	ph := phase{id: len(p.phases), fillAppends: (filler + fillBatch - 1) / fillBatch, targets: make([]string, targets)}
	for t := range ph.targets {
		ph.targets[t] = fmt.Sprintf("read-%d.%d", ph.id, t)
	}
	var (
		next    atomic.Int64
		stopped atomic.Bool
		wg      sync.WaitGroup
		errs    [populateWriters]error
		last    [populateWriters]uint64
	)
	for w := range populateWriters {
		wg.Go(func() {
			evs := make([]annals.Event, fillBatch)
			seq := uint64(w) * 104729
			appendN := func(stream string, expected annals.ExpectedRevision, k int) bool {
				for i := range evs[:k] {
					evs[i] = newEvent(seq)
					seq++
				}
				res, err := s.Append(ctx, stream, expected, evs[:k]...)
				if err != nil {
					errs[w] = fmt.Errorf("populate: append %d events to %s: %w", k, stream, err)
					stopped.Store(true)
					return false
				}
				last[w] = max(last[w], res.Position)
				done.Add(int64(k))
				return true
			}
			for !stopped.Load() {
				round := int(next.Add(1) - 1)
				if round >= streamLength {
					return
				}
				for _, t := range ph.targets {
					if !appendN(t, annals.Any, 1) {
						return
					}
				}
				for j, left := 0, filler; left > 0; j++ {
					k := min(left, fillBatch)
					if !appendN(fillName(ph.id, round, j), annals.NoStream, k) {
						return
					}
					left -= k
				}
			}
		})
	}
	wg.Wait()
	for w := range populateWriters {
		if errs[w] != nil {
			return errs[w]
		}
		p.stored = max(p.stored, int64(last[w]))
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	p.phases = append(p.phases, ph)
	return nil
}
