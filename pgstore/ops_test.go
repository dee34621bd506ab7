package pgstore_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/annalsdb/annals"
	"github.com/annalsdb/annals/pgstore"
	"github.com/jackc/pgx/v5"
)

// rawConn returns a connection of the test's own, outside any store.
func rawConn(t *testing.T) *pgx.Conn {
	t.Helper()
	conn, err := pgx.Connect(t.Context(), testDatabase(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close(context.Background()) })
	return conn
}

func mustAppend(t *testing.T, s annals.Store, stream string, n int) annals.AppendResult {
	t.Helper()
	evs := make([]annals.Event, n)
	for i := range evs {
		evs[i] = annals.Event{Type: "E", Data: []byte(`{}`)}
	}
	res, err := s.Append(t.Context(), stream, annals.Any, evs...)
	if err != nil {
		t.Fatalf("Append(%q): %v", stream, err)
	}
	return res
}

func TestOpenConcurrentlyMigratesOnce(t *testing.T) {
	url, schema := testDatabase(t), newSchema(t)
	const n = 6
	stores := make([]*pgstore.Store, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			stores[i], errs[i] = pgstore.Open(t.Context(), url, &pgstore.Options{Schema: schema, MaxConns: 2})
		})
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("Open %d: %v", i, err)
		}
		t.Cleanup(func() { stores[i].Close() })
	}
	var count, max int
	err := rawConn(t).QueryRow(t.Context(), "SELECT count(*), max(version) FROM "+pgx.Identifier{schema}.Sanitize()+".schema_migrations").Scan(&count, &max)
	if err != nil {
		t.Fatal(err)
	}
	if count != pgstore.SchemaVersion || max != pgstore.SchemaVersion {
		t.Errorf("schema_migrations: %d rows up to version %d, want %d rows up to %d", count, max, pgstore.SchemaVersion, pgstore.SchemaVersion)
	}
	// All the stores share the log.
	res := mustAppend(t, stores[0], "shared-1", 2)
	for i, s := range stores {
		for e, err := range s.ReadAll(t.Context(), &annals.ReadOptions{From: res.Position}) {
			if err != nil || e.Stream != "shared-1" {
				t.Errorf("store %d: ReadAll: got (%v, %v), want the event appended through store 0", i, e.Stream, err)
			}
		}
	}
}

func TestReopenKeepsTheLog(t *testing.T) {
	url, schema := testDatabase(t), newSchema(t)
	s, err := pgstore.Open(t.Context(), url, &pgstore.Options{Schema: schema})
	if err != nil {
		t.Fatal(err)
	}
	mustAppend(t, s, "keep-1", 3)
	s.Close()
	s, err = pgstore.Open(t.Context(), url, &pgstore.Options{Schema: schema})
	if err != nil {
		t.Fatalf("second Open: %v", err)
	}
	defer s.Close()
	if res := mustAppend(t, s, "keep-1", 1); res.Revision != 3 || res.Position != 4 {
		t.Errorf("Append after reopening: got %+v, want revision 3 at position 4", res)
	}
}

func TestOpenSchemaTooNew(t *testing.T) {
	url, schema := testDatabase(t), newSchema(t)
	s, err := pgstore.Open(t.Context(), url, &pgstore.Options{Schema: schema})
	if err != nil {
		t.Fatal(err)
	}
	s.Close()
	_, err = rawConn(t).Exec(t.Context(), "INSERT INTO "+pgx.Identifier{schema}.Sanitize()+".schema_migrations (version, name) VALUES ($1, 'from the future')", pgstore.SchemaVersion+1)
	if err != nil {
		t.Fatal(err)
	}
	_, err = pgstore.Open(t.Context(), url, &pgstore.Options{Schema: schema})
	if !errors.Is(err, pgstore.ErrSchemaTooNew) || !strings.Contains(err.Error(), "upgrade annals") {
		t.Errorf("Open of a schema at version %d: got %v, want ErrSchemaTooNew saying to upgrade", pgstore.SchemaVersion+1, err)
	}
}

func TestOpenUnreachable(t *testing.T) {
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()
	_, err := pgstore.Open(ctx, "postgres://postgres@127.0.0.1:1/test?sslmode=disable&connect_timeout=3", nil)
	if !errors.Is(err, pgstore.ErrUnreachable) || !strings.Contains(err.Error(), "check that the server runs") {
		t.Errorf("Open on a port nobody listens on: got %v, want ErrUnreachable saying what to check", err)
	}
	if url := testDatabase(t); true {
		cfg, err := pgx.ParseConfig(url)
		if err != nil {
			t.Fatal(err)
		}
		bad := fmt.Sprintf("postgres://%s@%s:%d/no_such_database_here?sslmode=disable", cfg.User, cfg.Host, cfg.Port)
		_, err = pgstore.Open(ctx, bad, nil)
		if !errors.Is(err, pgstore.ErrUnreachable) || !strings.Contains(err.Error(), "does not exist") {
			t.Errorf("Open of a missing database: got %v, want ErrUnreachable saying it does not exist", err)
		}
	}
}

