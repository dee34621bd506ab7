package client_test

import (
	"testing"

	"github.com/annalsdb/annals"
	"github.com/annalsdb/annals/internal/fencetest"
	"github.com/annalsdb/annals/internal/teststores"
	"github.com/annalsdb/annals/memstore"
	"github.com/annalsdb/annals/server"
)

// TestFencingCheckpoints: a runner over projection.Checkpoints through a client, whose lease
// (the server's) was taken over while it was paused in its handler, cannot write a checkpoint
// when it resumes: the server fences the append by the lease it carries (server's fence, with
// the keeper of its store), and Checkpoints refuses a token older than the stored one. Each
// replica has its own client. See internal/fencetest.
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
		{"pgstore", func(t *testing.T) annals.Store { return teststores.Postgres(t, nil) }},
	} {
		t.Run(backend.name, func(t *testing.T) {
			fencetest.Run(t, func(t *testing.T) fencetest.Kind[*fencetest.Model] {
				url, _ := serve(t, backend.open(t), &server.Options{Backend: backend.name})
				clients := []annals.Store{dial(t, url, nil), dial(t, url, nil), dial(t, url, nil)}
				return fencetest.Checkpoints(clients[0], func(i int) annals.Store { return clients[i] })
			})
		})
	}
}
