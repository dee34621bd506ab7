package pgstore

import (
	"context"
	"embed"
	"errors"
	"fmt"
	"hash/fnv"
	"io/fs"
	"net"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/annalsdb/annals"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
)

var (
	_ annals.Store          = (*Store)(nil)
	_ annals.SystemAppender = (*Store)(nil)
)

// Errors that [Open] returns, besides those of the annals package. Each comes wrapped in an
// error that says what to check.
var (
	// ErrUnreachable: no connection to the database could be made.
	ErrUnreachable = errors.New("pgstore: database unreachable")
	// ErrReadOnly: the database accepts no writes (a standby, or default_transaction_read_only).
	ErrReadOnly = errors.New("pgstore: database is read-only")
	// ErrSchemaTooNew: the schema was migrated by a newer version of annals than this one.
	ErrSchemaTooNew = errors.New("pgstore: schema is newer than this version of annals")
)

//go:embed migrations/*.sql
var migrationFiles embed.FS

// migration is one embedded schema migration.
type migration struct {
	version int
	name    string
	sql     string
}

// migrations returns the embedded migrations in version order. Their files are named
// NNNN_name.sql, numbered from 1 without gaps.
func migrations() []migration {
	names, err := fs.Glob(migrationFiles, "migrations/*.sql")
	if err != nil {
		panic(err)
	}
	slices.Sort(names)
	var out []migration
	for i, name := range names {
		base := strings.TrimPrefix(name, "migrations/")
		v, err := strconv.Atoi(base[:4])
		if err != nil || v != i+1 {
			panic(fmt.Sprintf("pgstore: migration %s is not number %d", name, i+1))
		}
		b, err := migrationFiles.ReadFile(name)
		if err != nil {
			panic(err)
		}
		out = append(out, migration{version: v, name: base, sql: string(b)})
	}
	return out
}

// SchemaVersion is the schema version this package creates and understands.
var SchemaVersion = len(migrations())

// Store is an [annals.Store] in a PostgreSQL database. All methods are safe for concurrent use.
// An append is durable when it returns as far as PostgreSQL's commit is (with the server's
// default synchronous_commit=on, the WAL is flushed).
type Store struct {
	opts   Options
	schema string // quoted schema name, ready for SQL
	// channelName is the NOTIFY channel of the store's schema; channel is it quoted.
	channelName, channel string
	pool                 *pgxpool.Pool
	sql                  queries

	// ctx is the store's own context: the listener runs in it; Close cancels it after the
	// writers have finished.
	ctx    context.Context
	cancel context.CancelFunc
	// writers and listener are the goroutines the store owns; Close waits for them.
	writers  sync.WaitGroup
	listener sync.WaitGroup
	// closed is closed by Close, to end waiting subscriptions.
	closed chan struct{}
	// fences bounds the Fenced calls under way (see [Store.Fenced]) to half the pool: each
	// holds a connection while its write needs another.
	fences chan struct{}

	// q is the queue of appends waiting for a writer. Lock order: q before mu.
	q struct {
		sync.Mutex
		cond    *sync.Cond
		pending []*request
		closed  bool
	}

	mu struct {
		sync.Mutex
		// head is the highest position known to be committed: from the store's own commits,
		// notifications and polls.
		head uint64
		// changed is closed and replaced whenever head moves or a poll ran.
		changed chan struct{}
	}
}

