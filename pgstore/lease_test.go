package pgstore_test

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/annalsdb/annals"
	"github.com/annalsdb/annals/internal/testwait"
	"github.com/annalsdb/annals/lease"
	"github.com/annalsdb/annals/lease/leasetest"
	"github.com/annalsdb/annals/pgstore"
	"github.com/jackc/pgx/v5"
)

// TestLeaseConformance runs the keepers' suite on the store, each case in a schema of its
// own, with the fenced write made by Projections.Update (the write inside its fn).
func TestLeaseConformance(t *testing.T) {
	var p *pgstore.Projections
	leasetest.Run(t, func(t *testing.T) lease.Keeper {
		s := openStore(t, nil)
		p = pgstore.NewProjections(s, nil)
		return s
	}, &leasetest.Options{Fenced: func(ctx context.Context, write func() error) error {
		from, err := p.Checkpoint(context.Background(), "fenced", 0)
		if err != nil {
			return err
		}
		return p.Update(ctx, "fenced", 0, from, from+1, func(*pgstore.ProjectionTx) error { return write() })
	}})
}

// TestLeaseConformanceFenced runs the suite with the store's Fenced, which the server uses to
// fence its clients' appends.
func TestLeaseConformanceFenced(t *testing.T) {
	var s *pgstore.Store
	leasetest.Run(t, func(t *testing.T) lease.Keeper {
		s = openStore(t, nil)
		return s
	}, &leasetest.Options{Fenced: func(ctx context.Context, write func() error) error { return s.Fenced(ctx, write) }})
}

// TestLeaseConformanceProjections runs the suite on Projections' forwarding of the keeper.
func TestLeaseConformanceProjections(t *testing.T) {
	leasetest.Run(t, func(t *testing.T) lease.Keeper {
		return pgstore.NewProjections(openStore(t, nil), nil)
	}, nil)
}

// expireLease makes lease name expire now on the database's clock, as if its holder had paused
// past its time to live, without waiting for it.
func expireLease(t *testing.T, s *pgstore.Store, name string) {
	t.Helper()
	tag, err := s.Pool().Exec(t.Context(), "UPDATE "+pgx.Identifier{s.Schema()}.Sanitize()+".leases SET expires = clock_timestamp() - interval '1 millisecond' WHERE name = $1", name)
	if err != nil || tag.RowsAffected() != 1 {
		t.Fatalf("expire lease %q: %v (%d rows)", name, err, tag.RowsAffected())
	}
}

