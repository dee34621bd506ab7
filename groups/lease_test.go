package groups_test

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/annalsdb/annals"
	"github.com/annalsdb/annals/groups"
	"github.com/annalsdb/annals/internal/teststores"
	"github.com/annalsdb/annals/internal/testwait"
	"github.com/annalsdb/annals/lease"
	"github.com/annalsdb/annals/memstore"
)

// fencingKeeper is a lease keeper that fences writes (lease.Memory, pgstore.Store).
type fencingKeeper interface {
	lease.Keeper
	Fenced(ctx context.Context, write func() error) error
}

// flakyKeeper passes everything to its keeper, but fails acquisitions and renewals (as when
// the keeper cannot be reached) while fail is set.
type flakyKeeper struct {
	fencingKeeper
	fail atomic.Bool
}

var errUnreachable = errors.New("keeper unreachable")

func (k *flakyKeeper) Acquire(ctx context.Context, name, holder string, ttl time.Duration) (lease.Lease, error) {
	if k.fail.Load() {
		return lease.Lease{}, errUnreachable
	}
	return k.fencingKeeper.Acquire(ctx, name, holder, ttl)
}

func (k *flakyKeeper) Renew(ctx context.Context, l lease.Lease) (lease.Lease, error) {
	if k.fail.Load() {
		return lease.Lease{}, errUnreachable
	}
	return k.fencingKeeper.Renew(ctx, l)
}

func openLeased(t *testing.T, store groups.Store, keeper lease.Keeper, holder string, ttl time.Duration) *groups.Manager {
	t.Helper()
	m, err := groups.Open(context.Background(), store, &groups.Options{Leases: keeper, Holder: holder, LeaseTTL: ttl})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Close() })
	return m
}

func info(t *testing.T, m *groups.Manager, name string) groups.Info {
	t.Helper()
	i, err := m.Info(context.Background(), name)
	if err != nil {
		t.Fatalf("Info: %v", err)
	}
	return i
}

func appendN(t *testing.T, store annals.Appender, stream string, n int) {
	t.Helper()
	for range n {
		if _, err := store.Append(context.Background(), stream, annals.Any, annals.Event{Type: "e", Data: []byte(`{}`)}); err != nil {
			t.Fatal(err)
		}
	}
}

// TestLeaseHandover runs [testLeaseHandover] on memstore with a lease.Memory.
func TestLeaseHandover(t *testing.T) {
	store := memstore.New(nil)
	t.Cleanup(func() { store.Close() })
	testLeaseHandover(t, store, lease.NewMemory(nil))
}

// TestLeaseHandoverPostgres runs [testLeaseHandover] on pgstore with its own lease keeper.
func TestLeaseHandoverPostgres(t *testing.T) {
	store := teststores.Postgres(t, nil)
	testLeaseHandover(t, store, store)
}