func TestOpenReadOnly(t *testing.T) {
	url, schema := testDatabase(t), newSchema(t)
	sep := "?"
	if strings.Contains(url, "?") {
		sep = "&"
	}
	_, err := pgstore.Open(t.Context(), url+sep+"options=-c%20default_transaction_read_only%3Don", &pgstore.Options{Schema: schema})
	if !errors.Is(err, pgstore.ErrReadOnly) || !strings.Contains(err.Error(), "default_transaction_read_only") {
		t.Errorf("Open on a read-only session: got %v, want ErrReadOnly naming default_transaction_read_only", err)
	}
}

func TestStatementTimeout(t *testing.T) {
	s := openStore(t, &pgstore.Options{StatementTimeout: 200 * time.Millisecond})
	mustAppend(t, s, "to-1", 1)
	conn := rawConn(t)
	tx, err := conn.Begin(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tx.Exec(t.Context(), "SELECT position FROM "+pgx.Identifier{s.Schema()}.Sanitize()+".log_head FOR UPDATE"); err != nil {
		t.Fatal(err)
	}
	_, err = s.Append(t.Context(), "to-1", annals.Any, annals.Event{Type: "E"})
	if err == nil || !strings.Contains(err.Error(), "statement_timeout") {
		t.Errorf("Append while the head is locked: got %v, want a statement timeout", err)
	}
	tx.Rollback(t.Context())
	if res := mustAppend(t, s, "to-1", 1); res.Revision != 1 {
		t.Errorf("Append after the lock is gone: got revision %d, want 1 (the timed-out append wrote nothing)", res.Revision)
	}
}

// TestNotifyAcrossStores checks that a subscription wakes for an append made through another
// Store (another process, as far as it knows) by NOTIFY alone: polling is set to an hour.
func TestNotifyAcrossStores(t *testing.T) {
	url, schema := testDatabase(t), newSchema(t)
	open := func() *pgstore.Store {
		s, err := pgstore.Open(t.Context(), url, &pgstore.Options{Schema: schema, PollInterval: time.Hour})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { s.Close() })
		return s
	}
	a, b := open(), open()
	ctx, cancel := context.WithTimeout(t.Context(), 15*time.Second)
	defer cancel()
	got := make(chan annals.RecordedEvent)
	done := make(chan struct{})
	go func() {
		defer close(done)
		for e, err := range b.SubscribeAll(ctx, nil) {
			if err != nil {
				return
			}
			select {
			case got <- e:
			case <-ctx.Done():
				return
			}
		}
	}()
	defer func() { cancel(); <-done }()
	for i := range 3 {
		res := mustAppend(t, a, "cross-1", 1)
		select {
		case e := <-got:
			if e.Position != res.Position {
				t.Fatalf("append %d: subscription on the other store got position %d, want %d", i, e.Position, res.Position)
			}
		case <-ctx.Done():
			t.Fatalf("append %d: the other store's subscription did not wake", i)
		}
	}
}