// TestFenceRefusesTheLostLease: a holder whose lease expired and was taken over cannot Update,
// Reset or Activate its projection: each is refused with ErrLost and changes nothing (fn not
// called, rows, checkpoint and generations as they were); the new holder can; a lease that
// expired and that nobody took cannot write either; without a lease in ctx nothing is checked.
func TestFenceRefusesTheLostLease(t *testing.T) {
	s := openStore(t, nil)
	ctx := t.Context()
	c := newCounter(s)
	called := false
	inc := func(tx *pgstore.ProjectionTx) error {
		called = true
		_, err := tx.Tx.Exec(ctx, "INSERT INTO "+tx.Schema()+".counts AS c VALUES ('x', 1) ON CONFLICT (stream) DO UPDATE SET n = c.n + 1")
		return err
	}
	a, err := c.p.Acquire(ctx, "projection/counter", "a", time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	actx := lease.NewContext(ctx, a)
	if err := c.p.Update(actx, "counter", 0, 0, 5, inc); err != nil {
		t.Fatalf("fenced Update by the holder: %v", err)
	}
	if err := c.p.Update(actx, "counter", 1, 0, 3, inc); err != nil {
		t.Fatalf("fenced Update of generation 1 by the holder: %v", err)
	}

	expireLease(t, s, a.Name)
	b, err := c.p.Acquire(ctx, a.Name, "b", time.Minute)
	if err != nil || b.Token <= a.Token {
		t.Fatalf("takeover = %+v, %v; want b with a token above %d", b, err, a.Token)
	}
	unchanged := func(what string) {
		t.Helper()
		if called {
			t.Errorf("%s called fn", what)
		}
		if cp, err := c.p.Checkpoint(ctx, "counter", 0); err != nil || cp != 5 {
			t.Errorf("after %s: checkpoint %d (%v), want 5", what, cp, err)
		}
		if got := c.rows(t); got["x"] != 1 {
			t.Errorf("after %s: rows %v, want x at 1", what, got)
		}
		if got := schemas(t, s); len(got) != 2 {
			t.Errorf("after %s: generation schemas %q, want generations 0 and 1", what, got)
		}
	}
	called = false
	if err := c.p.Update(actx, "counter", 0, 5, 9, inc); !errors.Is(err, lease.ErrLost) {
		t.Fatalf("Update by the holder that lost the lease: %v, want ErrLost", err)
	}
	unchanged("the lost holder's Update")
	if err := c.p.Reset(actx, "counter", 1); !errors.Is(err, lease.ErrLost) {
		t.Fatalf("Reset by the holder that lost the lease: %v, want ErrLost", err)
	}
	unchanged("the lost holder's Reset")
	if err := c.p.Activate(actx, "counter", 1); !errors.Is(err, lease.ErrLost) {
		t.Fatalf("Activate by the holder that lost the lease: %v, want ErrLost", err)
	}
	unchanged("the lost holder's Activate")
	if g, err := c.p.Generation(ctx, "counter"); err != nil || g != 0 {
		t.Fatalf("active generation %d (%v), want 0", g, err)
	}

	// The new holder writes; then its lease expires and nobody takes it: it cannot write
	// until it renews.
	bctx := lease.NewContext(ctx, b)
	if err := c.p.Update(bctx, "counter", 0, 5, 9, inc); err != nil {
		t.Fatalf("Update by the new holder: %v", err)
	}
	expireLease(t, s, b.Name)
	called = false
	if err := c.p.Update(bctx, "counter", 0, 9, 12, inc); !errors.Is(err, lease.ErrLost) || called {
		t.Fatalf("Update with an expired lease: %v (fn called: %v), want ErrLost", err, called)
	}
	if _, err := c.p.Renew(ctx, b); err != nil {
		t.Fatal(err)
	}
	if err := c.p.Update(bctx, "counter", 0, 9, 12, inc); err != nil {
		t.Fatalf("Update after renewing: %v", err)
	}
	// Without a lease, nothing is checked.
	if err := c.p.Update(ctx, "counter", 0, 12, 13, inc); err != nil {
		t.Fatalf("Update without a lease: %v", err)
	}
	if got := c.rows(t); got["x"] != 4 {
		t.Fatalf("rows %v, want x at 4", got)
	}
	// A lease on a name nobody ever acquired is not current.
	ghost := lease.NewContext(ctx, lease.Lease{Name: "nobody", Holder: "a", Token: 1})
	if err := c.p.Update(ghost, "counter", 0, 13, 14, inc); !errors.Is(err, lease.ErrLost) {
		t.Fatalf("Update with a lease on a name never acquired: %v, want ErrLost", err)
	}
	// Store.Project runs the same check.
	if _, err := s.Project(actx, "other", 1, func(context.Context, pgx.Tx) error { return nil }); !errors.Is(err, lease.ErrLost) {
		t.Fatalf("Project by the holder that lost the lease: %v, want ErrLost", err)
	}
}

// TestFenceTakeoverDuringAnOpenUpdate: while a fenced Update's handler runs, its holder's
// renewals do not wait for it, and a takeover of its lease, once it expired, does not wait
// either; the Update, checked again before its commit, is then refused and rolled back, and
// the new holder's Update commits.
func TestFenceTakeoverDuringAnOpenUpdate(t *testing.T) {
	s := openStore(t, nil)
	ctx := t.Context()
	c := newCounter(s)
	// Long enough for the first check to pass on a loaded machine; the test waits for it to run
	// out while the Update is open.
	const ttl = 2 * time.Second
	a, err := c.p.Acquire(ctx, "projection/counter", "a", ttl)
	if err != nil {
		t.Fatal(err)
	}
	actx := lease.NewContext(ctx, a)
	inFn, proceed := make(chan struct{}), make(chan struct{})
	var once sync.Once
	release := func() { once.Do(func() { close(proceed) }) }
	t.Cleanup(release) // before the store closes, which waits for the Update's connection
	updated := make(chan error, 1)
	go func() {
		updated <- c.p.Update(actx, "counter", 0, 0, 5, func(tx *pgstore.ProjectionTx) error {
			close(inFn)
			<-proceed
			_, err := tx.Tx.Exec(ctx, "INSERT INTO "+tx.Schema()+".counts VALUES ('x', 1)")
			return err
		})
	}()
	select {
	case <-inFn:
	case err := <-updated:
		t.Fatalf("fenced Update by the holder: %v", err)
	}
	rctx, cancel := context.WithTimeout(ctx, ttl/2)
	a2, err := c.p.Renew(rctx, a)
	cancel()
	if err != nil || a2.Token != a.Token {
		t.Fatalf("the holder's Renew while its Update is open: %+v, %v", a2, err)
	}
	testwait.Until(t, "the lease to run out", func() bool {
		ls, err := c.p.Leases(ctx, a.Name)
		return err == nil && len(ls) == 0
	})
	tctx, cancel := context.WithTimeout(ctx, ttl/2)
	b, err := c.p.Acquire(tctx, a.Name, "b", time.Minute)
	cancel()
	if err != nil || b.Token <= a.Token {
		t.Fatalf("takeover while the old holder's Update is open = %+v, %v; want b with a token above %d", b, err, a.Token)
	}
	release()
	if err := testwait.Recv(t, "the Update", updated); !errors.Is(err, lease.ErrLost) {
		t.Fatalf("the old holder's open Update, after the takeover: %v, want ErrLost", err)
	}
	if cp, err := c.p.Checkpoint(ctx, "counter", 0); err != nil || cp != 0 {
		t.Fatalf("checkpoint %d (%v), want 0", cp, err)
	}
	if got := c.rows(t); got["x"] != 0 {
		t.Fatalf("rows %v, want no x: the refused Update rolled back", got)
	}
	if err := c.p.Update(lease.NewContext(ctx, b), "counter", 0, 0, 5, func(*pgstore.ProjectionTx) error { return nil }); err != nil {
		t.Fatalf("the new holder's Update: %v", err)
	}
}

// TestLeaseTokensSurviveReopen: a token given after the store was closed and opened again is
// larger than every token given before, and a released lease is free after the reopening.
func TestLeaseTokensSurviveReopen(t *testing.T) {
	url, schema := testDatabase(t), newSchema(t)
	ctx := t.Context()
	openOn := func() *pgstore.Store {
		s, err := pgstore.Open(ctx, url, &pgstore.Options{Schema: schema, MaxConns: 2})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { s.Close() })
		return s
	}
	s := openOn()
	var last uint64
	for i := range 3 {
		l, err := s.Acquire(ctx, "relay", "a", time.Minute)
		if err != nil || l.Token <= last {
			t.Fatalf("Acquire %d = %+v, %v; want a token above %d", i, l, err, last)
		}
		last = l.Token
		if err := s.Release(ctx, l); err != nil {
			t.Fatal(err)
		}
	}
	s.Close()
	s = openOn()
	if ls, err := s.Leases(ctx, ""); err != nil || len(ls) != 0 {
		t.Fatalf("Leases after reopening = %+v, %v; want none", ls, err)
	}
	l, err := s.Acquire(ctx, "relay", "b", time.Minute)
	if err != nil || l.Token <= last {
		t.Fatalf("Acquire after reopening = %+v, %v; want a token above %d", l, err, last)
	}
}