// Open connects to the PostgreSQL database that connString names (a URL
// "postgres://user:password@host:5432/db?sslmode=disable" or a "host=… dbname=…" string, as
// pgx reads them), creates or migrates the store's schema, and returns the store. Migrations
// run in one transaction under an advisory lock, so that processes opening the same schema at
// once wait for each other; opening a schema that is up to date changes nothing.
//
// Errors: [ErrUnreachable] when no connection can be made (the message says what to check),
// [ErrReadOnly] when the database accepts no writes, [ErrSchemaTooNew] when the schema was
// migrated by a newer annals, [annals.ErrInvalidArgument] for bad options or a bad
// connection string.
func Open(ctx context.Context, connString string, opts *Options) (*Store, error) {
	o, err := opts.withDefaults()
	if err != nil {
		return nil, err
	}
	cfg, err := pgxpool.ParseConfig(connString)
	if err != nil {
		return nil, fmt.Errorf("%w: pgstore: connection string: %w", annals.ErrInvalidArgument, err)
	}
	cfg.MaxConns = o.MaxConns
	cfg.MinConns = o.MinConns
	cfg.MaxConnLifetime = o.MaxConnLifetime
	cfg.MaxConnIdleTime = o.MaxConnIdleTime
	if cfg.ConnConfig.ConnectTimeout == 0 {
		cfg.ConnConfig.ConnectTimeout = o.ConnectTimeout
	}
	params := cfg.ConnConfig.RuntimeParams
	if _, ok := params["application_name"]; !ok {
		params["application_name"] = "annals"
	}
	if o.StatementTimeout > 0 {
		params["statement_timeout"] = strconv.FormatInt(o.StatementTimeout.Milliseconds(), 10)
	} else {
		params["statement_timeout"] = "0"
	}
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("%w: pgstore: %w", annals.ErrInvalidArgument, err)
	}
	s := &Store{
		opts:        o,
		schema:      pgx.Identifier{o.Schema}.Sanitize(),
		channelName: "annals." + o.Schema,
		channel:     pgx.Identifier{"annals." + o.Schema}.Sanitize(),
		pool:        pool,
		closed:      make(chan struct{}),
		fences:      make(chan struct{}, max(1, o.MaxConns/2)),
	}
	s.sql = newQueries(s.schema)
	if err := s.prepare(ctx, cfg); err != nil {
		pool.Close()
		return nil, err
	}
	s.mu.changed = make(chan struct{})
	s.q.cond = sync.NewCond(&s.q.Mutex)
	s.ctx, s.cancel = context.WithCancel(context.Background())
	for range o.Writers {
		s.writers.Add(1)
		go s.writer()
	}
	lcfg := cfg.ConnConfig.Copy()
	lcfg.RuntimeParams["application_name"] = params["application_name"] + " listener"
	s.listener.Add(1)
	go s.listen(lcfg)
	return s, nil
}

// prepare checks the connection and the database, migrates the schema and reads the head.
func (s *Store) prepare(ctx context.Context, cfg *pgxpool.Config) error {
	conn, err := s.pool.Acquire(ctx)
	if err != nil {
		return connectError(cfg.ConnConfig, err)
	}
	defer conn.Release()
	var recovery bool
	var readOnly string
	if err := conn.QueryRow(ctx, "SELECT pg_is_in_recovery(), current_setting('transaction_read_only')").Scan(&recovery, &readOnly); err != nil {
		return connectError(cfg.ConnConfig, err)
	}
	version, err := s.schemaVersion(ctx, conn.Conn())
	if err != nil {
		return err
	}
	if version > SchemaVersion {
		return s.tooNew(version)
	}
	switch {
	case recovery:
		return fmt.Errorf("%w: %s is a standby in recovery: connect to the primary", ErrReadOnly, describeServer(cfg.ConnConfig))
	case readOnly == "on":
		return fmt.Errorf("%w: sessions on %s are read-only (default_transaction_read_only is on for this user or database): connect as a user that may write, or turn it off", ErrReadOnly, describeServer(cfg.ConnConfig))
	}
	if err := s.migrate(ctx, conn.Conn()); err != nil {
		return err
	}
	head, err := s.readHead(ctx)
	if err != nil {
		return fmt.Errorf("pgstore: read the log head: %w", err)
	}
	s.mu.head = head
	return nil
}

func (s *Store) tooNew(version int) error {
	return fmt.Errorf("%w: schema %s is at version %d, this build knows versions up to %d: upgrade annals, or open another schema", ErrSchemaTooNew, s.schema, version, SchemaVersion)
}

// schemaVersion returns the version of the store's schema, 0 when it has none yet.
func (s *Store) schemaVersion(ctx context.Context, conn *pgx.Conn) (int, error) {
	var exists bool
	err := conn.QueryRow(ctx, "SELECT to_regclass($1) IS NOT NULL", s.schema+".schema_migrations").Scan(&exists)
	if err != nil || !exists {
		return 0, wrapDB("read the schema version", err)
	}
	var v int
	err = conn.QueryRow(ctx, "SELECT coalesce(max(version), 0) FROM "+s.schema+".schema_migrations").Scan(&v)
	return v, wrapDB("read the schema version", err)
}

