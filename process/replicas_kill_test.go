package process_test

import (
	"fmt"
	"testing"

	"github.com/annalsdb/annals"
	"github.com/annalsdb/annals/internal/replicatest"
	"github.com/annalsdb/annals/internal/teststores"
	"github.com/annalsdb/annals/lease"
)

// TestReplicasKilled runs two and three replicas of a process manager on each backend under
// the store's lease, killing (without releasing their lease) and restarting them on a random
// schedule while orders are placed (the seed is logged; ANNALS_SEED replays it): every
// command takes effect once, every input is journaled once, and the manager's checkpoints
// never move backwards.
func TestReplicasKilled(t *testing.T) {
	for _, n := range []int{2, 3} {
		t.Run(fmt.Sprintf("%d-replicas", n), func(t *testing.T) {
			teststores.Each(t, func(t *testing.T, s annals.Store) {
				replicatest.Process(t, s, replicatest.Setup{Replicas: n, Rounds: 12, Keeper: s.(lease.Keeper)})
			})
		})
	}
}
