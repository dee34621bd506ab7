package projection_test

import (
	"context"
	"maps"
	"slices"
	"sync"
	"testing"

	"github.com/annalsdb/annals"
	"github.com/annalsdb/annals/filestore"
	"github.com/annalsdb/annals/internal/fencetest"
	"github.com/annalsdb/annals/internal/teststores"
	"github.com/annalsdb/annals/lease"
	"github.com/annalsdb/annals/memstore"
	"github.com/annalsdb/annals/projection"
)

// appliedModel is a read model that records, by position, the replicas that applied each
// event.
type appliedModel struct {
	mu sync.Mutex // for the Checkpoints' model, which handlers write outside the store
	m  map[uint64][]int
}

func newAppliedModel() *appliedModel { return &appliedModel{m: map[uint64][]int{}} }

func (a *appliedModel) record(_ context.Context, tx *appliedModel, replica int, ev annals.RecordedEvent) error {
	tx.mu.Lock()
	defer tx.mu.Unlock()
	tx.m[ev.Position] = append(tx.m[ev.Position], replica)
	return nil
}

func (a *appliedModel) copy() map[uint64][]int {
	a.mu.Lock()
	defer a.mu.Unlock()
	out := maps.Clone(a.m)
	for p, by := range out {
		out[p] = slices.Clone(by)
	}
	return out
}

// TestFencingMemory: a runner over Memory whose lease was taken over while it was paused
// cannot commit when it resumes; Memory's check of the lease (lease.Memory.Fenced, under the
// lock of the checkpoint) refuses it. See internal/fencetest.
func TestFencingMemory(t *testing.T) {
	fencetest.Run(t, func(t *testing.T) fencetest.Kind[*appliedModel] {
		s := memstore.New(nil)
		t.Cleanup(func() { s.Close() })
		m := projection.NewMemory(newAppliedModel)
		return fencetest.Kind[*appliedModel]{
			Log: s,
			Replica: func(int) fencetest.Replica[*appliedModel] {
				return fencetest.Replica[*appliedModel]{Events: s, Target: m, Keeper: m}
			},
			Record: (*appliedModel)(nil).record,
			Applied: func(t *testing.T) map[uint64][]int {
				var out map[uint64][]int
				m.Read(fencetest.Name, func(model *appliedModel, _ uint64) { out = model.copy() })
				return out
			},
		}
	})
}

// TestFencingCheckpoints: a runner over Checkpoints whose lease was taken over while it was
// paused in its handler cannot write a checkpoint when it resumes, on every event store: the
// checkpoints never go back and none of the paused runner's is written after the takeover.
// See internal/fencetest.
func TestFencingCheckpoints(t *testing.T) {
	for name, open := range map[string]func(t *testing.T) annals.Store{
		"memstore": func(t *testing.T) annals.Store {
			s := memstore.New(nil)
			t.Cleanup(func() { s.Close() })
			return s
		},
		"filestore": func(t *testing.T) annals.Store {
			s, err := filestore.Open(t.TempDir(), nil)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { s.Close() })
			return s
		},
		"pgstore": func(t *testing.T) annals.Store { return teststores.Postgres(t, nil) },
	} {
		t.Run(name, func(t *testing.T) {
			fencetest.Run(t, func(t *testing.T) fencetest.Kind[*appliedModel] {
				s := open(t)
				return checkpointsKind(s, s.(lease.Keeper))
			})
		})
	}
}

// checkpointsKind is the fencing test's kind for Checkpoints over the event store events,
// with the runners' keeper k.
func checkpointsKind(events annals.Store, k lease.Keeper) fencetest.Kind[*appliedModel] {
	ext := newAppliedModel()
	return fencetest.Kind[*appliedModel]{
		Log: events,
		Replica: func(int) fencetest.Replica[*appliedModel] {
			c := projection.NewCheckpoints(events, &projection.CheckpointsOptions[*appliedModel]{
				Tx: func(string, uint64) *appliedModel { return ext },
			})
			return fencetest.Replica[*appliedModel]{Events: events, Target: c, Keeper: k}
		},
		Record:         (*appliedModel)(nil).record,
		Applied:        func(*testing.T) map[uint64][]int { return ext.copy() },
		PauseInHandler: true,
		AtLeastOnce:    true,
	}
}
