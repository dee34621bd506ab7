package pgstore

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/annalsdb/annals/lease"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgtype"
)

var (
	_ lease.Keeper = (*Store)(nil)
	_ lease.Keeper = (*Projections)(nil)
)

// The store keeps leases in its leases table (see the package lease): one row per name ever
// acquired, never deleted, so that its token, the last fencing token given for the name,
// survives releases, expiries and restarts, and the next acquisition gets token + 1. A row
// whose expires is -infinity is not held (released, or just created). Every decision reads the
// row locked (FOR UPDATE) and the database's clock_timestamp() after the lock, and applies the
// package lease's rules in Go: every replica on the database decides by one clock, whatever
// the clocks of the machines.

// Acquire implements [lease.Keeper]: it gives the lease on name to holder for ttl, in the
// store's leases table (see [Store.Renew] for the clock). The ttl is kept in whole
// milliseconds: the lease returned carries the ttl truncated to a millisecond. Errors: one
// matching [lease.ErrInvalid] for bad input (before anything else), ctx's error,
// [annals.ErrClosed] after Close, a [*lease.HeldError] when another holder holds the lease,
// the database's, wrapped. A lease returned is committed.
func (s *Store) Acquire(ctx context.Context, name, holder string, ttl time.Duration) (lease.Lease, error) {
	if err := lease.Validate(name, holder, ttl); err != nil {
		return lease.Lease{}, err
	}
	if err := s.begin(ctx); err != nil {
		return lease.Lease{}, err
	}
	ttl = ttl.Truncate(time.Millisecond)
	return s.leaseTx(ctx, "acquire", name, true, func(r leaseRow) (lease.Lease, leaseChange, error) {
		l, err := lease.Grant(r.cur, r.held, name, holder, ttl, r.now, r.cur.Token+1)
		return l, leaseHold, err
	})
}

// Renew implements [lease.Keeper]: it extends l by its TTL from the database's time. Times
// are the database's (clock_timestamp() once the lease's row is locked), so that replicas on
// machines whose clocks disagree agree on expiries; a holder counts its own deadline with
// [lease.Lease.Deadline]. Renew waits for the fenced writes of the lease that are committing (see
// [Projections.Update]). Errors: one matching [lease.ErrInvalid] for a bad name, ctx's error,
// [annals.ErrClosed], one matching [lease.ErrLost] when l is no longer the current lease, the
// database's, wrapped.
func (s *Store) Renew(ctx context.Context, l lease.Lease) (lease.Lease, error) {
	if err := lease.ValidateHeld(l); err != nil {
		return lease.Lease{}, err
	}
	if err := s.begin(ctx); err != nil {
		return lease.Lease{}, err
	}
	return s.leaseTx(ctx, "renew", l.Name, false, func(r leaseRow) (lease.Lease, leaseChange, error) {
		if err := lease.Check(r.cur, r.held, l, r.now, true); err != nil {
			return lease.Lease{}, leaseKeep, err
		}
		cur := r.cur
		cur.Expires = r.now.Add(cur.TTL)
		return cur, leaseHold, nil
	})
}

// Release implements [lease.Keeper]: it marks l released when it is the current lease, so
// that the next Acquire of its name, by any holder, gets it at once with the next token. It
// does nothing when l is not current. Errors: as [Store.Renew]'s, without ErrLost.
func (s *Store) Release(ctx context.Context, l lease.Lease) error {
	if err := lease.ValidateHeld(l); err != nil {
		return err
	}
	if err := s.begin(ctx); err != nil {
		return err
	}
	_, err := s.leaseTx(ctx, "release", l.Name, false, func(r leaseRow) (lease.Lease, leaseChange, error) {
		if lease.Check(r.cur, r.held, l, r.now, true) != nil {
			return lease.Lease{}, leaseKeep, nil
		}
		return lease.Lease{}, leaseFree, nil
	})
	return err
}

// Leases implements [lease.Keeper]: the leases whose name starts with prefix (byte-wise) and
// that have not expired on the database's clock, by name. A prefix that no name can start
// with (one holding a NUL byte) has none. Errors: ctx's, [annals.ErrClosed], the database's,
// wrapped.
func (s *Store) Leases(ctx context.Context, prefix string) ([]lease.Lease, error) {
	if err := s.begin(ctx); err != nil {
		return nil, err
	}
	if strings.IndexByte(prefix, 0) >= 0 {
		return nil, nil
	}
	// Names are valid UTF-8, but a prefix may end in the middle of a character: query with the
	// prefix's valid part and keep the names that start with all of it.
	valid := prefix
	for i, r := range prefix {
		if r == utf8.RuneError {
			if _, n := utf8.DecodeRuneInString(prefix[i:]); n == 1 {
				valid = prefix[:i]
				break
			}
		}
	}
	rows, err := s.pool.Query(ctx, "SELECT name, holder, token, ttl_ms, acquired, expires FROM "+s.schema+
		".leases WHERE starts_with(name, $1) AND expires > clock_timestamp() ORDER BY name", valid)
	if err != nil {
		return nil, s.fail(ctx, "list leases", err)
	}
	var out []lease.Lease
	var l lease.Lease
	var token, ttl int64
	_, err = pgx.ForEachRow(rows, []any{&l.Name, &l.Holder, &token, &ttl, &l.Acquired, &l.Expires}, func() error {
		if strings.HasPrefix(l.Name, prefix) {
			l.Token, l.TTL = uint64(token), time.Duration(ttl)*time.Millisecond
			out = append(out, l)
		}
		return nil
	})
	if err != nil {
		return nil, s.fail(ctx, "list leases", err)
	}
	return out, nil
}

