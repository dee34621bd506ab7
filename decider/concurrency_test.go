package decider_test

import (
	"errors"
	"flag"
	"fmt"
	"math/rand/v2"
	"os"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/annalsdb/annals"
	"github.com/annalsdb/annals/decider"
)

var flagSeed = flag.Uint64("decider.seed", 0, "seed of the randomized concurrency test (0: from DECIDER_SEED, else the clock)")

func seed(t *testing.T) uint64 {
	s := *flagSeed
	if s == 0 {
		if env := os.Getenv("DECIDER_SEED"); env != "" {
			v, err := strconv.ParseUint(env, 10, 64)
			if err != nil {
				t.Fatalf("DECIDER_SEED=%q: %v", env, err)
			}
			s = v
		}
	}
	if s == 0 {
		s = uint64(time.Now().UnixNano())
	}
	t.Logf("seed %d (replay with -decider.seed=%d or DECIDER_SEED=%d)", s, s, s)
	return s
}

type outcome struct {
	stream string
	key    string
	res    decider.Result[cartEvent]
	err    error
}

// TestConcurrentCommands: many goroutines, through handlers with and without cache and
// snapshots, send random commands (some with repeated idempotency keys) to a few carts. Then:
// every stored event was written by exactly one successful command (no lost update, no
// phantom), the handlers' state equals the sequential fold of the stored events, every
// duplicate names its first handling, and every failure is a domain error or a reported
// conflict.
func TestConcurrentCommands(t *testing.T) {
	base := seed(t)
	forEachStore(t, func(t *testing.T, s annals.Store) {
		ctx := ctxT(t)
		snaps := &decider.SnapshotPolicy{Every: 5, Version: "v1"}
		handlers := []*decider.Handler[cart, cartCmd, cartEvent]{
			newHandler(t, s, nil),
			newHandler(t, s, &decider.Options[cartCmd]{CacheSize: 2, MaxRetries: 3}),
			newHandler(t, s, &decider.Options[cartCmd]{Snapshots: snaps, CacheSize: 8}),
			newHandler(t, s, &decider.Options[cartCmd]{Snapshots: snaps, MaxRetries: 1}),
		}
		streams := []string{"cart-a", "cart-b", "cart-c"}
		const workers, perWorker = 8, 25
		var mu sync.Mutex
		var outcomes []outcome
		var wg sync.WaitGroup
		for w := range workers {
			rng := rand.New(rand.NewPCG(base, uint64(w)))
			wg.Go(func() {
				for range perWorker {
					h := handlers[rng.IntN(len(handlers))]
					stream := streams[rng.IntN(len(streams))]
					sku := fmt.Sprintf("sku-%d", rng.IntN(4))
					var cmd cartCmd
					switch r := rng.IntN(10); {
					case r < 6:
						cmd = AddItem{sku, 1 + rng.IntN(3)}
					case r < 8:
						cmd = RemoveItem{sku}
					case r < 9:
						cmd = AddMany{N: 1 + rng.IntN(3)}
					default:
						cmd = Nothing{}
					}
					var opts *decider.CommandOptions
					key := ""
					if rng.IntN(3) == 0 { // keys shared between workers: concurrent duplicates
						key = fmt.Sprintf("key-%d-%v", rng.IntN(10), cmd)
						opts = &decider.CommandOptions{IdempotencyKey: key}
					}
					res, err := h.Handle(ctx, stream, cmd, opts)
					mu.Lock()
					outcomes = append(outcomes, outcome{stream, key, res, err})
					mu.Unlock()
				}
			})
		}
		wg.Wait()

		conflicts, refused, dups := 0, 0, 0
		for _, stream := range streams {
			stored := storedEvents(t, s, stream)
			owner := make([]int, len(stored)) // revision → index+1 of the outcome that wrote it
			firstByKey := map[string]decider.Result[cartEvent]{}
			for i, o := range outcomes {
				if o.stream != stream || o.err != nil || !o.res.Written {
					continue
				}
				n := uint64(len(o.res.Events))
				for r := o.res.Revision + 1 - n; r <= o.res.Revision; r++ {
					if r >= uint64(len(stored)) || owner[r] != 0 {
						t.Fatalf("%s: revision %d claimed twice or not stored (result %+v)", stream, r, o.res)
					}
					owner[r] = i + 1
					if stored[r].Position != o.res.Position-(o.res.Revision-r) {
						t.Errorf("%s@%d: stored position %d, result says %d", stream, r, stored[r].Position, o.res.Position)
					}
				}
				if o.key != "" {
					if _, dup := firstByKey[o.key]; dup {
						t.Errorf("%s: key %q written twice", stream, o.key)
					}
					firstByKey[o.key] = o.res
				}
			}
			for r, w := range owner {
				if w == 0 {
					t.Errorf("%s@%d: stored event written by no successful command", stream, r)
				}
			}
			for _, o := range outcomes {
				switch {
				case o.stream != stream:
				case o.err != nil:
					switch {
					case errors.Is(o.err, decider.ErrTooManyConflicts) && errors.Is(o.err, annals.ErrWrongExpectedVersion):
						conflicts++
					case errors.Is(o.err, errNotInCart):
						refused++
					default:
						t.Errorf("%s: unexpected error %v", stream, o.err)
					}
				case o.res.Duplicate:
					dups++
					first, ok := firstByKey[o.key]
					if !ok || first.Revision != o.res.Revision || first.Position != o.res.Position || !cmp.Equal(first.Events, o.res.Events) {
						t.Errorf("%s: duplicate %+v does not match the first handling %+v", stream, o.res, first)
					}
				}
			}
			want := fold(t, s, stream)
			for i, h := range handlers {
				got, err := h.Load(ctx, stream, nil)
				if err != nil {
					t.Fatal(err)
				}
				if diff := cmp.Diff(want, got.Value); diff != "" || got.Revision != uint64(len(stored)-1) {
					t.Errorf("%s: handler %d loads revision %d (want %d), state (-fold +load):\n%s", stream, i, got.Revision, len(stored)-1, diff)
				}
				// A command through each handler (cached ones included) sees the latest state,
				// and the state it holds in memory is the fold.
				var held cart
				res, err := h.Handle(ctx, stream, Peek{Into: &held}, nil)
				if err != nil || res.Revision != uint64(len(stored)-1) {
					t.Errorf("%s: handler %d decides on revision %d, want %d (%v)", stream, i, res.Revision, len(stored)-1, err)
				}
				if diff := cmp.Diff(want, held); diff != "" {
					t.Errorf("%s: handler %d decides on a state that is not the fold (-fold +held):\n%s", stream, i, diff)
				}
			}
		}
		written := slices.IndexFunc(outcomes, func(o outcome) bool { return o.res.Written })
		if written < 0 {
			t.Fatal("no command was written")
		}
		t.Logf("%d commands: %d duplicates, %d domain refusals, %d gave up after conflicts (reported)", len(outcomes), dups, refused, conflicts)
	})
}
