package lease_test

import (
	"context"
	"testing"
	"time"

	"github.com/annalsdb/annals/lease"
	"github.com/annalsdb/annals/lease/leasetest"
)

func TestMemory(t *testing.T) {
	var m *lease.Memory
	leasetest.Run(t, func(t *testing.T) lease.Keeper {
		m = lease.NewMemory(nil)
		return m
	}, &leasetest.Options{Fenced: func(ctx context.Context, write func() error) error {
		return m.Fenced(ctx, write)
	}})
}

// TestMemoryReleasedLeaseStaysFree: a released lease cannot be renewed, not even by a lease
// value without a holder (a released lease keeps its name and token in the Memory, with no
// holder): the next Acquire, by any holder, gets it.
func TestMemoryReleasedLeaseStaysFree(t *testing.T) {
	ctx := context.Background()
	m := lease.NewMemory(nil)
	a, err := m.Acquire(ctx, "projection/p", "a", time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	if err := m.Release(ctx, a); err != nil {
		t.Fatal(err)
	}
	ghost := lease.Lease{Name: a.Name, Token: a.Token}
	if r, err := m.Renew(ctx, ghost); err == nil {
		t.Errorf("Renew of the released lease without a holder = %+v, want an error", r)
	}
	if b, err := m.Acquire(ctx, a.Name, "b", time.Minute); err != nil || b.Token <= a.Token {
		t.Fatalf("Acquire after the release = %+v, %v; want b with a larger token", b, err)
	}
}