// testLeaseHandover checks that of two managers on one store sharing a keeper only the one
// holding the group's lease delivers, that closing it hands the group to the other within
// the lease's time to live, and that every event is then acked, none skipped.
func testLeaseHandover(t *testing.T, store groups.Store, keeper lease.Keeper) {
	ctx := testwait.Context(t)
	const ttl = 3 * time.Second
	ms := []*groups.Manager{openLeased(t, store, keeper, "m1", ttl), openLeased(t, store, keeper, "m2", ttl)}
	if _, err := ms[0].Create(ctx, "g", groups.Settings{Stream: "s", CheckpointInterval: 10 * time.Millisecond}); err != nil {
		t.Fatal(err)
	}
	var active, standby *groups.Manager
	testwait.UntilNil(t, "one manager active and the other knowing it", func() error {
		i0, err0 := ms[0].Info(ctx, "g")
		i1, err1 := ms[1].Info(ctx, "g")
		if err := errors.Join(err0, err1); err != nil {
			return err
		}
		switch {
		case i0.Active && i1.Active:
			t.Fatalf("both managers are active")
		case i0.Active && i1.Holder == "m1":
			active, standby = ms[0], ms[1]
		case i1.Active && i0.Holder == "m2":
			active, standby = ms[1], ms[0]
		default:
			return fmt.Errorf("active %v (holder %q), %v (holder %q)", i0.Active, i0.Holder, i1.Active, i1.Holder)
		}
		return nil
	})
	ca, err := active.Join(ctx, "g", &groups.JoinOptions{Name: "a"})
	if err != nil {
		t.Fatal(err)
	}
	cs, err := standby.Join(ctx, "g", &groups.JoinOptions{Name: "s"})
	if err != nil {
		t.Fatal(err)
	}
	const n, more = 20, 10
	appendN(t, store, "s", n)
	acked := make(map[uint64]bool)
	// The active manager delivers all; its consumer acks the first half and holds the rest.
	for range n {
		m, err := ca.Receive(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if m.Event.Revision < n/2 {
			if err := ca.Ack(ctx, m.Event.ID); err != nil {
				t.Fatal(err)
			}
			acked[m.Event.Revision] = true
		}
	}
	if i := info(t, standby, "g"); i.Active || i.Delivered != 0 || len(i.Consumers) != 1 || i.Consumers[0].Delivered != 0 {
		t.Fatalf("the standby delivered: active %v, delivered %d, consumers %+v", i.Active, i.Delivered, i.Consumers)
	}
	if i := info(t, active, "g"); !i.Active || i.Holder != holderOf(ms, active) || i.InFlight != n/2 {
		t.Fatalf("active manager: active %v, holder %q, in flight %d; want true, its own, %d", i.Active, i.Holder, i.InFlight, n/2)
	}

	closed := time.Now()
	if err := active.Close(); err != nil {
		t.Fatal(err)
	}
	testwait.Until(t, "the standby to take the group over", func() bool { return info(t, standby, "g").Active })
	if took := time.Since(closed); took > ttl {
		t.Errorf("the standby took the group over %v after the active manager closed, more than the lease's %v", took, ttl)
	}
	appendN(t, store, "s", more)
	for len(acked) < n+more {
		m, err := cs.Receive(ctx)
		if err != nil {
			t.Fatalf("Receive on the new active manager with %d of %d acked: %v", len(acked), n+more, err)
		}
		if err := cs.Ack(ctx, m.Event.ID); err != nil {
			t.Fatal(err)
		}
		acked[m.Event.Revision] = true
	}
	for rev := range uint64(n + more) {
		if !acked[rev] {
			t.Errorf("revision %d never acked", rev)
		}
	}
}

func holderOf(ms []*groups.Manager, active *groups.Manager) string {
	if active == ms[0] {
		return "m1"
	}
	return "m2"
}

// TestLeaseRenewalsFail runs [testLeaseRenewalsFail] on memstore with a lease.Memory.
func TestLeaseRenewalsFail(t *testing.T) {
	store := memstore.New(nil)
	t.Cleanup(func() { store.Close() })
	testLeaseRenewalsFail(t, store, lease.NewMemory(nil))
}

// TestLeaseRenewalsFailPostgres runs [testLeaseRenewalsFail] on pgstore with its own lease
// keeper.
func TestLeaseRenewalsFailPostgres(t *testing.T) {
	store := teststores.Postgres(t, nil)
	testLeaseRenewalsFail(t, store, store)
}

// testLeaseRenewalsFail checks that a manager whose renewals fail stops delivering before
// its lease runs out, forgets its events in flight (an ack of one gets ErrNotInFlight), and
// that the other manager takes the group over from the checkpoint.
func testLeaseRenewalsFail(t *testing.T, store groups.Store, keeper fencingKeeper) {
	ctx := testwait.Context(t)
	const ttl = time.Second
	flaky := &flakyKeeper{fencingKeeper: keeper}
	m1 := openLeased(t, store, flaky, "m1", ttl)
	if _, err := m1.Create(ctx, "g", groups.Settings{Stream: "s", CheckpointInterval: 10 * time.Millisecond}); err != nil {
		t.Fatal(err)
	}
	testwait.Until(t, "m1 active", func() bool { return info(t, m1, "g").Active })
	m2 := openLeased(t, store, keeper, "m2", ttl)
	testwait.Until(t, "m2 standing by, knowing m1 holds the group", func() bool {
		i := info(t, m2, "g")
		return !i.Active && i.Holder == "m1"
	})
	c1, err := m1.Join(ctx, "g", nil)
	if err != nil {
		t.Fatal(err)
	}
	c2, err := m2.Join(ctx, "g", nil)
	if err != nil {
		t.Fatal(err)
	}
	const n = 5
	appendN(t, store, "s", n)
	var held annals.UUID
	acked := make(map[uint64]bool)
	for range n {
		m, err := c1.Receive(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if m.Event.Revision < 2 {
			if err := c1.Ack(ctx, m.Event.ID); err != nil {
				t.Fatal(err)
			}
			acked[m.Event.Revision] = true
		} else {
			held = m.Event.ID
		}
	}

	flaky.fail.Store(true)
	testwait.Until(t, "m1 to stop being active", func() bool { return !info(t, m1, "g").Active })
	if err := c1.Ack(ctx, held); !errors.Is(err, groups.ErrNotInFlight) {
		t.Fatalf("Ack on the manager that lost the lease: %v, want ErrNotInFlight", err)
	}
	if i := info(t, m1, "g"); i.InFlight != 0 || i.Buffered != 0 {
		t.Fatalf("m1 after losing the lease: in flight %d, buffered %d; want 0, 0", i.InFlight, i.Buffered)
	}
	delivered := info(t, m1, "g").Delivered

	testwait.Until(t, "m2 to take the group over", func() bool { return info(t, m2, "g").Active })
	appendN(t, store, "s", n)
	for len(acked) < 2*n {
		m, err := c2.Receive(ctx)
		if err != nil {
			t.Fatalf("Receive on m2 with %d of %d acked: %v", len(acked), 2*n, err)
		}
		if err := c2.Ack(ctx, m.Event.ID); err != nil {
			t.Fatal(err)
		}
		acked[m.Event.Revision] = true
	}
	i := info(t, m1, "g")
	if i.Active || i.Delivered != delivered {
		t.Fatalf("m1 delivered %d events after losing the lease (active %v)", i.Delivered-delivered, i.Active)
	}
	flaky.fail.Store(false) // m1 reaches the keeper again, and finds m2 holding the group
	testwait.Until(t, "m1 to know m2 holds the group", func() bool { return info(t, m1, "g").Holder == "m2" })
	// A replay on the standby is refused, naming the holder.
	if _, err := m1.ReplayParked(ctx, "g", 0); !errors.Is(err, lease.ErrHeld) {
		t.Fatalf("ReplayParked on the standby: %v, want ErrHeld", err)
	}
}

// TestLeaseOptions checks the options of leases.
func TestLeaseOptions(t *testing.T) {
	store := memstore.New(nil)
	t.Cleanup(func() { store.Close() })
	for _, o := range []groups.Options{
		{Holder: "h"},
		{LeaseTTL: time.Second},
		{Leases: lease.NewMemory(nil), LeaseTTL: time.Microsecond},
	} {
		if m, err := groups.Open(context.Background(), store, &o); !errors.Is(err, annals.ErrInvalidArgument) {
			if m != nil {
				m.Close()
			}
			t.Errorf("Open with %+v: %v, want ErrInvalidArgument", o, err)
		}
	}
}