// leaseRow is a lease's row as a transaction read it locked.
type leaseRow struct {
	// cur is the row (a name alone when there is none); held is false when the row is
	// missing or not held (expires -infinity). cur.Token is the last token given in any case.
	cur  lease.Lease
	held bool
	// now is the database's clock_timestamp(): once the row was locked FOR UPDATE, or with
	// the row's read for a fence (a takeover cannot commit after a share lock is taken).
	now time.Time
}

// leaseChange is what a [Store.leaseTx] writes.
type leaseChange int

const (
	leaseKeep leaseChange = iota // nothing
	leaseHold                    // the lease decide returned
	leaseFree                    // the lease released: expires -infinity, the token kept
)

// queueLease queues in b the read of the row of lease name, locked FOR mode (not locked when
// mode is empty), into r, with the database's clock (in a statement of its own after the lock
// for FOR UPDATE).
func (s *Store) queueLease(b *pgx.Batch, name, mode string, r *leaseRow) {
	*r = leaseRow{cur: lease.Lease{Name: name}}
	lock, clock := "", ", clock_timestamp()"
	if mode != "" {
		lock = " FOR " + mode
	}
	if mode == "UPDATE" {
		// A decision reads the clock after the lock, in a statement of its own (a statement's
		// columns are computed before its rows are locked).
		clock = ""
	}
	b.Queue("SELECT holder, token, ttl_ms, acquired, expires"+clock+" FROM "+s.schema+".leases WHERE name = $1"+lock, name).QueryRow(func(row pgx.Row) error {
		var token, ttl int64
		var acquired, expires pgtype.Timestamptz
		dest := []any{&r.cur.Holder, &token, &ttl, &acquired, &expires}
		if clock != "" {
			dest = append(dest, &r.now)
		}
		err := row.Scan(dest...)
		if errors.Is(err, pgx.ErrNoRows) {
			return nil // not held: the clock does not matter
		}
		if err != nil {
			return err
		}
		r.cur.Token, r.cur.TTL = uint64(token), time.Duration(ttl)*time.Millisecond
		r.cur.Acquired, r.cur.Expires = acquired.Time, expires.Time
		r.held = expires.InfinityModifier == pgtype.Finite
		return nil
	})
	if clock == "" {
		b.Queue("SELECT clock_timestamp()").QueryRow(func(row pgx.Row) error { return row.Scan(&r.now) })
	}
}

// leaseTx runs decide in a transaction that holds the row of lease name locked FOR UPDATE
// (creating it, not held, when create is set and it is missing), writes what decide returns
// and commits. decide's error rolls back and is returned as is; database errors are wrapped
// with op.
func (s *Store) leaseTx(ctx context.Context, op, name string, create bool, decide func(r leaseRow) (lease.Lease, leaseChange, error)) (lease.Lease, error) {
	what := fmt.Sprintf("%s lease %q", op, name)
	tx, err := s.pool.Begin(ctx)
	if err != nil {
		return lease.Lease{}, s.fail(ctx, what, err)
	}
	defer tx.Rollback(ctx)
	b := &pgx.Batch{}
	if create {
		// Insert the row if it is missing (waiting for a concurrent insert to end), then lock
		// it: the second statement's snapshot sees the row whoever inserted it.
		b.Queue("INSERT INTO "+s.schema+".leases (name, holder, token, ttl_ms, acquired, expires) VALUES ($1, '', 0, 0, '-infinity', '-infinity') ON CONFLICT DO NOTHING", name)
	}
	var r leaseRow
	s.queueLease(b, name, "UPDATE", &r)
	if err := tx.SendBatch(ctx, b).Close(); err != nil {
		return lease.Lease{}, s.fail(ctx, what+": lock", err)
	}
	l, change, err := decide(r)
	if err != nil {
		return lease.Lease{}, err
	}
	switch change {
	case leaseKeep:
		return l, nil
	case leaseHold:
		_, err = tx.Exec(ctx, "UPDATE "+s.schema+".leases SET holder = $2, token = $3, ttl_ms = $4, acquired = $5, expires = $6 WHERE name = $1",
			name, l.Holder, int64(l.Token), l.TTL.Milliseconds(), l.Acquired, l.Expires)
	case leaseFree:
		_, err = tx.Exec(ctx, "UPDATE "+s.schema+".leases SET expires = '-infinity' WHERE name = $1", name)
	}
	if err != nil {
		return lease.Lease{}, s.fail(ctx, what+": write", err)
	}
	if err := tx.Commit(ctx); err != nil {
		return lease.Lease{}, s.fail(ctx, what+": commit", err)
	}
	return l, nil
}

