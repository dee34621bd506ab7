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
	skipped  map[annals.UUID]bool
	epoch    int
	// restartCP is the checkpoint the service restarted from (haveCP: it is known): the log
	// does not deliver again an event before it.
	restartCP uint64
	haveCP    bool
	history   map[annals.UUID][]string
}

func (r *randomRun) note(id annals.UUID, format string, args ...any) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.history[id] = append(r.history[id], fmt.Sprintf(format, args...))
}

// testRandomized appends events while consumers join, leave, ack, nack (retry, delay, park,
// skip) and let events time out at random, and checks that every appended event ends acked
// or skipped (parked ones are replayed), and that no event is acked twice between restarts.
//
// An event received again after its ack is either a copy of a delivery taken back before the
// ack (after a timeout, or from a consumer that left) that reached the consumer late (a
// network client's queue holds what the server sent it; in process, a Receive that took the
// message just before the timeout), or a delivery after the ack, which is a bug: the case
// acks every such event again, and that ack must fail, as the event is not in flight. After
// a restart the service may deliver again what the checkpoint written at the stop did not
// cover, and nothing the checkpoint covered comes again from the log. (A parked event
// replayed and acked may be replayed again after a restart: the replay marker is not checked.)
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
	r := &randomRun{t: t, seed: seed, appended: map[annals.UUID]bool{}, acked: map[annals.UUID]int{}, skipped: map[annals.UUID]bool{}, history: map[annals.UUID][]string{}}

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
			i, err := svc.Info(ctx, name)
			if err != nil {
				t.Fatalf("Info after the restart: %v", err)
			}
			t.Logf("after the restart: checkpoint %d", i.Checkpoint)
			r.mu.Lock()
			r.epoch++
			r.restartCP, r.haveCP = i.Checkpoint, true
			r.mu.Unlock()
			consumers = nil
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
		var missing []string
		for id := range r.appended {
			if _, ok := r.acked[id]; !ok && !r.skipped[id] {
				missing = append(missing, fmt.Sprintf("%s %v", id, r.history[id]))
			}
		}
		if len(missing) > 0 {
			return fmt.Errorf("seed %d: %d of %d events not settled, such as %v", seed, len(missing), len(r.appended), missing[:min(3, len(missing))])
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
		m, err := c.Receive(ctx)
		if err != nil {
			return
		}
		id := m.Event.ID
		r.mu.Lock()
		if !r.appended[id] {
			r.t.Errorf("delivered %s of %s, which the run did not append", id, m.Event.Stream)
		}
		ackEpoch, acked := r.acked[id]
		again := acked && ackEpoch == epoch // a late copy, or a bug: the ack below tells
		if acked && ackEpoch < epoch && !m.Parked && r.haveCP && m.Event.Position < r.restartCP {
			r.t.Errorf("seed %d: event %s at position %d, acked before the restart, delivered again from the log, which restarted from checkpoint %d: %v",
				r.seed, id, m.Event.Position, r.restartCP, r.history[id])
		}
		r.mu.Unlock()
		action := 0
		if !drain && !again {
			action = rng.IntN(100)
		}
		r.note(id, "%p got it (retries %d, parked %v, position %d, epoch %d), action %d", c, m.Retries, m.Parked, m.Event.Position, epoch, action)
		switch {
		case action < 70:
			err = c.Ack(ctx, id)
			if err == nil {
				r.mu.Lock()
				if e, ok := r.acked[id]; ok && e == epoch {
					r.t.Errorf("seed %d: event %s acked twice (the second delivery was live after the first ack): %v", r.seed, id, r.history[id])
				}
				r.acked[id] = epoch
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
