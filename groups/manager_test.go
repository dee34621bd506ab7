package groups_test

import (
	"context"
	"testing"

	"github.com/annalsdb/annals"
	"github.com/annalsdb/annals/groups"
	"github.com/annalsdb/annals/groups/groupstest"
	"github.com/annalsdb/annals/internal/teststores"
	"github.com/annalsdb/annals/lease"
)

// TestConformance runs the suite on a Manager over each backend.
func TestConformance(t *testing.T) {
	teststores.Each(t, func(t *testing.T, s annals.Store) {
		store, ok := s.(groups.Store)
		if !ok {
			t.Skipf("%T does not implement annals.SystemAppender", s)
		}
		groupstest.Run(t, func(t *testing.T) *groupstest.Env {
			return newEnv(t, store)
		})
	})
}

// newEnv opens a Manager on store, closed when the test ends.
func newEnv(t *testing.T, store groups.Store) *groupstest.Env {
	t.Helper()
	return newEnvOpts(t, store, nil)
}

// newEnvOpts opens a Manager on store with opts, closed when the test ends.
func newEnvOpts(t *testing.T, store groups.Store, opts *groups.Options) *groupstest.Env {
	t.Helper()
	m, err := groups.Open(context.Background(), store, opts)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	cur := m
	t.Cleanup(func() { cur.Close() })
	return &groupstest.Env{
		Store:   store,
		Service: m,
		Reader:  store,
		Restart: func() groups.Service {
			if err := cur.Close(); err != nil {
				t.Fatalf("Close: %v", err)
			}
			n, err := groups.Open(context.Background(), store, opts)
			if err != nil {
				t.Fatalf("Open after Close: %v", err)
			}
			cur = n
			return n
		},
	}
}

// TestConformanceLeased runs the suite on a Manager that holds its groups' leases in the
// store's keeper, alone: it behaves as one without leases.
func TestConformanceLeased(t *testing.T) {
	teststores.Each(t, func(t *testing.T, s annals.Store) {
		store, ok := s.(groups.Store)
		if !ok {
			t.Skipf("%T does not implement annals.SystemAppender", s)
		}
		keeper, ok := s.(lease.Keeper)
		if !ok {
			t.Skipf("%T is not a lease.Keeper", s)
		}
		opts := &groups.Options{Leases: keeper}
		groupstest.Run(t, func(t *testing.T) *groupstest.Env {
			return newEnvOpts(t, store, opts)
		})
	})
}