// TestLeaseRefusalsOrder: bad input is refused before the context and the store's state are
// looked at, then a done context, then a closed store.
func TestLeaseRefusalsOrder(t *testing.T) {
	s := openStore(t, nil)
	canceled, cancel := context.WithCancel(t.Context())
	cancel()
	if _, err := s.Acquire(canceled, "", "h", time.Second); !errors.Is(err, lease.ErrInvalid) {
		t.Errorf("Acquire of an empty name with a done context: %v, want ErrInvalid", err)
	}
	if _, err := s.Acquire(canceled, "n", "h", time.Second); !errors.Is(err, context.Canceled) {
		t.Errorf("Acquire with a done context: %v, want context.Canceled", err)
	}
	s.Close()
	if _, err := s.Renew(t.Context(), lease.Lease{Name: "n\x00"}); !errors.Is(err, lease.ErrInvalid) {
		t.Errorf("Renew of a bad name after Close: %v, want ErrInvalid", err)
	}
	if _, err := s.Acquire(canceled, "n", "h", time.Second); !errors.Is(err, context.Canceled) {
		t.Errorf("Acquire with a done context after Close: %v, want context.Canceled", err)
	}
	for what, err := range map[string]error{
		"Acquire": func() error { _, err := s.Acquire(t.Context(), "n", "h", time.Second); return err }(),
		"Renew":   func() error { _, err := s.Renew(t.Context(), lease.Lease{Name: "n", Holder: "h"}); return err }(),
		"Release": s.Release(t.Context(), lease.Lease{Name: "n", Holder: "h"}),
		"Leases":  func() error { _, err := s.Leases(t.Context(), ""); return err }(),
	} {
		if !errors.Is(err, annals.ErrClosed) {
			t.Errorf("%s after Close: %v, want ErrClosed", what, err)
		}
	}
}

