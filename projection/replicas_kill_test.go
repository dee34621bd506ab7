package projection_test

import (
	"fmt"
	"testing"

	"github.com/annalsdb/annals"
	"github.com/annalsdb/annals/internal/replicatest"
	"github.com/annalsdb/annals/internal/teststores"
	"github.com/annalsdb/annals/lease"
)

// TestReplicasKilled runs two and three replicas of a projection over one Memory on each
// backend, killing (without releasing their lease) and restarting them on a random schedule
// while events are appended (the seed is logged; ANNALS_SEED replays it): the read model
// equals one pass over the log, and the committed checkpoints form one chain that never moves
// backwards, under lease tokens that never go back.
func TestReplicasKilled(t *testing.T) {
	for _, n := range []int{2, 3} {
		t.Run(fmt.Sprintf("%d-replicas", n), func(t *testing.T) {
			teststores.Each(t, func(t *testing.T, s annals.Store) {
				replicatest.ProjectionMemory(t, s, replicatest.Setup{Replicas: n, Rounds: 12})
			})
		})
	}
}

// TestReplicasKilledCheckpoints is TestReplicasKilled with the checkpoints in the event store
// (Checkpoints, fenced by the tokens it records) and an idempotent read model in the log, the
// event store keeping the leases: each event is applied once, and the checkpoints the log
// records never move backwards nor go back to an older lease token.
func TestReplicasKilledCheckpoints(t *testing.T) {
	for _, n := range []int{2, 3} {
		t.Run(fmt.Sprintf("%d-replicas", n), func(t *testing.T) {
			teststores.Each(t, func(t *testing.T, s annals.Store) {
				replicatest.ProjectionLog(t, s, replicatest.Setup{Replicas: n, Rounds: 12, Keeper: s.(lease.Keeper)})
			})
		})
	}
}
