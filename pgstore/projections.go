package pgstore

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync"

	"github.com/annalsdb/annals"
	"github.com/annalsdb/annals/projection"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// ProjectionsOptions configure [NewProjections]. The zero value (and nil) means no setup.
type ProjectionsOptions struct {
	// Setup creates the read model of a new generation: it runs in the transaction that creates
	// the generation's schema (the first Update of the generation, or the first read or
	// activation of a generation that had none), before any handler, and creates the tables,
	// indexes and views of the read model in tx.Schema(). An error rolls the transaction back
	// and is returned by the call that created the generation.
	Setup func(ctx context.Context, tx *ProjectionTx) error
}

// Projections keeps the read models of the toolkit's projections in the store's database,
// each generation of a projection in a schema of its own, with the checkpoints in the store's
// checkpoints table. It implements projection.Store[*ProjectionTx]: a handler writes its read
// model through the [ProjectionTx] it is given, and the runner's batch of events and the new
// checkpoint commit in one PostgreSQL transaction. The effect is exactly-once and durable: when
// Update returns, the rows and the checkpoint are committed together, and after a crash or a
// cancellation the runner resumes from a checkpoint that matches the rows exactly.
//
// # Generations
//
// Generation g of projection name lives in the schema <store schema>$<n>_<g>, where n is the
// projection's number in the store's projections table (names are free-form; schema names
// are at most 63 bytes). A generation exists when its checkpoint row does; both are created in
// one transaction (by the first Update of the generation, running [ProjectionsOptions].Setup
// to create the tables) and dropped in one transaction: Reset drops one generation, Activate
// records the active generation and drops every other one. A rebuild therefore builds beside
// the active generation, queries switch with Activate's commit, and a rebuild that fails or
// crashes leaves the active generation untouched.
//
// Queries read the active generation with [Projections.Read], which caches it: a Projections
// value learns its own activations at once, and another process's when the generation it
// cached is dropped (Read then runs the query again on the new one).
//
// # Leases and fencing
//
// Projections is also a [lease.Keeper]: its Acquire, Renew, Release and Leases are the
// store's (see [Store.Acquire]), so that the replicas of a service running one projection
// decide which of them works through the database they share. When ctx carries a lease
// ([lease.NewContext]), [Projections.Update], [Projections.Reset] and [Projections.Activate]
// check it in their own transaction: once the rows they change are locked (the checkpoint's
// row; for Activate the projection's row), the transaction locks the lease's row in the
// store's leases table FOR SHARE and applies [lease.Check] at the database's time
// (clock_timestamp(), never the caller's clock). A lease that is no longer current (released,
// or taken by another holder) or that expired is refused with an error matching
// [lease.ErrLost]: the transaction rolls back and nothing changes. The share lock holds until
// the transaction ends, and a takeover (Acquire, which locks the row FOR UPDATE) waits for it:
// a write that passed the check commits before any takeover, and every write after a takeover
// is refused, however long its holder paused. Update checks the lease twice: before fn without
// locking the row (a lost lease is refused without calling fn), and after fn with the share
// lock, which it therefore holds only from then to the commit, so that the holder's own
// renewals (Renew locks the row FOR UPDATE) do not wait for a slow batch. Renew and Release
// wait for the commits under way. Without a lease in ctx, nothing is checked.
//
// All methods are safe for concurrent use. Errors are the database's, wrapped, or
// [annals.ErrClosed] after the store is closed; Update and Setup errors are returned as is.
type Projections struct {
	s     *Store
	setup func(ctx context.Context, tx *ProjectionTx) error
	mu    struct {
		sync.Mutex
		ids    map[string]int64  // projection numbers, which never change
		active map[string]uint64 // the active generations Read uses
	}
}

// ProjectionTx is the transaction of one [Projections.Update] (or of a Setup): Tx is the
// PostgreSQL transaction, READ COMMITTED, in which the checkpoint moves; write the read model
// through it, in the tables of Schema. It is valid only during the call it is given to, and
// must not be committed or rolled back. Handlers are called again for events whose transaction
// was rolled back, so they must write only through Tx.
type ProjectionTx struct {
	Tx     pgx.Tx
	name   string
	gen    uint64
	schema string
}

