package relay

import (
	"context"
	"errors"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/annalsdb/annals"
	"github.com/annalsdb/annals/internal/testwait"
)

var errKilled = errors.New("test: the relay's process was killed")

// killable is a store whose writes fail once killed: a relay on it that is killed writes no
// checkpoint any more, as after SIGKILL.
type killable struct {
	annals.Store
	killed atomic.Bool
}

func (k *killable) Append(ctx context.Context, stream string, expected annals.ExpectedRevision, events ...annals.Event) (annals.AppendResult, error) {
	if k.killed.Load() {
		return annals.AppendResult{}, errKilled
	}
	return k.Store.Append(ctx, stream, expected, events...)
}

func (k *killable) SetMetadata(ctx context.Context, stream string, expected annals.ExpectedRevision, meta annals.StreamMetadata) (annals.AppendResult, error) {
	if k.killed.Load() {
		return annals.AppendResult{}, errKilled
	}
	return k.Store.SetMetadata(ctx, stream, expected, meta)
}

// Relays killed at random points while events are appended: each new one starts from the
// checkpoint the last one stored and publishes again only what follows it; deduplicated by
// id, every event is acknowledged once.
func TestRelayKilledAtRandomPoints(t *testing.T) {
	eachStore(t, func(t *testing.T, s annals.Store) {
		seed := rand.Uint64()
		t.Logf("seed %d", seed)
		rng := rand.New(rand.NewPCG(seed, 1))
		const n, rounds = 1000, 12

		var evMu sync.Mutex
		var evs []annals.RecordedEvent
		user := map[uint64]annals.UUID{}
		writerDone := make(chan struct{})
		go func() {
			defer close(writerDone)
			ctx := context.Background()
			for i := range n {
				stream := []string{"cart-1", "cart-2", "order-1"}[i%3]
				ev := annals.Event{ID: annals.NewUUID(), Type: "Happened"}
				res, err := s.Append(ctx, stream, annals.Any, ev)
				if err != nil {
					t.Errorf("append: %v", err)
					return
				}
				evMu.Lock()
				evs = append(evs, annals.RecordedEvent{ID: ev.ID, Stream: stream, Position: res.Position})
				user[res.Position] = ev.ID
				evMu.Unlock()
			}
		}()

		acked := map[annals.UUID]int{}
		total := 0
		for round := range rounds + 1 {
			k := &killable{Store: s}
			p := newTestPub(t)
			from := storedCheckpoint(t, s, "orders")
			// Each round moves at most killAt events on, so rounds never run out of events.
			killAt := 1 + rng.IntN(n/rounds/2)
			sent := 0
			ctx, cancel := context.WithCancel(context.Background())
			p.fault = func(m published) (error, error) {
				if sent == 0 {
					// Every user event between the checkpoint and the first one published
					// was acknowledged before (a write cut short by the kill may have
					// landed and moved the checkpoint past the one read above). Those
					// before m were recorded before m was appended.
					evMu.Lock()
					for q := from + 1; q < m.position; q++ {
						if id, ok := user[q]; ok && acked[id] == 0 {
							t.Errorf("round %d: first published %d, skipping the unacknowledged event at %d (checkpoint %d)", round, m.position, q, from)
						}
					}
					evMu.Unlock()
				}
				sent++
				if round < rounds && sent == killAt {
					k.killed.Store(true)
					cancel()
				}
				return nil, nil
			}
			opts := testOptions(t, "orders")
			r := newRelay(t, k, p, opts)
			done := make(chan error, 1)
			go func() { done <- r.Run(ctx) }()
			if round == rounds {
				<-writerDone
				evMu.Lock()
				all := append([]annals.RecordedEvent(nil), evs...)
				evMu.Unlock()
				testwait.Until(t, "every event acknowledged", func() bool {
					ids := p.ackedIDs()
					for _, ev := range all {
						if ids[ev.ID]+acked[ev.ID] == 0 {
							return false
						}
					}
					return true
				})
				cancel()
			}
			if err := testwait.Recv(t, "Run's return", done); err != nil {
				t.Fatalf("round %d: Run: %v", round, err)
			}
			p.close()
			evMu.Lock()
			for id, c := range p.ackedIDs() {
				acked[id] += c
			}
			evMu.Unlock()
			total += len(p.logged())
		}
		if len(acked) != n {
			t.Errorf("%d distinct events acknowledged, want %d", len(acked), n)
		}
		t.Logf("%d messages for %d events over %d kills", total, n, rounds)
	})
}
