package relay

import (
	"context"
	"errors"
	"math/rand/v2"
	"sync"
	"testing"
	"time"

	"github.com/annalsdb/annals"
	"github.com/annalsdb/annals/internal/testwait"
)

var errBrokerDown = errors.New("test broker: unavailable")

// Random publish failures (answers that are errors, and Publish calls that fail) while events
// are appended: after each failure the relay starts again from its stored checkpoint and
// publishes again only what follows it (never skipping), and in the end each event was
// acknowledged, deduplicated by id, exactly once.
func TestRelayRestartsAfterFailures(t *testing.T) {
	eachStore(t, func(t *testing.T, s annals.Store) {
		seed := rand.Uint64()
		t.Logf("seed %d", seed)
		rng := rand.New(rand.NewPCG(seed, seed))
		var rngMu sync.Mutex
		roll := func() float64 {
			rngMu.Lock()
			defer rngMu.Unlock()
			return rng.Float64()
		}

		const n = 600
		var evMu sync.Mutex
		var evs []annals.RecordedEvent
		byPos := map[uint64]annals.RecordedEvent{}
		ackedPos := map[uint64]bool{}

		p := newTestPub(t)
		var last uint64 // position of the previous Publish
		restarts, failures := 0, 0
		p.fault = func(m published) (error, error) {
			// On the relay's publishing goroutine: check where a restart starts.
			if m.position <= last {
				restarts++
				// Only what follows the stored checkpoint is published again, and nothing
				// before the restart was left unacknowledged. (The events before m were
				// recorded before m was appended.)
				if cp := storedCheckpoint(t, s, "orders"); m.position <= cp {
					t.Errorf("restart publishes %d again, at or before the checkpoint %d", m.position, cp)
				}
				evMu.Lock()
				for q := uint64(1); q < m.position; q++ {
					if _, ok := byPos[q]; ok && !ackedPos[q] {
						t.Errorf("restart at %d: the event at %d before it was never acknowledged (skipped)", m.position, q)
					}
				}
				evMu.Unlock()
			}
			last = m.position
			switch x := roll(); {
			case x < 0.01:
				failures++
				return errBrokerDown, nil
			case x < 0.03:
				failures++
				return nil, errBrokerDown
			}
			return nil, nil
		}
		p.onAck = func(m published) {
			evMu.Lock()
			ackedPos[m.position] = true
			evMu.Unlock()
		}

		r := newRelay(t, s, p, testOptions(t, "orders"))
		start(t, r)
		ctx := context.Background()
		began := time.Now()
		for i := range n {
			stream := []string{"cart-1", "cart-2", "order-1", "order-2"}[i%4]
			ev := annals.Event{ID: annals.NewUUID(), Type: "Happened"}
			res, err := s.Append(ctx, stream, annals.Any, ev)
			if err != nil {
				t.Fatal(err)
			}
			evMu.Lock()
			rec := annals.RecordedEvent{ID: ev.ID, Stream: stream, Revision: res.Revision, Position: res.Position}
			evs = append(evs, rec)
			byPos[res.Position] = rec
			evMu.Unlock()
			// Paced (50 appends a millisecond) so that failures meet live delivery too.
			testwait.Pace(ctx, began, int64(i), 50_000)
		}
		waitAcked(t, p, evs)
		ids := p.ackedIDs()
		if len(ids) != n {
			t.Errorf("%d distinct events acknowledged, want %d", len(ids), n)
		}
		// Per stream, the acknowledged events deduplicated by id come in revision order.
		seen := map[annals.UUID]bool{}
		next := map[string]uint64{}
		for _, m := range p.ackedMsgs() {
			if seen[m.id] {
				continue
			}
			seen[m.id] = true
			if rev := byPos[m.position].Revision; rev != next[m.stream] {
				t.Errorf("stream %s: revision %d first acknowledged when %d was due", m.stream, rev, next[m.stream])
			}
			next[m.stream]++
		}
		st := r.Status()
		t.Logf("%d failures, %d restarts, %d messages for %d events; status errors %d", failures, restarts, len(p.logged()), n, st.Errors)
		if failures > 0 && (st.Errors == 0 || st.LastError == "") {
			t.Errorf("status after %d failures: errors %d, lastError %q", failures, st.Errors, st.LastError)
		}
	})
}