// Projection returns the name of the projection the transaction writes.
func (tx *ProjectionTx) Projection() string { return tx.name }

// Generation returns the generation the transaction writes.
func (tx *ProjectionTx) Generation() uint64 { return tx.gen }

// Schema returns the quoted name of the generation's schema, ready for SQL: tables are
// Schema() + ".carts".
func (tx *ProjectionTx) Schema() string { return tx.schema }

// NewProjections returns the projection store of s; opts may be nil. Several Projections
// values may share a store (each read model with its own Setup), as long as each projection
// name is used with one of them.
func NewProjections(s *Store, opts *ProjectionsOptions) *Projections {
	p := &Projections{s: s}
	if opts != nil {
		p.setup = opts.Setup
	}
	p.mu.ids = map[string]int64{}
	p.mu.active = map[string]uint64{}
	return p
}

func validProjection(name string) error {
	if name == "" {
		return errors.New("pgstore: empty projection name")
	}
	for i := 0; i < len(name); i++ {
		if name[i] == 0 {
			return fmt.Errorf("pgstore: projection name %q holds a NUL byte", name)
		}
	}
	return nil
}

// id returns the number of projection name, registering the name when it is new.
func (p *Projections) id(ctx context.Context, name string) (int64, error) {
	if err := validProjection(name); err != nil {
		return 0, err
	}
	if err := p.s.begin(ctx); err != nil {
		return 0, err
	}
	p.mu.Lock()
	id, ok := p.mu.ids[name]
	p.mu.Unlock()
	if ok {
		return id, nil
	}
	err := p.s.pool.QueryRow(ctx, "INSERT INTO "+p.s.schema+".projections AS p (name) VALUES ($1) ON CONFLICT (name) DO UPDATE SET name = p.name RETURNING id", name).Scan(&id)
	if err != nil {
		return 0, p.s.fail(ctx, "register projection "+name, err)
	}
	p.mu.Lock()
	p.mu.ids[name] = id
	p.mu.Unlock()
	return id, nil
}

// schemaOf returns the quoted schema of generation gen of the projection numbered id.
func (p *Projections) schemaOf(name string, id int64, gen uint64) (string, error) {
	n := p.s.opts.Schema + "$" + strconv.FormatInt(id, 10) + "_" + strconv.FormatUint(gen, 10)
	if len(n) > 63 {
		return "", fmt.Errorf("pgstore: projection %q generation %d: schema name %q is longer than PostgreSQL's 63 bytes: use a shorter store schema", name, gen, n)
	}
	return pgx.Identifier{n}.Sanitize(), nil
}

// create makes the schema of a generation whose checkpoint row was just inserted in tx, and
// runs Setup in it.
func (p *Projections) create(ctx context.Context, ptx *ProjectionTx) error {
	// A schema without its row can only be a leftover of someone else's hands; the name is
	// reserved for the store ('$' is not allowed in store schemas), so start afresh.
	if _, err := ptx.Tx.Exec(ctx, "DROP SCHEMA IF EXISTS "+ptx.schema+" CASCADE; CREATE SCHEMA "+ptx.schema); err != nil {
		return p.s.fail(ctx, "create schema "+ptx.schema, err)
	}
	if p.setup != nil {
		return p.setup(ctx, ptx)
	}
	return nil
}

// Generation implements projection.Store: the active generation of name, 0 when none was
// activated. It reads the database (and refreshes what [Projections.Read] uses).
func (p *Projections) Generation(ctx context.Context, name string) (uint64, error) {
	if err := validProjection(name); err != nil {
		return 0, err
	}
	if err := p.s.begin(ctx); err != nil {
		return 0, err
	}
	var gen int64
	err := p.s.pool.QueryRow(ctx, "SELECT "+p.s.activeGen(), name).Scan(&gen)
	if err != nil {
		return 0, p.s.fail(ctx, "read the generation of "+name, err)
	}
	p.mu.Lock()
	p.mu.active[name] = uint64(gen)
	p.mu.Unlock()
	return uint64(gen), nil
}