// TestLeasesPrefixBytes: Leases matches prefixes byte-wise, also one that ends inside a
// character, and a prefix no name can have matches nothing.
func TestLeasesPrefixBytes(t *testing.T) {
	s := openStore(t, nil)
	ctx := t.Context()
	for _, n := range []string{"é/1", "e/1"} {
		if _, err := s.Acquire(ctx, n, "h", time.Minute); err != nil {
			t.Fatal(err)
		}
	}
	for prefix, want := range map[string]int{"": 2, "\xc3": 1, "é": 1, "\xc3\xa9/": 1, "e": 1, "x": 0, "\x00": 0, "é\xff": 0} {
		if ls, err := s.Leases(ctx, prefix); err != nil || len(ls) != want {
			t.Errorf("Leases(%q) = %+v, %v; want %d", prefix, ls, err, want)
		}
	}
}

// TestFencedAppendsDoNotExhaustThePool: fenced appends as the server makes them (the store's
// Append run inside Store.Fenced), as many at once as the pool has connections, all complete.
// Each Fenced holds a connection for its transaction while its write needs another one for the
// append: unbounded, they would take every connection of the pool and wait for each other.
func TestFencedAppendsDoNotExhaustThePool(t *testing.T) {
	const conns = 4
	s := openStore(t, &pgstore.Options{MaxConns: conns})
	ctx := testwait.Context(t)
	a, err := s.Acquire(ctx, "process/fenced", "a", time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	actx := lease.NewContext(ctx, a)
	// Every write starts its append once all the Fenced calls that got to write are in it
	// (or a moment passed: a bounded Fenced lets only some of them in at once).
	var inWrite sync.WaitGroup
	inWrite.Add(conns)
	allIn := make(chan struct{})
	go func() { inWrite.Wait(); close(allIn) }()
	done := make(chan error, conns)
	for i := range conns {
		go func() {
			done <- s.Fenced(actx, func() error {
				inWrite.Done()
				select {
				case <-allIn:
				case <-time.After(200 * time.Millisecond):
				}
				_, err := s.Append(actx, "fenced-"+string(rune('a'+i)), annals.Any, annals.Event{Type: "Fenced"})
				return err
			})
		}()
	}
	for range conns {
		if err := testwait.Recv(t, "a fenced append", done); err != nil {
			t.Fatalf("fenced append: %v", err)
		}
	}
}
