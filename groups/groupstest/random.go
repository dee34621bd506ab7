package groupstest

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/annalsdb/annals"
	"github.com/annalsdb/annals/groups"
	"github.com/annalsdb/annals/internal/testwait"
)

// randomRun is the state of the randomized case: what was appended, and what each event
// became.
type randomRun struct {
	t    *testing.T
	seed int64

	mu       sync.Mutex
	appended map[annals.UUID]bool
	acked    map[annals.UUID]int // the epoch (restarts so far) of the ack
	ackedAt  map[annals.UUID]uint64
	clock    uint64 // counts acks; orders them with the start of receives
	skipped  map[annals.UUID]bool
	epoch    int
	history  map[annals.UUID][]string
}

func (r *randomRun) note(id annals.UUID, format string, args ...any) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.history[id] = append(r.history[id], fmt.Sprintf(format, args...))
}

// testRandomized appends events while consumers join, leave, ack, nack (retry, delay, park,
// skip) and let events time out at random, and checks that every appended event ends acked
// or skipped (parked ones are replayed), that no event is acked twice, and that none is
// delivered again after its ack, but after a restart (which may deliver again what was
// acked after the last checkpoint written).
func testRandomized(t *testing.T, env *Env) {
	seed := time.Now().UnixNano()
	if v := os.Getenv("ANNALS_SEED"); v != "" {
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil {
			t.Fatalf("ANNALS_SEED=%q: want an integer", v)
		}
		seed = n
	}
	t.Logf("ANNALS_SEED=%d (set it to replay this run)", seed)
	rng := rand.New(rand.NewPCG(uint64(seed), 1))
	r := &randomRun{t: t, seed: seed, appended: map[annals.UUID]bool{}, acked: map[annals.UUID]int{}, skipped: map[annals.UUID]bool{}, ackedAt: map[annals.UUID]uint64{}, history: map[annals.UUID][]string{}}

	prefix := uniq("rnd") + "-"
	name := uniq("g")
	s := groups.Settings{
		Stream:             annals.AllStream,
		Filter:             &annals.Filter{StreamPrefixes: []string{prefix}},
		Strategy:           []groups.Strategy{groups.RoundRobin, groups.PinnedByStream, groups.PinnedByKey}[rng.IntN(3)],
		MessageTimeout:     100 * time.Millisecond,
		MaxRetries:         3,
		CheckpointInterval: 10 * time.Millisecond,
		Buffer:             8 + rng.IntN(64),
	}
	t.Logf("strategy %s, buffer %d", s.Strategy, s.Buffer)
	svc := env.Service
	create(t, svc, name, s)

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var wg sync.WaitGroup
	defer wg.Wait()
	var consumers []groups.Consumer
	joinOne := func() {
		c, err := svc.Join(ctx, name, &groups.JoinOptions{Window: 1 + rng.IntN(8)})
		if err != nil {
			t.Fatalf("Join: %v", err)
		}
		consumers = append(consumers, c)
		crng := rand.New(rand.NewPCG(rng.Uint64(), 2))
		r.mu.Lock()
		epoch := r.epoch
		r.mu.Unlock()
		wg.Add(1)
		go func() { defer wg.Done(); r.consume(ctx, c, crng, false, epoch) }()
	}
	joinOne()
	restarted := false
	for op := 0; op < 80; op++ {
		switch k := rng.IntN(20); {
		case k < 12:
			n := 1 + rng.IntN(8)
			for range n {
				stream := fmt.Sprintf("%s%d", prefix, rng.IntN(6))
				id := annals.NewUUID()
				meta := fmt.Appendf(nil, `{"$correlationId":"c%d"}`, rng.IntN(4))
				r.mu.Lock()
				r.appended[id] = true
				r.mu.Unlock()
				if _, err := env.Store.Append(ctx, stream, annals.Any, annals.Event{ID: id, Type: "Rnd", Data: []byte(`{}`), Metadata: meta}); err != nil {
					t.Fatalf("append: %v", err)
				}
			}
		case k < 15 && len(consumers) < 5:
			joinOne()
		case k < 18 && len(consumers) > 1:
			i := rng.IntN(len(consumers))
			consumers[i].Close()
			consumers = append(consumers[:i], consumers[i+1:]...)
		case k == 19 && env.Restart != nil && !restarted && op > 20:
			restarted = true
			t.Logf("restart after operation %d", op)
			svc = env.Restart()
			// Acks made before are of the previous epoch: the new service may deliver
			// those events again, from the checkpoint written at the stop.
			r.mu.Lock()
			r.epoch++
			r.mu.Unlock()
			consumers = nil
			if i, err := svc.Info(ctx, name); err == nil {
				t.Logf("after the restart: checkpoint %d", i.Checkpoint)
			}
			joinOne()
		default:
			if _, err := svc.ReplayParked(ctx, name, rng.IntN(3)); err != nil {
				t.Fatalf("ReplayParked: %v", err)
			}
		}
	}
	for _, c := range consumers {
		c.Close()
	}
	// A consumer that acks everything drains the group, with the parked events replayed.
	drain, err := svc.Join(ctx, name, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer drain.Close()
	wg.Add(1)
	r.mu.Lock()
	epoch := r.epoch
	r.mu.Unlock()
	go func() { defer wg.Done(); r.consume(ctx, drain, nil, true, epoch) }()
	testwait.UntilNil(t, "every appended event acked or skipped", func() error {
		if _, err := svc.ReplayParked(ctx, name, 0); err != nil {
			return err
		}
		r.mu.Lock()
		defer r.mu.Unlock()
		missing := 0
		for id := range r.appended {
			if _, ok := r.acked[id]; !ok && !r.skipped[id] {
				missing++
			}
		}
		if missing > 0 {
			return fmt.Errorf("%d of %d events not settled", missing, len(r.appended))
		}
		return nil
	})
	i := info(t, svc, name)
	t.Logf("delivered %d, acked %d, retries %d, parked %d, skipped %d", i.Delivered, i.Acked, i.Retries, i.ParkedTotal, i.Skipped)
}

// consume receives until the consumer ends, acting at random (rng) or acking all (drain).
// epoch is that of the service c joined.
func (r *randomRun) consume(ctx context.Context, c groups.Consumer, rng *rand.Rand, drain bool, epoch int) {
	for {
		// A message may have been taken from the consumer's mailbox before an ack made
		// elsewhere after a timeout (the timeout race): only a receive that starts after the
		// ack may not deliver the event again.
		r.mu.Lock()
		started := r.clock
		r.mu.Unlock()
		m, err := c.Receive(ctx)
		if err != nil {
			return
		}
		id := m.Event.ID
		r.mu.Lock()
		if !r.appended[id] {
			r.t.Errorf("delivered %s of %s, which the run did not append", id, m.Event.Stream)
		}
		if e, ok := r.acked[id]; ok && e == epoch && r.ackedAt[id] <= started {
			r.t.Errorf("seed %d: event %s delivered again after it was acked (parked %v, retries %d, position %d, epoch %d): %v", r.seed, id, m.Parked, m.Retries, m.Event.Position, epoch, r.history[id])
		}
		r.mu.Unlock()
		action := 0
		if !drain {
			action = rng.IntN(100)
		}
		r.note(id, "%p got it (retries %d, parked %v), action %d", c, m.Retries, m.Parked, action)
		switch {
		case action < 70:
			err = c.Ack(ctx, id)
			if err == nil {
				r.mu.Lock()
				if e, ok := r.acked[id]; ok && e == epoch {
					r.t.Errorf("seed %d: event %s acked twice", r.seed, id)
				}
				r.acked[id] = epoch
				r.clock++
				r.ackedAt[id] = r.clock
				r.mu.Unlock()
			}
		case action < 80:
			err = c.Nack(ctx, groups.Nack{Action: groups.Retry}, id)
		case action < 85:
			err = c.Nack(ctx, groups.Nack{Action: groups.Retry, Delay: 30 * time.Millisecond}, id)
		case action < 88:
			err = c.Nack(ctx, groups.Nack{Action: groups.Skip}, id)
			if err == nil {
				r.mu.Lock()
				r.skipped[id] = true
				r.mu.Unlock()
			}
		case action < 90:
			err = c.Nack(ctx, groups.Nack{Action: groups.Park, Reason: "random"}, id)
		default:
			continue // let it time out
		}
		r.note(id, "%p: %v", c, err)
		if err != nil && !errors.Is(err, groups.ErrNotInFlight) && !errors.Is(err, groups.ErrConsumerClosed) &&
			!errors.Is(err, annals.ErrClosed) && ctx.Err() == nil {
			r.t.Errorf("seed %d: settling %s: %v", r.seed, id, err)
			return
		}
	}
}
