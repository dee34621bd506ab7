package replicatest

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/annalsdb/annals"
	"github.com/annalsdb/annals/lease"
	"github.com/annalsdb/annals/process"
)

// The process scenario's domain: an order ("order-<n>": Placed) has its item reserved by a
// command to "stock-<sku>" (Reserved); the SKU "none" is refused, and the order is then
// rejected by a command to the order (Rejected).

// Manager is the name of the process manager of [Process].
const Manager = "orderflow"

type orderState struct {
	Placed, Reserved, Rejected bool
}

type (
	placed   struct{ SKU string }
	reserved struct{ Order string }
	rejected struct{ Reason string }
	reserve  struct{ Order, SKU string }
	reject   struct{ Order, Reason string }
)

func orderManager() process.Manager[orderState, any] {
	return process.Manager[orderState, any]{
		Name:   Manager,
		Filter: &annals.Filter{Categories: []string{"order", "stock"}},
		Decode: func(ev annals.RecordedEvent) (any, bool, error) {
			var e any
			var err error
			switch ev.Type {
			case "Placed":
				var p placed
				err, e = json.Unmarshal(ev.Data, &p), p
			case "Reserved":
				var r reserved
				err, e = json.Unmarshal(ev.Data, &r), r
			case "Rejected":
				var r rejected
				err, e = json.Unmarshal(ev.Data, &r), r
			default:
				return nil, false, fmt.Errorf("unknown event type %q", ev.Type)
			}
			return e, err == nil, err
		},
		Instance: func(e any, rec annals.RecordedEvent) (string, bool) {
			if r, ok := e.(reserved); ok {
				return r.Order, r.Order != ""
			}
			return strings.CutPrefix(rec.Stream, "order-")
		},
		Initial: func() orderState { return orderState{} },
		React: func(id string, s orderState, in process.Input[any]) []process.Action {
			if e, ok := in.Event.(placed); ok {
				return []process.Action{process.Send{Stream: "stock-" + e.SKU, Command: reserve{id, e.SKU}}}
			}
			if in.Refusal != nil {
				return []process.Action{process.Send{Stream: "order-" + id, Command: reject{id, in.Refusal.Error}}}
			}
			return nil
		},
		Evolve: func(s orderState, in process.Input[any]) orderState {
			switch in.Event.(type) {
			case placed:
				s.Placed = true
			case reserved:
				s.Reserved = true
			}
			if in.Refusal != nil {
				s.Rejected = true
			}
			return s
		},
	}
}

var errNoStock = errors.New("no stock")

// Sender returns the command handlers of the process scenario: each command appends its event
// to its stream once per idempotency key (the key is the event's id, looked for among the
// stream's events, and the append is compare-and-set on the revision read, as a decider's
// handler does), whichever replica sends it and however often. sent, when not nil, counts the
// commands sent.
func Sender(store annals.Store, sent *atomic.Int64) process.Sender {
	return func(ctx context.Context, cmd process.Command) error {
		if sent != nil {
			sent.Add(1)
		}
		var ev annals.Event
		switch c := cmd.Command.(type) {
		case reserve:
			if c.SKU == "none" {
				return process.Refused(errNoStock)
			}
			ev = annals.Event{Type: "Reserved", Data: fmt.Appendf(nil, `{"Order":%q}`, c.Order)}
		case reject:
			ev = annals.Event{Type: "Rejected", Data: fmt.Appendf(nil, `{"Reason":%q}`, c.Reason)}
		default:
			return fmt.Errorf("unknown command %T", c)
		}
		id, err := annals.ParseUUID(cmd.IdempotencyKey)
		if err != nil {
			return fmt.Errorf("command %T: idempotency key %q: %w", cmd.Command, cmd.IdempotencyKey, err)
		}
		ev.ID = id
		for {
			expected := annals.NoStream
			for rec, err := range store.ReadStream(ctx, cmd.Stream, nil) {
				if errors.Is(err, annals.ErrStreamNotFound) {
					break
				}
				if err != nil {
					return err
				}
				if rec.ID == id {
					return nil // applied before
				}
				expected = annals.Exact(rec.Revision)
			}
			_, err := store.Append(ctx, cmd.Stream, expected, ev)
			if !errors.Is(err, annals.ErrWrongExpectedVersion) {
				return err
			}
		}
	}
}

// NewProcessRunner returns a runner of the manager of [Process] over store, for the replica
// holder with keeper k, checkpointing every checkpointEvery inputs.
func NewProcessRunner(store annals.Store, k lease.Keeper, holder string, checkpointEvery int, sent *atomic.Int64) (*process.Runner[orderState], error) {
	return process.NewRunner(store, orderManager(), Sender(store, sent), &process.RunnerOptions{
		CheckpointEvery: checkpointEvery, Supervision: Policy(k, holder),
	})
}

// orders returns a Write that places bursts of orders, numbered from 0; one in five is for the
// SKU "none" and is rejected. n counts the orders placed.
func orders(store annals.Appender, n *int) func(rng *rand.Rand) (uint64, error) {
	return func(rng *rand.Rand) (uint64, error) {
		var last uint64
		for range 1 + rng.IntN(12) {
			sku := "sku" + strconv.Itoa(*n)
			if *n%5 == 0 {
				sku = "none"
			}
			res, err := store.Append(context.Background(), "order-"+strconv.Itoa(*n), annals.NoStream,
				annals.Event{Type: "Placed", Data: fmt.Appendf(nil, `{"SKU":%q}`, sku)})
			if err != nil {
				return 0, fmt.Errorf("append: %w", err)
			}
			*n++
			last = res.Position
		}
		return last, nil
	}
}