// Checkpoint implements projection.Store: the checkpoint of generation gen of name, 0 when the
// generation does not exist.
func (p *Projections) Checkpoint(ctx context.Context, name string, gen uint64) (uint64, error) {
	if err := validProjection(name); err != nil {
		return 0, err
	}
	if err := p.s.begin(ctx); err != nil {
		return 0, err
	}
	var pos int64
	err := p.s.pool.QueryRow(ctx, "SELECT position FROM "+p.s.schema+".checkpoints WHERE name = $1 AND generation = $2", name, int64(gen)).Scan(&pos)
	if errors.Is(err, pgx.ErrNoRows) {
		return 0, nil
	}
	if err != nil {
		return 0, p.s.fail(ctx, "read checkpoint "+name, err)
	}
	return uint64(pos), nil
}

// Update implements projection.Store: in one transaction it locks the checkpoint row of
// generation gen of name (creating the generation, with Setup, when it does not exist),
// compares the checkpoint with from, runs fn, and moves the checkpoint to to; it returns once
// that transaction committed (durable as far as PostgreSQL's commit is). When fn returns an
// error, everything is rolled back and Update returns that error as is. The locked row makes
// two Updates of one generation take turns, and the checkpoint compare-and-set: when the
// checkpoint the lock finds is not from (another runner committed first, or the generation was
// dropped), Update rolls back without calling fn and returns a
// *projection.CheckpointConflictError (matching projection.ErrCheckpointMoved); a to below
// from is refused with an error matching projection.ErrInvalid. When ctx carries a lease, the
// transaction checks it once the checkpoint row is locked, before the checkpoint compare and
// fn, and again after fn with the lease's row locked until the commit: a lease that is lost or
// expired is refused with an error matching lease.ErrLost, rolled back (without calling fn
// when the first check refuses; see "Leases and fencing" above).
func (p *Projections) Update(ctx context.Context, name string, gen uint64, from, to uint64, fn func(*ProjectionTx) error) error {
	id, err := p.id(ctx, name)
	if err != nil {
		return err
	}
	schema, err := p.schemaOf(name, id, gen)
	if err != nil {
		return err
	}
	return p.s.checkpointTx(ctx, name, int64(gen), func(tx pgx.Tx, stored uint64, created bool) (uint64, error) {
		if err := projection.CheckUpdate(name, gen, stored, from, to); err != nil {
			return 0, err
		}
		ptx := &ProjectionTx{Tx: tx, name: name, gen: gen, schema: schema}
		if created {
			if err := p.create(ctx, ptx); err != nil {
				return 0, err
			}
		}
		if err := fn(ptx); err != nil {
			return 0, err
		}
		// Checkpoint 0 (nothing applied) is the row as created.
		return to, nil
	})
}

// Reset implements projection.Store: in one transaction it drops the schema and the
// checkpoint of generation gen of name. When ctx carries a lease, the transaction checks it
// once the checkpoint row is locked, before dropping anything, and a lease that is lost or
// expired is refused with an error matching lease.ErrLost, changing nothing.
func (p *Projections) Reset(ctx context.Context, name string, gen uint64) error {
	id, err := p.id(ctx, name)
	if err != nil {
		return err
	}
	schema, err := p.schemaOf(name, id, gen)
	if err != nil {
		return err
	}
	f, err := newFence(ctx)
	if err != nil {
		return err
	}
	tx, err := p.s.pool.Begin(ctx)
	if err != nil {
		return p.s.fail(ctx, "reset "+name, err)
	}
	defer tx.Rollback(ctx)
	b := &pgx.Batch{}
	b.Queue("DELETE FROM "+p.s.schema+".checkpoints WHERE name = $1 AND generation = $2", name, int64(gen))
	if f != nil {
		// Check the lease before dropping anything.
		f.queue(p.s, b)
		if err := tx.SendBatch(ctx, b).Close(); err != nil {
			return p.s.fail(ctx, fmt.Sprintf("reset %s generation %d", name, gen), err)
		}
		if err := f.check(); err != nil {
			return err
		}
		b = &pgx.Batch{}
	}
	b.Queue("DROP SCHEMA IF EXISTS " + schema + " CASCADE")
	if err := tx.SendBatch(ctx, b).Close(); err != nil {
		return p.s.fail(ctx, fmt.Sprintf("reset %s generation %d", name, gen), err)
	}
	if err := tx.Commit(ctx); err != nil {
		return p.s.fail(ctx, fmt.Sprintf("reset %s generation %d: commit", name, gen), err)
	}
	return nil
}

