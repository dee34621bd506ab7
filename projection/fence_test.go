package projection_test

import (
	"testing"

	"github.com/annalsdb/annals"
	"github.com/annalsdb/annals/filestore"
	"github.com/annalsdb/annals/internal/fencetest"
	"github.com/annalsdb/annals/internal/teststores"
	"github.com/annalsdb/annals/lease"
	"github.com/annalsdb/annals/memstore"
	"github.com/annalsdb/annals/projection"
)

// TestFencingMemory: a runner over Memory whose lease was taken over while it was paused
// cannot commit when it resumes; Memory's check of the lease (lease.Memory.Fenced, under the
// lock of the checkpoint) refuses it. See internal/fencetest.
func TestFencingMemory(t *testing.T) {
	fencetest.Run(t, func(t *testing.T) fencetest.Kind[*fencetest.Model] {
		s := memstore.New(nil)
		t.Cleanup(func() { s.Close() })
		m := projection.NewMemory(fencetest.NewModel)
		return fencetest.Kind[*fencetest.Model]{
			Log: s,
			Replica: func(int) fencetest.Replica[*fencetest.Model] {
				return fencetest.Replica[*fencetest.Model]{Events: s, Target: m, Keeper: m}
			},
			Record: fencetest.Record,
			Applied: func(t *testing.T) map[uint64][]int {
				var out map[uint64][]int
				m.Read(fencetest.Name, func(model *fencetest.Model, _ uint64) { out = model.Applied() })
				return out
			},
		}
	})
}

// TestFencingCheckpoints: a runner over Checkpoints whose lease was taken over while it was
// paused in its handler cannot write a checkpoint when it resumes, on every event store (the
// store keeps the lease): the checkpoints never go back and none of the paused runner's is
// written after the takeover. See internal/fencetest.
func TestFencingCheckpoints(t *testing.T) {
	for _, backend := range []struct {
		name string
		open func(t *testing.T) annals.Store
	}{
		{"memstore", func(t *testing.T) annals.Store {
			s := memstore.New(nil)
			t.Cleanup(func() { s.Close() })
			return s
		}},
		{"filestore", func(t *testing.T) annals.Store {
			s, err := filestore.Open(t.TempDir(), nil)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { s.Close() })
			return s
		}},
		{"pgstore", func(t *testing.T) annals.Store { return teststores.Postgres(t, nil) }},
	} {
		t.Run(backend.name, func(t *testing.T) {
			fencetest.Run(t, func(t *testing.T) fencetest.Kind[*fencetest.Model] {
				s := backend.open(t)
				return fencetest.Checkpoints(s, func(int) annals.Store { return s })
			})
		})
	}
}

// TestFencingCheckpointsByToken: the same over an event store that keeps leases but cannot
// fence a write (no Fenced method), so that only the token Checkpoints records refuses the
// paused runner, once the new holder wrote its first checkpoint (AfterClaim; before it,
// such a store has nothing to refuse with).
func TestFencingCheckpointsByToken(t *testing.T) {
	fencetest.RunVariant(t, fencetest.AfterClaim, func(t *testing.T) fencetest.Kind[*fencetest.Model] {
		s := memstore.New(nil)
		t.Cleanup(func() { s.Close() })
		var unfenced annals.Store = struct {
			annals.Store
			lease.Keeper
		}{s, s}
		return fencetest.Checkpoints(unfenced, func(int) annals.Store { return unfenced })
	})
}