// fence is the check of the lease a write's context carries (see [lease.NewContext]), made in
// the write's transaction.
type fence struct {
	l lease.Lease
	r leaseRow
}

// newFence returns the fence of the lease ctx carries: nil when it carries none, an error
// matching [lease.ErrInvalid] when the lease's name cannot be.
func newFence(ctx context.Context) (*fence, error) {
	l, ok := lease.FromContext(ctx)
	if !ok {
		return nil, nil
	}
	if err := lease.ValidateHeld(l); err != nil {
		return nil, err
	}
	return &fence{l: l}, nil
}

// queue queues in b, after the statements that lock what the write changes, the lease's row
// locked FOR SHARE and the database's clock. The share lock makes every Acquire, Renew and
// Release of the lease (which lock the row FOR UPDATE) wait until the write's transaction
// ends, so that the lease checked stays current until the write commits. Fenced writes do not
// wait for each other. A nil f queues nothing.
func (f *fence) queue(s *Store, b *pgx.Batch) {
	if f != nil {
		s.queueLease(b, f.l.Name, "SHARE", &f.r)
	}
}

// queueRead queues in b, like queue, the lease's row and the database's clock, but without
// locking the row: a check made early in a write's transaction, so that a lost lease is
// refused before the write's work, without holding up the lease's renewals meanwhile.
func (f *fence) queueRead(s *Store, b *pgx.Batch) {
	if f != nil {
		s.queueLease(b, f.l.Name, "", &f.r)
	}
}

// check applies [lease.Check] to what the queued statements read: nil when the lease is current
// and has not expired on the database's clock (or f is nil), an error matching
// [lease.ErrLost] otherwise.
func (f *fence) check() error {
	if f == nil {
		return nil
	}
	return lease.Check(f.r.cur, f.r.held, f.l, f.r.now, false)
}

// Acquire implements [lease.Keeper] with the leases of the store: see [Store.Acquire].
func (p *Projections) Acquire(ctx context.Context, name, holder string, ttl time.Duration) (lease.Lease, error) {
	return p.s.Acquire(ctx, name, holder, ttl)
}

// Renew implements [lease.Keeper] with the leases of the store: see [Store.Renew].
func (p *Projections) Renew(ctx context.Context, l lease.Lease) (lease.Lease, error) {
	return p.s.Renew(ctx, l)
}

// Release implements [lease.Keeper] with the leases of the store: see [Store.Release].
func (p *Projections) Release(ctx context.Context, l lease.Lease) error {
	return p.s.Release(ctx, l)
}

// Leases implements [lease.Keeper] with the leases of the store: see [Store.Leases].
func (p *Projections) Leases(ctx context.Context, prefix string) ([]lease.Lease, error) {
	return p.s.Leases(ctx, prefix)
}

// Fenced runs write under the check of the lease ctx carries (see [lease.NewContext]), for
// writes that cannot check it in a transaction of their own (the server fences the appends of
// its clients so): in a transaction that holds the lease's row locked FOR SHARE, it applies
// [lease.Check] on the database's clock, runs write, and commits once write returned, so that
// no holder can take the lease while write runs. write runs outside that transaction, on
// another connection of the pool: a fenced write holds two connections. So that they cannot
// take every connection and wait for each other, at most half of Options.MaxConns (at least
// one; a fenced write needs MaxConns of 2 or more) run at once, the others wait their turn.
// Without a lease in ctx, write runs at once. Errors: one matching [lease.ErrLost] (write not
// called), ctx's, [annals.ErrClosed], the database's, wrapped, and write's, as is.
func (s *Store) Fenced(ctx context.Context, write func() error) error {
	f, err := newFence(ctx)
	if err != nil || f == nil {
		if err != nil {
			return err
		}
		return write()
	}
	if err := s.begin(ctx); err != nil {
		return err
	}
	select {
	case s.fences <- struct{}{}:
		defer func() { <-s.fences }()
	case <-ctx.Done():
		return ctx.Err()
	}
	what := fmt.Sprintf("fence with lease %q", f.l.Name)
	tx, err := s.pool.Begin(ctx)
	if err != nil {
		return s.fail(ctx, what, err)
	}
	defer tx.Rollback(context.WithoutCancel(ctx))
	b := &pgx.Batch{}
	f.queue(s, b)
	if err := tx.SendBatch(ctx, b).Close(); err != nil {
		return s.fail(ctx, what, err)
	}
	if err := f.check(); err != nil {
		return err
	}
	if err := write(); err != nil {
		return err
	}
	// The write is done: the commit only lets the lease's row go (as the rollback would).
	_ = tx.Commit(ctx)
	return nil
}
