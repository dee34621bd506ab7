// Package leasetest is the conformance suite of lease keepers: every [lease.Keeper] (the
// in-process one, pgstore's, the client's over the server) passes it.
package leasetest

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/annalsdb/annals/internal/testwait"
	"github.com/annalsdb/annals/lease"
)

// Options add to the suite what only some keepers have.
type Options struct {
	// Fenced, when set, runs write under the check of the lease ctx carries, as the keeper's
	// stores do in the transaction of a write (lease.Memory.Fenced, say); the suite then
	// checks that a lost lease cannot write.
	Fenced func(ctx context.Context, write func() error) error
}

// Run runs the suite. open returns a keeper with no leases whose names start with the
// prefix it is given (each case uses its own names).
func Run(t *testing.T, open func(t *testing.T) lease.Keeper, opts *Options) {
	if opts == nil {
		opts = &Options{}
	}
	var n atomic.Int64
	name := func(t *testing.T) string {
		return fmt.Sprintf("leasetest-%d-%s", n.Add(1), t.Name())
	}
	ctx := context.Background()

	t.Run("AcquireHeldRenewRelease", func(t *testing.T) {
		k := open(t)
		nm := name(t)
		a, err := k.Acquire(ctx, nm, "a", time.Minute)
		if err != nil {
			t.Fatal(err)
		}
		if a.Name != nm || a.Holder != "a" || a.Token == 0 || a.TTL != time.Minute || !a.Expires.After(a.Acquired) {
			t.Fatalf("Acquire = %+v", a)
		}
		_, err = k.Acquire(ctx, nm, "b", time.Minute)
		var held *lease.HeldError
		if !errors.As(err, &held) || !errors.Is(err, lease.ErrHeld) || held.Lease.Holder != "a" || held.Lease.Token != a.Token {
			t.Fatalf("Acquire by b while a holds it: %v, want a *HeldError naming a", err)
		}
		again, err := k.Acquire(ctx, nm, "a", 2*time.Minute)
		if err != nil || again.Token != a.Token || again.TTL != 2*time.Minute || again.Expires.Before(a.Expires) {
			t.Fatalf("Acquire by its holder = %+v, %v; want the same token, extended", again, err)
		}
		r, err := k.Renew(ctx, again)
		if err != nil || r.Token != a.Token || r.Expires.Before(again.Expires) {
			t.Fatalf("Renew = %+v, %v", r, err)
		}
		stale := r
		stale.Token++
		if _, err := k.Renew(ctx, stale); !errors.Is(err, lease.ErrLost) {
			t.Fatalf("Renew with another token: %v, want ErrLost", err)
		}
		if err := k.Release(ctx, stale); err != nil {
			t.Fatalf("Release of a lease that is not current: %v", err)
		}
		if _, err := k.Acquire(ctx, nm, "b", time.Minute); !errors.Is(err, lease.ErrHeld) {
			t.Fatalf("a stale Release freed the lease: %v", err)
		}
		if err := k.Release(ctx, r); err != nil {
			t.Fatal(err)
		}
		b, err := k.Acquire(ctx, nm, "b", time.Minute)
		if err != nil || b.Token <= a.Token {
			t.Fatalf("Acquire after Release = %+v, %v; want a larger token than %d", b, err, a.Token)
		}
		if _, err := k.Renew(ctx, r); !errors.Is(err, lease.ErrLost) {
			t.Fatalf("Renew of the released lease: %v, want ErrLost", err)
		}
	})

	t.Run("Expiry", func(t *testing.T) {
		k := open(t)
		nm := name(t)
		a, err := k.Acquire(ctx, nm, "a", 50*time.Millisecond)
		if err != nil {
			t.Fatal(err)
		}
		var b lease.Lease
		testwait.UntilNil(t, "b takes the expired lease", func() error {
			b, err = k.Acquire(ctx, nm, "b", time.Minute)
			return err
		})
		if b.Token <= a.Token || b.Holder != "b" {
			t.Fatalf("takeover = %+v; want b with a token above %d", b, a.Token)
		}
		if _, err := k.Renew(ctx, a); !errors.Is(err, lease.ErrLost) {
			t.Fatalf("Renew by the holder that lost it: %v, want ErrLost", err)
		}
	})

	t.Run("RenewAfterExpiryNobodyTook", func(t *testing.T) {
		k := open(t)
		nm := name(t)
		a, err := k.Acquire(ctx, nm, "a", 20*time.Millisecond)
		if err != nil {
			t.Fatal(err)
		}
		testwait.Until(t, "the lease to expire", func() bool {
			ls, err := k.Leases(ctx, nm)
			return err == nil && len(ls) == 0
		})
		r, err := k.Renew(ctx, a)
		if err != nil || r.Token != a.Token {
			t.Fatalf("Renew of an expired lease nobody took = %+v, %v; want it renewed with its token", r, err)
		}
	})

	t.Run("Leases", func(t *testing.T) {
		k := open(t)
		nm := name(t)
		for _, s := range []string{"/x", "/y"} {
			if _, err := k.Acquire(ctx, nm+s, "h"+s, time.Minute); err != nil {
				t.Fatal(err)
			}
		}
		ls, err := k.Leases(ctx, nm)
		if err != nil || len(ls) != 2 || ls[0].Name != nm+"/x" || ls[1].Holder != "h/y" {
			t.Fatalf("Leases = %+v, %v", ls, err)
		}
		if ls, err := k.Leases(ctx, nm+"/y"); err != nil || len(ls) != 1 {
			t.Fatalf("Leases by prefix = %+v, %v", ls, err)
		}
	})

	t.Run("Invalid", func(t *testing.T) {
		k := open(t)
		nm := name(t)
		for _, c := range []struct {
			name, holder string
			ttl          time.Duration
		}{
			{"", "h", time.Second},
			{nm, "", time.Second},
			{nm, "h", 0},
			{nm, "", 0},
			{nm, "h", lease.MaxTTL + time.Second},
			{nm + "\x00", "h", time.Second},
			{nm, "h\xff", time.Second},
		} {
			if _, err := k.Acquire(ctx, c.name, c.holder, c.ttl); !errors.Is(err, lease.ErrInvalid) {
				t.Errorf("Acquire(%q, %q, %v): %v, want ErrInvalid", c.name, c.holder, c.ttl, err)
			}
		}
		if _, err := k.Renew(ctx, lease.Lease{Name: nm}); !errors.Is(err, lease.ErrInvalid) {
			t.Errorf("Renew of a lease with no holder: %v, want ErrInvalid", err)
		}
		if err := k.Release(ctx, lease.Lease{Name: nm}); !errors.Is(err, lease.ErrInvalid) {
			t.Errorf("Release of a lease with no holder: %v, want ErrInvalid", err)
		}
		if ls, err := k.Leases(ctx, nm); err != nil || len(ls) != 0 {
			t.Fatalf("bad input left leases: %+v, %v", ls, err)
		}
	})

	t.Run("OneWinner", func(t *testing.T) {
		k := open(t)
		nm := name(t)
		var wg sync.WaitGroup
		var won atomic.Int64
		errs := make(chan error, 8)
		for i := range 8 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				_, err := k.Acquire(ctx, nm, fmt.Sprint("h", i), time.Minute)
				switch {
				case err == nil:
					won.Add(1)
				case !errors.Is(err, lease.ErrHeld):
					errs <- err
				}
			}()
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Fatal(err)
		}
		if won.Load() != 1 {
			t.Fatalf("%d holders won one lease", won.Load())
		}
	})

	if opts.Fenced != nil {
		t.Run("Fenced", func(t *testing.T) {
			k := open(t)
			nm := name(t)
			a, err := k.Acquire(ctx, nm, "a", 50*time.Millisecond)
			if err != nil {
				t.Fatal(err)
			}
			wrote := 0
			write := func() error { wrote++; return nil }
			if err := opts.Fenced(lease.NewContext(ctx, a), write); err != nil || wrote != 1 {
				t.Fatalf("fenced write by the holder: %v (wrote %d)", err, wrote)
			}
			testwait.UntilNil(t, "b takes the expired lease", func() error {
				_, err := k.Acquire(ctx, nm, "b", time.Minute)
				return err
			})
			if err := opts.Fenced(lease.NewContext(ctx, a), write); !errors.Is(err, lease.ErrLost) || wrote != 1 {
				t.Fatalf("fenced write after the lease was taken: %v (wrote %d), want ErrLost and no write", err, wrote)
			}
		})
	}
}