// Activate implements projection.Store: in one transaction it records gen as the active
// generation of name (creating it, with Setup, when it does not exist) and drops every other
// generation of name, schema and checkpoint. Queries under way on a dropped generation finish
// first (DROP SCHEMA waits for their locks); later ones read gen. When ctx carries a lease,
// the transaction checks it once the projection's row is locked, before anything else, and a
// lease that is lost or expired is refused with an error matching lease.ErrLost, changing
// nothing.
func (p *Projections) Activate(ctx context.Context, name string, gen uint64) error {
	id, err := p.id(ctx, name)
	if err != nil {
		return err
	}
	f, err := newFence(ctx)
	if err != nil {
		return err
	}
	err = p.activeTx(ctx, name, id, f, func(tx pgx.Tx, _ uint64) (uint64, error) {
		rows, err := tx.Query(ctx, "DELETE FROM "+p.s.schema+".checkpoints WHERE name = $1 AND generation <> $2 RETURNING generation", name, int64(gen))
		if err != nil {
			return 0, err
		}
		old, err := pgx.CollectRows(rows, pgx.RowTo[int64])
		if err != nil {
			return 0, err
		}
		b := &pgx.Batch{}
		for _, g := range old {
			schema, err := p.schemaOf(name, id, uint64(g))
			if err != nil {
				return 0, err
			}
			b.Queue("DROP SCHEMA IF EXISTS " + schema + " CASCADE")
		}
		b.Queue("UPDATE "+p.s.schema+".projections SET active = $2, activated = now() WHERE name = $1", name, int64(gen))
		if err := tx.SendBatch(ctx, b).Close(); err != nil {
			return 0, err
		}
		return gen, nil
	})
	if err != nil {
		return err
	}
	p.mu.Lock()
	p.mu.active[name] = gen
	p.mu.Unlock()
	return nil
}

// activeTx runs fn in a transaction that holds the projections row of name locked, after
// making sure that the generation fn returns exists (created with Setup when it does not):
// fn gets the active generation and returns the generation to ensure. Activate and the reads
// that create a missing generation therefore take turns. A non-nil f is checked once the row
// is locked, before fn (its error, matching lease.ErrLost, is returned as is). Errors of fn
// and Setup are returned as is, database errors wrapped.
func (p *Projections) activeTx(ctx context.Context, name string, id int64, f *fence, fn func(tx pgx.Tx, active uint64) (uint64, error)) error {
	tx, err := p.s.pool.Begin(ctx)
	if err != nil {
		return p.s.fail(ctx, "projection "+name, err)
	}
	defer tx.Rollback(ctx)
	var active int64
	b := &pgx.Batch{}
	b.Queue("SELECT active FROM "+p.s.schema+".projections WHERE name = $1 FOR UPDATE", name).QueryRow(func(row pgx.Row) error { return row.Scan(&active) })
	f.queue(p.s, b)
	if err := tx.SendBatch(ctx, b).Close(); err != nil {
		return p.s.fail(ctx, "projection "+name+": lock", err)
	}
	if err := f.check(); err != nil {
		return err
	}
	gen, err := fn(tx, uint64(active))
	if err != nil {
		return p.s.fail(ctx, "projection "+name, err)
	}
	schema, err := p.schemaOf(name, id, gen)
	if err != nil {
		return err
	}
	var created bool
	err = tx.QueryRow(ctx, "INSERT INTO "+p.s.schema+".checkpoints (name, generation, position, updated) VALUES ($1, $2, 0, now()) ON CONFLICT DO NOTHING RETURNING true", name, int64(gen)).Scan(&created)
	if err != nil && !errors.Is(err, pgx.ErrNoRows) {
		return p.s.fail(ctx, "projection "+name+": create generation", err)
	}
	if created {
		if err := p.create(ctx, &ProjectionTx{Tx: tx, name: name, gen: gen, schema: schema}); err != nil {
			return err
		}
	}
	if err := tx.Commit(ctx); err != nil {
		return p.s.fail(ctx, "projection "+name+": commit", err)
	}
	return nil
}

