// Package tables is the embedded store's side tables: read models in a Pebble database of their
// own (open it beside the filestore, e.g. at filepath.Join(dataDir, "tables")), each row and the
// projection's checkpoint committed in one synced Pebble batch.
//
// A [*DB] satisfies projection.Store[*tables.Tx]: a projection's handler writes rows through
// the [*Tx] it is given, with typed [Table] values (JSON-encoded), and the runner commits them
// with the checkpoint. The effect is exactly-once and durable: when Update returns, the rows
// and the checkpoint are on disk together, and after a crash the runner resumes from a
// checkpoint that matches the rows exactly. The checkpoint is compare-and-set (an Update
// names the checkpoint it continues from, see [DB.Update]), so several runners of one
// projection over one DB apply each event once between them (the DB itself belongs to one
// process: Pebble locks its directory).
//
// Rows are namespaced by projection and generation, so that a rebuild writes a new generation
// beside the active one; [Table.Get], [Table.List] and [Table.Scan] (the query side) read the
// active generation, and [DB.Activate] switches to another one and drops the rest in one
// batch.
//
// Key layout (one Pebble key space): "a" name → active generation; "g" name 0x00 gen(8 bytes,
// big-endian) 0x00 → checkpoint; "g" name 0x00 gen 0x00-free table name 0x00 key → row.
// Projection and table names must not contain a NUL byte; row keys may hold any bytes.
package tables

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"sync"

	"github.com/annalsdb/annals/lease"
	"github.com/annalsdb/annals/projection"
	"github.com/cockroachdb/pebble/v2"
)

type keeper = lease.Memory

var _ lease.Keeper = (*DB)(nil)

// Errors of the package. Check them with errors.Is.
var (
	// ErrClosed: the DB was closed.
	ErrClosed = errors.New("tables: closed")
	// ErrInvalid: a bad name, or a Tx used with a table of another projection or DB.
	ErrInvalid = errors.New("tables: invalid argument")
	// ErrCorrupt: a stored value does not decode.
	ErrCorrupt = errors.New("tables: data corrupt")
)

// Options configure [Open]. The zero value (and nil) means the defaults.
type Options struct {
	// CacheSize is the size in bytes of Pebble's block cache; 0 means Pebble's default (8 MiB).
	CacheSize int64
	// Logger receives the errors Pebble meets in the background (a failed flush or
	// compaction), which no call returns; nil means slog.Default().
	Logger *slog.Logger
}

// DB is a side-tables database. All methods are safe for concurrent use; after Close they
// return errors matching [ErrClosed].
type DB struct {
	// keeper makes the DB a lease.Keeper in the process (Acquire, Renew, Release, Leases) for
	// the runners of its projections; Update checks the lease its context carries.
	keeper
	pdb *pebble.DB
	// mu guards closing and the active generations; it is never held across a caller's
	// callback (Update's fn, Scan's fn, a List loop body). A read takes the active generation
	// and a Pebble iterator (a consistent view) under it, and an Update registers in inflight,
	// then releases it: Activate and Close (exclusive) wait only for those short steps, and
	// callbacks may call the DB's methods. Close then waits for inflight before it closes
	// Pebble.
	mu struct {
		sync.RWMutex
		closed bool
		active map[string]uint64
	}
	inflight sync.WaitGroup // Updates and iterations under way, registered under mu while open
	// names holds a lock per projection name. An Update holds its name's lock from the
	// check of the checkpoint to the commit (not while fn runs), and Reset and Activate hold
	// it too, so that the compare-and-set of the checkpoint is atomic. Lock order: a name's
	// lock, then mu.
	names struct {
		sync.Mutex
		locks map[string]*sync.Mutex
	}
}

// nameLock returns the lock of projection name.
func (db *DB) nameLock(name string) *sync.Mutex {
	db.names.Lock()
	defer db.names.Unlock()
	l := db.names.locks[name]
	if l == nil {
		l = &sync.Mutex{}
		db.names.locks[name] = l
	}
	return l
}

// Open opens (creating it if needed) the database in directory dir. It returns Pebble's error,
// wrapped, when the directory cannot be opened or is locked by another process.
func Open(dir string, opts *Options) (*DB, error) {
	o := Options{}
	if opts != nil {
		o = *opts
	}
	log := o.Logger
	if log == nil {
		log = slog.Default()
	}
	po := &pebble.Options{Logger: pebbleLogger{log}}
	if o.CacheSize > 0 {
		c := pebble.NewCache(o.CacheSize)
		defer c.Unref()
		po.Cache = c
	}
	pdb, err := pebble.Open(dir, po)
	if err != nil {
		return nil, fmt.Errorf("tables: open %s: %w", dir, err)
	}
	db := &DB{pdb: pdb}
	db.mu.active = map[string]uint64{}
	db.names.locks = map[string]*sync.Mutex{}
	it, err := pdb.NewIter(&pebble.IterOptions{LowerBound: []byte{'a'}, UpperBound: []byte{'b'}})
	if err != nil {
		pdb.Close()
		return nil, fmt.Errorf("tables: open %s: %w", dir, err)
	}
	for ok := it.First(); ok; ok = it.Next() {
		v := it.Value()
		if len(v) != 8 {
			it.Close()
			pdb.Close()
			return nil, fmt.Errorf("%w: active generation of %q", ErrCorrupt, it.Key()[1:])
		}
		db.mu.active[string(it.Key()[1:])] = binary.BigEndian.Uint64(v)
	}
	if err := it.Close(); err != nil {
		pdb.Close()
		return nil, fmt.Errorf("tables: open %s: %w", dir, err)
	}
	return db, nil
}