// TestListenerReconnects kills the store's listening connection and checks that a
// subscription still gets the next append (the listener reconnects and looks at the head).
func TestListenerReconnects(t *testing.T) {
	url, schema := testDatabase(t), newSchema(t)
	a, err := pgstore.Open(t.Context(), url, &pgstore.Options{Schema: schema})
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	b, err := pgstore.Open(t.Context(), url, &pgstore.Options{Schema: schema, PollInterval: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	conn := rawConn(t)
	ctx, cancel := context.WithTimeout(t.Context(), 15*time.Second)
	defer cancel()
	killed := 0
	for killed == 0 && ctx.Err() == nil {
		err := conn.QueryRow(ctx, `SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity
			WHERE application_name = 'annals listener' AND query LIKE '%'||$1||'%'`, schema).Scan(&killed)
		if err != nil {
			t.Fatal(err)
		}
	}
	if killed == 0 {
		t.Fatal("found no listener connection to kill")
	}
	next := make(chan annals.RecordedEvent, 1)
	done := make(chan struct{})
	go func() {
		defer close(done)
		for e, err := range b.SubscribeAll(ctx, &annals.SubscribeOptions{From: annals.End}) {
			if err == nil {
				next <- e
			}
			return
		}
	}()
	defer func() { cancel(); <-done }()
	// Append through the other store until b's subscription sees one: its own commits do
	// not wake it, only its listener can.
	for {
		res := mustAppend(t, a, "reconnect-1", 1)
		select {
		case e := <-next:
			if e.Position > res.Position {
				t.Fatalf("got position %d, after the last append (%d)", e.Position, res.Position)
			}
			return
		case <-time.After(100 * time.Millisecond):
		case <-ctx.Done():
			t.Fatal("the subscription did not wake after the listener connection was killed")
		}
	}
}

func TestCheck(t *testing.T) {
	ctx := t.Context()
	filled := func(t *testing.T) (*pgstore.Store, string) {
		s := openStore(t, nil)
		mustAppend(t, s, "chk-1", 3)
		mustAppend(t, s, "chk-2", 2)
		if _, err := s.SetMetadata(ctx, "chk-1", annals.Any, annals.StreamMetadata{MaxCount: 2}); err != nil {
			t.Fatal(err)
		}
		if _, err := s.Delete(ctx, "chk-2", annals.Any); err != nil {
			t.Fatal(err)
		}
		return s, pgx.Identifier{s.Schema()}.Sanitize()
	}
	s, _ := filled(t)
	rep, err := s.Check(ctx)
	if err != nil {
		t.Fatalf("Check of a sound store: %v", err)
	}
	if want := (pgstore.CheckReport{Schema: s.Schema(), SchemaVersion: pgstore.SchemaVersion, Events: 7, LastPosition: 7, Streams: 4}); rep != want {
		t.Errorf("Check: got %+v, want %+v", rep, want)
	}
	for name, damage := range map[string]string{
		"Gap":          "DELETE FROM %s.events WHERE position = 2",
		"Revision":     "UPDATE %s.events SET revision = 5 WHERE position = 4",
		"Head":         "UPDATE %s.log_head SET position = 9",
		"StreamRow":    "UPDATE %s.streams SET next_revision = 7 WHERE stream = 'chk-1'",
		"LastID":       "UPDATE %s.streams SET last_id = gen_random_uuid() WHERE stream = 'chk-2'",
		"Time":         "UPDATE %s.events SET time = time - interval '1 hour' WHERE position = 5",
		"MetadataRef":  "UPDATE %s.streams SET meta_revision = 3 WHERE stream = 'chk-1'",
		"MetadataType": "UPDATE %s.streams SET meta_revision = 0 WHERE stream = 'chk-2'",
	} {
		t.Run(name, func(t *testing.T) {
			s, schema := filled(t)
			sql := fmt.Sprintf(damage, schema)
			if _, err := rawConn(t).Exec(ctx, sql); err != nil {
				t.Fatal(err)
			}
			if _, err := s.Check(ctx); !errors.Is(err, annals.ErrCorrupt) {
				t.Errorf("Check after %q: got %v, want ErrCorrupt", sql, err)
			}
		})
	}
}

func TestProject(t *testing.T) {
	s := openStore(t, nil)
	ctx := t.Context()
	table := pgx.Identifier{s.Schema(), "cart_totals"}.Sanitize()
	if _, err := s.Pool().Exec(ctx, "CREATE TABLE "+table+" (cart text PRIMARY KEY, items int NOT NULL)"); err != nil {
		t.Fatal(err)
	}
	add := func(ctx context.Context, tx pgx.Tx) error {
		_, err := tx.Exec(ctx, "INSERT INTO "+table+" VALUES ('c-1', 1) ON CONFLICT (cart) DO UPDATE SET items = "+table+".items + 1")
		return err
	}
	items := func() int {
		var n int
		if err := s.Pool().QueryRow(ctx, "SELECT coalesce(sum(items), 0) FROM "+table).Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}
	if _, ok, err := s.Checkpoint(ctx, "totals"); err != nil || ok {
		t.Fatalf("Checkpoint before any: got (%v, %v), want none", ok, err)
	}
	for _, step := range []struct {
		pos       uint64
		applyErr  error
		wantOK    bool
		wantErr   error
		wantItems int
		wantCP    uint64
	}{
		{pos: 1, wantOK: true, wantItems: 1, wantCP: 1},
		{pos: 1, wantOK: false, wantItems: 1, wantCP: 1}, // redelivered: not applied again
		{pos: 3, wantOK: true, wantItems: 2, wantCP: 3},
		{pos: 2, wantOK: false, wantItems: 2, wantCP: 3},
		{pos: 4, applyErr: errors.New("boom"), wantErr: errors.New("boom"), wantItems: 2, wantCP: 3}, // rolled back together
		{pos: 4, wantOK: true, wantItems: 3, wantCP: 4},
	} {
		ok, err := s.Project(ctx, "totals", step.pos, func(ctx context.Context, tx pgx.Tx) error {
			if err := add(ctx, tx); err != nil {
				return err
			}
			return step.applyErr
		})
		if (err == nil) != (step.wantErr == nil) || ok != step.wantOK {
			t.Errorf("Project(%d): got (%v, %v), want (%v, %v)", step.pos, ok, err, step.wantOK, step.wantErr)
		}
		cp, _, err := s.Checkpoint(ctx, "totals")
		if got := items(); err != nil || got != step.wantItems || cp != step.wantCP {
			t.Errorf("after Project(%d): %d items, checkpoint %d (%v); want %d items, checkpoint %d", step.pos, got, cp, err, step.wantItems, step.wantCP)
		}
	}
}
