package client_test

import (
	"context"
	"fmt"
	"os"
	"testing"
	"time"

	"github.com/annalsdb/annals"
	"github.com/annalsdb/annals/client"
	"github.com/annalsdb/annals/internal/replicatest"
	"github.com/annalsdb/annals/lease"
	"github.com/annalsdb/annals/memstore"
	"github.com/annalsdb/annals/server"
)

// The replicas of the tests below share a read model and a process manager's journals through
// a server, which keeps their leases and fences their appends; the seeds are logged and
// ANNALS_SEED replays one.

// TestReplicasKilled runs two and three replicas of a projection (checkpoints and read model
// in the server's log) and of a process manager through clients of a server over a memstore
// and over a filestore, killing (without releasing their lease), stalling and restarting them
// on a random schedule while events are appended: each event is applied once, each command
// takes effect once, each input is journaled once, and no checkpoint moves backwards.
func TestReplicasKilled(t *testing.T) {
	for _, backend := range []struct {
		name string
		open func(t *testing.T) annals.Store
	}{{"memstore", openMem}, {"filestore", openFile}} {
		for _, n := range []int{2, 3} {
			t.Run(fmt.Sprintf("%s/%d-replicas", backend.name, n), func(t *testing.T) {
				t.Run("projection", func(t *testing.T) {
					c := backend.open(t)
					replicatest.ProjectionLog(t, c, replicatest.Setup{Replicas: n, Rounds: 10, Keeper: c.(lease.Keeper)})
				})
				t.Run("process", func(t *testing.T) {
					c := backend.open(t)
					replicatest.Process(t, c, replicatest.Setup{Replicas: n, Rounds: 10, Keeper: c.(lease.Keeper)})
				})
			})
		}
	}
}

// replicaURLEnv gives a replica's child process the URL of the server.
const replicaURLEnv = "ANNALS_REPLICA_URL"

// TestReplicaChild is the body of a replica's child process (see replicatest.RunChild): a
// client of the server at ANNALS_REPLICA_URL, which keeps the leases. It does nothing in a
// normal test run.
func TestReplicaChild(t *testing.T) {
	replicatest.RunChild(t, func() (annals.Store, lease.Keeper, error) {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		c, err := client.Open(ctx, os.Getenv(replicaURLEnv), nil)
		return c, c, err
	}, nil)
}

// TestReplicasSIGKILL runs the replicas of TestReplicasKilled as processes, clients of one
// server over a memstore, and kills them with SIGKILL on a random schedule.
func TestReplicasSIGKILL(t *testing.T) {
	for _, n := range []int{2, 3} {
		t.Run(fmt.Sprintf("%d-replicas", n), func(t *testing.T) {
			setup := func(t *testing.T) (annals.Store, replicatest.Setup) {
				st := memstore.New(nil)
				t.Cleanup(func() { st.Close() })
				url, _ := serve(t, st, &server.Options{Backend: "memstore"})
				return dial(t, url, nil), replicatest.Setup{Replicas: n, Rounds: 8, Child: "TestReplicaChild", Env: []string{replicaURLEnv + "=" + url}}
			}
			t.Run("projection", func(t *testing.T) {
				c, s := setup(t)
				replicatest.ProjectionLog(t, c, s)
			})
			t.Run("process", func(t *testing.T) {
				c, s := setup(t)
				replicatest.Process(t, c, s)
			})
		})
	}
}