// migrate applies the missing migrations in one transaction, under a transaction-level
// advisory lock on the schema's name.
func (s *Store) migrate(ctx context.Context, conn *pgx.Conn) error {
	tx, err := conn.Begin(ctx)
	if err != nil {
		return wrapDB("migrate: begin", err)
	}
	defer tx.Rollback(ctx)
	h := fnv.New64a()
	h.Write([]byte("annals.pgstore:" + s.opts.Schema))
	if _, err := tx.Exec(ctx, "SELECT pg_advisory_xact_lock($1)", int64(h.Sum64())); err != nil {
		return wrapDB("migrate: lock", err)
	}
	stmts := []string{
		"CREATE SCHEMA IF NOT EXISTS " + s.schema,
		"CREATE TABLE IF NOT EXISTS " + s.schema + ".schema_migrations (version int PRIMARY KEY, name text NOT NULL, applied timestamptz NOT NULL DEFAULT now())",
	}
	for _, q := range stmts {
		if _, err := tx.Exec(ctx, q); err != nil {
			return wrapDB("migrate: create schema "+s.schema, err)
		}
	}
	var version int
	if err := tx.QueryRow(ctx, "SELECT coalesce(max(version), 0) FROM "+s.schema+".schema_migrations").Scan(&version); err != nil {
		return wrapDB("migrate: read the schema version", err)
	}
	if version > SchemaVersion {
		return s.tooNew(version)
	}
	for _, m := range migrations()[version:] {
		if _, err := tx.Exec(ctx, strings.ReplaceAll(m.sql, "{{schema}}", s.schema)); err != nil {
			return wrapDB("migrate: apply "+m.name, err)
		}
		if _, err := tx.Exec(ctx, "INSERT INTO "+s.schema+".schema_migrations (version, name) VALUES ($1, $2)", m.version, m.name); err != nil {
			return wrapDB("migrate: record "+m.name, err)
		}
	}
	return wrapDB("migrate: commit", tx.Commit(ctx))
}

func describeServer(c *pgx.ConnConfig) string {
	return fmt.Sprintf("PostgreSQL at %s (database %q, user %q)", net.JoinHostPort(c.Host, strconv.Itoa(int(c.Port))), c.Database, c.User)
}

// connectError explains a failure to connect.
func connectError(c *pgx.ConnConfig, err error) error {
	where := describeServer(c)
	if pgErr, ok := errors.AsType[*pgconn.PgError](err); ok {
		switch pgErr.Code {
		case "28P01", "28000":
			return fmt.Errorf("%w: %s refused the login: check the user and password in the connection string, and pg_hba.conf: %w", ErrUnreachable, where, err)
		case "3D000":
			return fmt.Errorf("%w: %s: the database does not exist: create it (createdb %s) or fix the connection string: %w", ErrUnreachable, where, c.Database, err)
		case "57P03":
			return fmt.Errorf("%w: %s is starting up or shutting down: retry shortly: %w", ErrUnreachable, where, err)
		}
		return fmt.Errorf("pgstore: %s: %w", where, err)
	}
	return fmt.Errorf("%w: cannot connect to %s: check that the server runs and listens there, the host and port, and the sslmode of the connection string: %w", ErrUnreachable, where, err)
}

// wrapDB wraps a database error with the operation, and explains the errors a user can act on.
// It returns nil for a nil err.
func wrapDB(op string, err error) error {
	if err == nil {
		return nil
	}
	if pgErr, ok := errors.AsType[*pgconn.PgError](err); ok {
		switch pgErr.Code {
		case "25006":
			return fmt.Errorf("%w: %s: the database refused a write (a standby, or default_transaction_read_only): %w", ErrReadOnly, op, err)
		case "57014":
			return fmt.Errorf("pgstore: %s: canceled by the server (statement_timeout, see Options.StatementTimeout): %w", op, err)
		case "42501":
			return fmt.Errorf("pgstore: %s: permission denied: grant the store's user the rights on its schema: %w", op, err)
		}
	}
	return fmt.Errorf("pgstore: %s: %w", op, err)
}

