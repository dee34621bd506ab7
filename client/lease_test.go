package client_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/annalsdb/annals"
	"github.com/annalsdb/annals/lease"
	"github.com/annalsdb/annals/lease/leasetest"
	"github.com/annalsdb/annals/memstore"
	"github.com/annalsdb/annals/server"
)

// openLeases returns a client of a fresh in-process server over a memstore, as a keeper.
func openLeases(t *testing.T) lease.Keeper {
	st := memstore.New(nil)
	t.Cleanup(func() { st.Close() })
	url, _ := serve(t, st, &server.Options{Backend: "memstore"})
	return dial(t, url, nil)
}

func TestLeaseConformance(t *testing.T) { leasetest.Run(t, openLeases, nil) }

// TestLeaseErrors checks what the server's refusals become on the client: the held lease in
// a *lease.HeldError, a lost one matching lease.ErrLost, bad input the server finds matching
// both lease.ErrInvalid and annals.ErrInvalidArgument.
func TestLeaseErrors(t *testing.T) {
	ctx := context.Background()
	k := openLeases(t).(interface {
		lease.Keeper
		annals.Store
	})
	a, err := k.Acquire(ctx, "projection/p", "a", time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	_, err = k.Acquire(ctx, "projection/p", "b", time.Minute)
	held, ok := errors.AsType[*lease.HeldError](err)
	if !ok || held.Lease.Holder != "a" || held.Lease.Token != a.Token || !held.Lease.Expires.Equal(a.Expires) || held.Lease.TTL != time.Minute {
		t.Fatalf("Acquire of a held lease: %v (%+v), want a *lease.HeldError with a's lease %+v", err, held, a)
	}
	lost := a
	lost.Holder = "b"
	if _, err := k.Renew(ctx, lost); !errors.Is(err, lease.ErrLost) || errors.Is(err, annals.ErrInvalidArgument) {
		t.Fatalf("Renew of another holder's lease: %v, want lease.ErrLost", err)
	}
	if _, err := k.Renew(ctx, lease.Lease{}); !errors.Is(err, lease.ErrInvalid) {
		t.Fatalf("Renew of no lease: %v, want lease.ErrInvalid", err)
	}
	if _, err := k.Leases(ctx, "p\x00"); !errors.Is(err, lease.ErrInvalid) {
		t.Fatalf("Leases with a NUL in the prefix: %v, want lease.ErrInvalid", err)
	}
}