// processCheckpoint is what the process runner's checkpoint events hold, of what the scenario
// checks.
type processCheckpoint struct {
	Journal  uint64 `json:"journal"`
	Position uint64 `json:"position"`
}

// processProgress returns the position the manager's last checkpoint shows.
func processProgress(store annals.Store) func() (uint64, error) {
	return func() (uint64, error) {
		for ev, err := range store.ReadStream(context.Background(), process.CheckpointStreamPrefix+Manager, &annals.ReadOptions{Backwards: true, From: annals.End, Limit: 1}) {
			if errors.Is(err, annals.ErrStreamNotFound) {
				return 0, nil
			}
			if err != nil {
				return 0, err
			}
			var d processCheckpoint
			if err := json.Unmarshal(ev.Data, &d); err != nil {
				return 0, err
			}
			return d.Position, nil
		}
		return 0, nil
	}
}

// Process runs replicas of a process manager over store and kills and restarts them while
// orders are placed (see [Schedule]): in process over setup.Keeper, or as child processes
// (setup.Child). Every command must take effect once (each order is reserved or rejected
// once), each input be journaled once, and the manager's checkpoints, as the log holds them,
// never move backwards.
func Process(t *testing.T, store annals.Store, setup Setup) {
	rng := Seed(t)
	var sent atomic.Int64
	var start Start
	if setup.Child != "" {
		start = ChildStart(t, rng, setup, RoleProcess)
	} else {
		start = InProcess(setup.Keeper, func(holder string, k lease.Keeper) (Runner, error) {
			return NewProcessRunner(store, k, holder, 1+rng.IntN(8), &sent)
		})
	}
	n := 0
	progress := processProgress(store)
	st := Schedule(t, rng, Options{
		Replicas: setup.Replicas, Rounds: setup.rounds(), Start: start, Write: orders(store, &n),
		Progress: progress,
		Holder:   holderOf(setup.Keeper, process.LeasePrefix+Manager),
		// The work is done when every order has its outcome and the checkpoint shows every
		// event of the manager handled (the last outcome included).
		Done: func() error {
			var last uint64
			for i := range n {
				stream := "stock-sku" + strconv.Itoa(i)
				if i%5 == 0 {
					stream = "order-" + strconv.Itoa(i)
				}
				ev, ok, err := lastEvent(store, stream)
				switch {
				case err != nil:
					return err
				case !ok || i%5 == 0 && ev.Type != "Rejected":
					return fmt.Errorf("order %d has no outcome yet", i)
				}
				last = max(last, ev.Position)
			}
			p, err := progress()
			if err == nil && p < last {
				err = fmt.Errorf("checkpoint at %d, the last outcome at %d", p, last)
			}
			return err
		},
	})
	for i := range n {
		stream, want := "stock-sku"+strconv.Itoa(i), []string{"Reserved"}
		steps := 2 // Placed and Reserved
		if i%5 == 0 {
			stream, want = "order-"+strconv.Itoa(i), []string{"Placed", "Rejected"}
			steps = 3 // Placed, the refusal of the reservation, Rejected
		}
		if got := types(t, store, stream); !slices.Equal(got, want) {
			t.Errorf("%s: %q, want %q (each command once)", stream, got, want)
		}
		if got := types(t, store, Manager+"-"+strconv.Itoa(i)); len(got) != steps {
			t.Errorf("journal of order %d: %d steps, want %d (each input once)", i, len(got), steps)
		}
	}
	var moves []Move
	var last processCheckpoint
	for ev, err := range store.ReadAll(context.Background(), &annals.ReadOptions{Filter: &annals.Filter{Categories: []string{annals.Category(process.CheckpointStreamPrefix)}}}) {
		if err != nil {
			t.Fatal(err)
		}
		if ev.Stream != process.CheckpointStreamPrefix+Manager {
			continue
		}
		var d processCheckpoint
		if err := json.Unmarshal(ev.Data, &d); err != nil {
			t.Fatal(err)
		}
		if d.Journal < last.Journal || d.Position < last.Position {
			t.Fatalf("checkpoint %d of the manager went back: %+v after %+v", len(moves), d, last)
		}
		moves = append(moves, Move{From: last.Position, To: d.Position})
		last = d
	}
	if setup.Child == "" {
		t.Logf("%v; %d orders, %d commands sent, %d checkpoints", st, n, sent.Load(), len(moves))
	} else {
		t.Logf("%v; %d orders, %d checkpoints", st, n, len(moves))
	}
}

func lastEvent(store annals.Reader, stream string) (annals.RecordedEvent, bool, error) {
	for ev, err := range store.ReadStream(context.Background(), stream, &annals.ReadOptions{Backwards: true, From: annals.End, Limit: 1}) {
		if errors.Is(err, annals.ErrStreamNotFound) {
			return annals.RecordedEvent{}, false, nil
		}
		return ev, err == nil, err
	}
	return annals.RecordedEvent{}, false, nil
}

// types returns the event types of stream, in order.
func types(t testing.TB, s annals.Reader, stream string) []string {
	t.Helper()
	var got []string
	for ev, err := range s.ReadStream(context.Background(), stream, nil) {
		if errors.Is(err, annals.ErrStreamNotFound) {
			return nil
		}
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, ev.Type)
	}
	return got
}