// Close closes the database, after the Updates and the Scan and List loops in progress end
// (so it must not be called from their callbacks; it would wait for itself). Calls that start
// afterwards return [ErrClosed]. It is safe to call more than once.
func (db *DB) Close() error {
	db.mu.Lock()
	if db.mu.closed {
		db.mu.Unlock()
		return nil
	}
	db.mu.closed = true
	db.mu.Unlock()
	db.inflight.Wait()
	if err := db.pdb.Close(); err != nil {
		return fmt.Errorf("tables: close: %w", err)
	}
	return nil
}

func validName(what, name string) error {
	if name == "" {
		return fmt.Errorf("%w: empty %s name", ErrInvalid, what)
	}
	for i := 0; i < len(name); i++ {
		if name[i] == 0 {
			return fmt.Errorf("%w: %s name %q holds a NUL byte", ErrInvalid, what, name)
		}
	}
	return nil
}

func activeKey(name string) []byte { return append([]byte{'a'}, name...) }

// genPrefix is "g" name 0x00 gen.
func genPrefix(name string, gen uint64) []byte {
	k := make([]byte, 0, len(name)+10)
	k = append(k, 'g')
	k = append(k, name...)
	k = append(k, 0)
	return binary.BigEndian.AppendUint64(k, gen)
}

func checkpointKey(name string, gen uint64) []byte { return append(genPrefix(name, gen), 0) }

// genBounds returns the key range of generation gen of name.
func genBounds(name string, gen uint64) (lower, upper []byte) {
	lower = genPrefix(name, gen)
	if gen == ^uint64(0) {
		upper = append([]byte{'g'}, name...)
		return lower, append(upper, 1)
	}
	return lower, genPrefix(name, gen+1)
}

func u64(v uint64) []byte { return binary.BigEndian.AppendUint64(nil, v) }

func (db *DB) readLock() error {
	db.mu.RLock()
	if db.mu.closed {
		db.mu.RUnlock()
		return ErrClosed
	}
	return nil
}

// begin registers a call that uses Pebble without holding mu (Close waits for it); end it
// with db.inflight.Done.
func (db *DB) begin() error {
	if err := db.readLock(); err != nil {
		return err
	}
	db.inflight.Add(1)
	db.mu.RUnlock()
	return nil
}

// Generation implements projection.Store: the active generation of projection name, 0 when
// none was activated. Errors: [ErrInvalid], [ErrClosed].
func (db *DB) Generation(ctx context.Context, name string) (uint64, error) {
	if err := validName("projection", name); err != nil {
		return 0, err
	}
	if err := db.readLock(); err != nil {
		return 0, err
	}
	defer db.mu.RUnlock()
	return db.mu.active[name], nil
}

// Checkpoint implements projection.Store: the checkpoint of generation gen of name, 0 when
// none. Errors: [ErrInvalid], [ErrClosed], [ErrCorrupt], Pebble's.
func (db *DB) Checkpoint(ctx context.Context, name string, gen uint64) (uint64, error) {
	if err := validName("projection", name); err != nil {
		return 0, err
	}
	if err := db.readLock(); err != nil {
		return 0, err
	}
	defer db.mu.RUnlock()
	return db.checkpoint(name, gen)
}

// checkpoint reads the checkpoint of generation gen of name from Pebble.
func (db *DB) checkpoint(name string, gen uint64) (uint64, error) {
	v, closer, err := db.pdb.Get(checkpointKey(name, gen))
	if errors.Is(err, pebble.ErrNotFound) {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("tables: read checkpoint of %q: %w", name, err)
	}
	defer closer.Close()
	if len(v) != 8 {
		return 0, fmt.Errorf("%w: checkpoint of %q generation %d", ErrCorrupt, name, gen)
	}
	return binary.BigEndian.Uint64(v), nil
}

