package client_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/annalsdb/annals"
	"github.com/annalsdb/annals/client"
	"github.com/annalsdb/annals/internal/testwait"
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

// TestLeaseConformanceFenced runs the suite with fenced writes: appends through the client
// with the lease in their context, which the server checks with the write.
func TestLeaseConformanceFenced(t *testing.T) {
	st := memstore.New(nil)
	t.Cleanup(func() { st.Close() })
	url, _ := serve(t, st, &server.Options{Backend: "memstore"})
	c := dial(t, url, nil)
	leasetest.Run(t, func(*testing.T) lease.Keeper { return c }, &leasetest.Options{
		Fenced: func(ctx context.Context, write func() error) error {
			if _, err := c.Append(ctx, "fenced-1", annals.Any, annals.Event{Type: "Fenced"}); err != nil {
				return err
			}
			return write()
		},
	})
}

// TestFencedAppend checks that an append with a lease in its context is written while the
// lease is current, and refused with lease.ErrLost, writing nothing, once another holder took
// it over.
func TestFencedAppend(t *testing.T) {
	ctx := context.Background()
	k := openLeases(t).(*client.Client)
	a, err := k.Acquire(ctx, "process/shipping", "a", 50*time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := k.Append(lease.NewContext(ctx, a), "ship-1", annals.Any, annals.Event{Type: "Shipped"}); err != nil {
		t.Fatalf("append by the holder: %v", err)
	}
	testwait.UntilNil(t, "b takes the expired lease", func() error {
		_, err := k.Acquire(ctx, "process/shipping", "b", time.Minute)
		return err
	})
	if _, err := k.Append(lease.NewContext(ctx, a), "ship-1", annals.Any, annals.Event{Type: "Shipped"}); !errors.Is(err, lease.ErrLost) {
		t.Fatalf("append by the holder that lost the lease: %v, want lease.ErrLost", err)
	}
	n := 0
	for _, err := range k.ReadStream(ctx, "ship-1", nil) {
		if err != nil {
			t.Fatal(err)
		}
		n++
	}
	if n != 1 {
		t.Errorf("ship-1 has %d events, want the first append's only", n)
	}
	if _, err := k.Append(lease.NewContext(ctx, lease.Lease{}), "ship-1", annals.Any, annals.Event{Type: "Shipped"}); !errors.Is(err, lease.ErrInvalid) {
		t.Errorf("append with a lease without a name: %v, want lease.ErrInvalid", err)
	}
}

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

// TestLeaseBadInputMatchesBoth: bad input that the client finds itself, before any call, matches
// both lease.ErrInvalid and annals.ErrInvalidArgument, as the server's answer to it does (see
// the Client's documentation of its lease methods).
func TestLeaseBadInputMatchesBoth(t *testing.T) {
	ctx := context.Background()
	k := openLeases(t).(*client.Client)
	for name, call := range map[string]func() error{
		"Acquire without a name":  func() error { _, err := k.Acquire(ctx, "", "a", time.Minute); return err },
		"Acquire with a ttl of 0": func() error { _, err := k.Acquire(ctx, "p", "a", 0); return err },
		"Renew of no lease":       func() error { _, err := k.Renew(ctx, lease.Lease{}); return err },
		"Release of no lease":     func() error { return k.Release(ctx, lease.Lease{}) },
		"Leases with a NUL":       func() error { _, err := k.Leases(ctx, "p\x00"); return err },
		"Append fenced by no lease": func() error {
			_, err := k.Append(lease.NewContext(ctx, lease.Lease{}), "s-1", annals.Any, annals.Event{Type: "E"})
			return err
		},
	} {
		if err := call(); !errors.Is(err, lease.ErrInvalid) || !errors.Is(err, annals.ErrInvalidArgument) {
			t.Errorf("%s: %v, want an error matching lease.ErrInvalid and annals.ErrInvalidArgument", name, err)
		}
	}
}