// Read calls fn with the quoted schema of the active generation of projection name, for a
// query on its read model (schema + ".carts"), typically through the store's [Store.Pool].
// The active generation is cached: Read costs no query of its own, except the first time and
// after a change. When fn fails because the generation's tables are gone (another process
// activated a new generation, or reset it), Read learns the active generation again and calls
// fn once more; fn must therefore not have acted on a partial result when it fails. A
// generation that does not exist yet (a projection that never ran) is created empty, with
// Setup, so that fn always finds its tables. fn's errors are returned as is.
func (p *Projections) Read(ctx context.Context, name string, fn func(schema string) error) error {
	id, err := p.id(ctx, name)
	if err != nil {
		return err
	}
	p.mu.Lock()
	gen, ok := p.mu.active[name]
	p.mu.Unlock()
	for attempt := 0; ; attempt++ {
		if !ok {
			if gen, err = p.ensureActive(ctx, name, id); err != nil {
				return err
			}
			ok = true
		}
		schema, err := p.schemaOf(name, id, gen)
		if err != nil {
			return err
		}
		err = fn(schema)
		if attempt > 0 || !undefinedObject(err) {
			return err
		}
		ok = false
	}
}

// ensureActive reads the active generation of name, creates it when it does not exist, and
// caches it.
func (p *Projections) ensureActive(ctx context.Context, name string, id int64) (uint64, error) {
	var gen uint64
	err := p.activeTx(ctx, name, id, nil, func(_ pgx.Tx, active uint64) (uint64, error) {
		gen = active
		return active, nil
	})
	if err != nil {
		return 0, err
	}
	p.mu.Lock()
	p.mu.active[name] = gen
	p.mu.Unlock()
	return gen, nil
}

// undefinedObject reports an error of PostgreSQL about a table or schema that does not exist.
func undefinedObject(err error) bool {
	pgErr, ok := errors.AsType[*pgconn.PgError](err)
	return ok && (pgErr.Code == "42P01" || pgErr.Code == "3F000")
}

// Drop removes the store kept in schema of the database that connString names: the schema
// with all its tables, and the schemas of its projections' generations, in one transaction.
// Close the stores open on it first (Drop waits for their locks). Dropping a schema that does
// not exist does nothing. Errors: [ErrUnreachable], [annals.ErrInvalidArgument] for a bad
// connection string or schema name, the database's, wrapped.
func Drop(ctx context.Context, connString, schema string) error {
	if _, err := (&Options{Schema: schema}).withDefaults(); err != nil {
		return err
	}
	cfg, err := pgx.ParseConfig(connString)
	if err != nil {
		return fmt.Errorf("%w: pgstore: connection string: %w", annals.ErrInvalidArgument, err)
	}
	conn, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		return connectError(cfg, err)
	}
	defer conn.Close(context.WithoutCancel(ctx))
	tx, err := conn.Begin(ctx)
	if err != nil {
		return wrapDB("drop "+schema, err)
	}
	defer tx.Rollback(ctx)
	rows, err := tx.Query(ctx, "SELECT nspname FROM pg_namespace WHERE nspname = $1 OR starts_with(nspname, $1 || '$') ORDER BY nspname", schema)
	if err != nil {
		return wrapDB("drop "+schema, err)
	}
	names, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return wrapDB("drop "+schema, err)
	}
	for _, n := range names {
		if _, err := tx.Exec(ctx, "DROP SCHEMA IF EXISTS "+pgx.Identifier{n}.Sanitize()+" CASCADE"); err != nil {
			return wrapDB("drop schema "+n, err)
		}
	}
	return wrapDB("drop "+schema+": commit", tx.Commit(ctx))
}