// Close stops the store: appends waiting for a writer fail with [annals.ErrClosed], appends
// already in a transaction finish, running subscriptions end with [annals.ErrClosed], and the
// connections are closed once the reads under way have returned them. It is safe to call more
// than once and always returns nil.
func (s *Store) Close() error {
	s.q.Lock()
	if s.q.closed {
		s.q.Unlock()
		s.writers.Wait()
		s.listener.Wait()
		return nil
	}
	s.q.closed = true
	pending := s.q.pending
	s.q.pending = nil
	s.q.cond.Broadcast()
	close(s.closed)
	s.q.Unlock()
	for _, r := range pending {
		r.finish(annals.AppendResult{}, annals.ErrClosed)
	}
	s.writers.Wait()
	s.cancel()
	s.listener.Wait()
	s.pool.Close()
	return nil
}

// isClosed reports whether Close was called.
func (s *Store) isClosed() bool {
	select {
	case <-s.closed:
		return true
	default:
		return false
	}
}

// begin returns ctx's error or [annals.ErrClosed] when an operation must not start.
func (s *Store) begin(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if s.isClosed() {
		return annals.ErrClosed
	}
	return nil
}

// fail returns the error to report for err, which an operation under ctx met: ctx's error
// when ctx is done, [annals.ErrClosed] after Close, else err wrapped with op.
func (s *Store) fail(ctx context.Context, op string, err error) error {
	if cerr := ctx.Err(); cerr != nil {
		return cerr
	}
	if s.isClosed() {
		return annals.ErrClosed
	}
	return wrapDB(op, err)
}

// Pool returns the store's connection pool, for queries on read models kept in the same
// database. Closing the store closes it.
func (s *Store) Pool() *pgxpool.Pool { return s.pool }

// Schema returns the schema that holds the store's tables (unquoted).
func (s *Store) Schema() string { return s.opts.Schema }

// readHead reads the position of the last committed event.
func (s *Store) readHead(ctx context.Context) (uint64, error) {
	var head int64
	err := s.pool.QueryRow(ctx, s.sql.head).Scan(&head)
	return uint64(head), err
}

// advance records that the log is committed up to head, and wakes the subscriptions when
// head moved or always is set.
func (s *Store) advance(head uint64, always bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if head <= s.mu.head && !always {
		return
	}
	s.mu.head = max(s.mu.head, head)
	close(s.mu.changed)
	s.mu.changed = make(chan struct{})
}

// watch returns the highest position known to be committed and a channel closed when that
// changes.
func (s *Store) watch() (uint64, <-chan struct{}) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.mu.head, s.mu.changed
}

// listen owns the store's listening connection: it LISTENs on the store's channel and moves
// the known head on each notification, reads the head itself every PollInterval when no
// notification came, and reconnects (with backoff) when the connection fails. It ends when
// the store's context is canceled.
func (s *Store) listen(cfg *pgx.ConnConfig) {
	defer s.listener.Done()
	backoff := 50 * time.Millisecond
	for s.ctx.Err() == nil {
		conn, err := pgx.ConnectConfig(s.ctx, cfg)
		if err == nil {
			_, err = conn.Exec(s.ctx, "LISTEN "+s.channel)
			if err == nil {
				backoff = 50 * time.Millisecond
				// Notifications were lost while no connection listened: look.
				s.poll(conn)
				s.follow(conn)
			}
			conn.Close(context.Background())
		}
		t := time.NewTimer(backoff)
		select {
		case <-t.C:
		case <-s.ctx.Done():
			t.Stop()
		}
		backoff = min(2*backoff, 5*time.Second)
	}
}

// follow waits for notifications on conn until it fails or the store's context ends.
func (s *Store) follow(conn *pgx.Conn) {
	for {
		ctx, cancel := context.WithTimeout(s.ctx, s.opts.PollInterval)
		n, err := conn.WaitForNotification(ctx)
		cancel()
		switch {
		case s.ctx.Err() != nil:
			return
		case err == nil:
			head, perr := strconv.ParseUint(n.Payload, 10, 64)
			if perr != nil {
				s.poll(conn)
				continue
			}
			s.advance(head, false)
		case pgconn.Timeout(err) && !conn.IsClosed():
			if !s.poll(conn) {
				return
			}
		default:
			return
		}
	}
}

// poll reads the head on conn and wakes every subscription, so that one that missed a
// notification looks again (a subscription queries only when the head passed what it has
// seen). It reports whether the query worked.
func (s *Store) poll(conn *pgx.Conn) bool {
	var head int64
	if err := conn.QueryRow(s.ctx, s.sql.head).Scan(&head); err != nil {
		return false
	}
	s.advance(uint64(head), true)
	return true
}