// Update implements projection.Store: fn writes rows of generation gen of name through its
// [*Tx], and the rows and the checkpoint (moved from from to to) are committed in one Pebble
// batch, synced: durable when Update returns nil. When fn returns an error nothing is written
// and Update returns it. The checkpoint is compare-and-set: under the projection's lock, the
// stored checkpoint is compared with from before the commit, and when it moved (another
// runner committed, or the generation was dropped) the batch is discarded and Update returns
// a *projection.CheckpointConflictError (matching projection.ErrCheckpointMoved). fn holds no
// lock of the DB: it may read tables and the DB, and a slow fn delays no other call but
// Close. When ctx carries a lease (lease.NewContext), it is checked with the checkpoint, under
// the same lock as the commit, and no other holder can take it until the commit is done.
// Errors besides fn's: [ErrInvalid], [ErrClosed], ctx's (before the commit), the refusals of
// projection.CheckUpdate, lease.ErrLost, Pebble's.
func (db *DB) Update(ctx context.Context, name string, gen uint64, from, to uint64, fn func(*Tx) error) error {
	if err := validName("projection", name); err != nil {
		return err
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	if err := db.begin(); err != nil {
		return err
	}
	defer db.inflight.Done()
	b := db.pdb.NewBatch()
	defer b.Close()
	tx := &Tx{db: db, b: b, name: name, gen: gen, prefix: genPrefix(name, gen), writes: map[string]txWrite{}}
	err := fn(tx)
	tx.b = nil // a Tx kept past fn fails instead of writing into a closed batch
	if err != nil {
		return err
	}
	if err := b.Set(checkpointKey(name, gen), u64(to), nil); err != nil {
		return fmt.Errorf("tables: update %q: %w", name, err)
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	l := db.nameLock(name)
	l.Lock()
	defer l.Unlock()
	return db.keeper.Fenced(ctx, func() error {
		stored, err := db.checkpoint(name, gen)
		if err != nil {
			return err
		}
		if err := projection.CheckUpdate(name, gen, stored, from, to); err != nil {
			return err
		}
		if err := b.Commit(pebble.Sync); err != nil {
			return fmt.Errorf("tables: commit %q: %w", name, err)
		}
		return nil
	})
}

// Reset implements projection.Store: it drops every row and the checkpoint of generation gen
// of name, synced. Errors: [ErrInvalid], [ErrClosed], Pebble's.
func (db *DB) Reset(ctx context.Context, name string, gen uint64) error {
	if err := validName("projection", name); err != nil {
		return err
	}
	l := db.nameLock(name)
	l.Lock()
	defer l.Unlock()
	if err := db.readLock(); err != nil {
		return err
	}
	defer db.mu.RUnlock()
	lo, hi := genBounds(name, gen)
	if err := db.pdb.DeleteRange(lo, hi, pebble.Sync); err != nil {
		return fmt.Errorf("tables: reset %q generation %d: %w", name, gen, err)
	}
	return nil
}

// Activate implements projection.Store: in one synced batch it makes gen the active
// generation of name and drops every other generation of name. Reads in progress finish on
// the generation they started on; later ones read gen. Errors: [ErrInvalid], [ErrClosed],
// Pebble's.
func (db *DB) Activate(ctx context.Context, name string, gen uint64) error {
	if err := validName("projection", name); err != nil {
		return err
	}
	l := db.nameLock(name)
	l.Lock()
	defer l.Unlock()
	db.mu.Lock()
	defer db.mu.Unlock()
	if db.mu.closed {
		return ErrClosed
	}
	b := db.pdb.NewBatch()
	defer b.Close()
	lo, hi := genBounds(name, gen)
	first, _ := genBounds(name, 0)
	_, last := genBounds(name, ^uint64(0))
	if err := errors.Join(
		b.Set(activeKey(name), u64(gen), nil),
		b.DeleteRange(first, lo, nil),
		b.DeleteRange(hi, last, nil),
		b.Commit(pebble.Sync),
	); err != nil {
		return fmt.Errorf("tables: activate %q generation %d: %w", name, gen, err)
	}
	db.mu.active[name] = gen
	return nil
}

// Tx is the transaction of one [DB.Update]: the rows a handler writes through it (with
// [Table.Put] and [Table.Delete]) are committed with the checkpoint, or not at all, and
// [Table.Read] sees them before the commit. A Tx belongs to one projection and generation and
// is valid only during the Update's fn; it is not safe for concurrent use.
type Tx struct {
	db     *DB
	b      *pebble.Batch
	name   string
	gen    uint64
	prefix []byte
	// writes holds what the Tx wrote, by Pebble key, for Read: the batch itself is not indexed
	// (cheaper to build), and a key written again in one batch (a running total) is read
	// from here rather than from Pebble.
	writes map[string]txWrite
}

type txWrite struct {
	value   []byte
	deleted bool
}

// Projection returns the name of the projection the Tx writes.
func (tx *Tx) Projection() string { return tx.name }

// Generation returns the generation the Tx writes.
func (tx *Tx) Generation() uint64 { return tx.gen }

// pebbleLogger passes Pebble's errors to a slog.Logger and drops its notices.
type pebbleLogger struct{ log *slog.Logger }

func (pebbleLogger) Infof(string, ...any) {}

func (l pebbleLogger) Errorf(format string, args ...any) {
	l.log.Error("tables: pebble: " + fmt.Sprintf(format, args...))
}

func (pebbleLogger) Fatalf(format string, args ...any) {
	panic(fmt.Sprintf("pebble: "+format, args...))
}
