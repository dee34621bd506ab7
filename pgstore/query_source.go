package pgstore

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"unicode/utf8"

	"github.com/annalsdb/annals"
	"github.com/annalsdb/annals/query"
	"github.com/jackc/pgx/v5"
)

// QueryTable is a ready-made read-model table for a projection kept by [Projections]: rows of
// V keyed by a text id, in each generation's schema, as
//
//	CREATE TABLE <generation schema>.<table> (id text COLLATE "C" PRIMARY KEY, value jsonb NOT NULL)
//
// The projection's handler writes it with Read, Put and Delete in the [ProjectionTx] it is
// given (so the rows commit with the checkpoint), [QueryTable.Setup] creates it in each new
// generation, and [QueryTable.Source] answers the query package from the active generation, a
// page (one SELECT … LIMIT) at a time. Values are V encoded with encoding/json; the jsonb
// column can be queried with SQL too (value->>'status'). PostgreSQL refuses strings holding
// the NUL character in jsonb: Put returns its error.
//
// A QueryTable is a plain value, safe for concurrent use.
type QueryTable[V any] struct {
	projection string
	table      string // quoted
}

// NewQueryTable returns the table named table of projection projection. It returns an error
// matching [annals.ErrInvalidArgument] for an empty projection name or one with a NUL byte,
// and for a table name that is not a plain lower-case SQL identifier ([a-z_][a-z0-9_]*, at
// most 63 bytes).
func NewQueryTable[V any](projection, table string) (*QueryTable[V], error) {
	if err := validProjection(projection); err != nil {
		return nil, fmt.Errorf("%w: %w", annals.ErrInvalidArgument, err)
	}
	if !plainIdentifier(table) {
		return nil, fmt.Errorf("%w: pgstore: table name %q: want [a-z_][a-z0-9_]*, at most 63 bytes", annals.ErrInvalidArgument, table)
	}
	return &QueryTable[V]{projection: projection, table: pgx.Identifier{table}.Sanitize()}, nil
}

func plainIdentifier(s string) bool {
	if s == "" || len(s) > 63 || s[0] >= '0' && s[0] <= '9' {
		return false
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '_') {
			return false
		}
	}
	return true
}

// Setup creates the table in a new generation of its projection (and does nothing for the
// generations of other projections): pass it as [ProjectionsOptions].Setup, or call it from
// yours. Errors are the database's.
func (t *QueryTable[V]) Setup(ctx context.Context, tx *ProjectionTx) error {
	if tx.Projection() != t.projection {
		return nil
	}
	_, err := tx.Tx.Exec(ctx, "CREATE TABLE "+tx.Schema()+"."+t.table+` (id text COLLATE "C" PRIMARY KEY, value jsonb NOT NULL)`)
	return err
}

// check refuses a transaction of another projection, and an id that PostgreSQL's text cannot
// hold or that is empty.
func (t *QueryTable[V]) check(tx *ProjectionTx, id string) error {
	if tx.Projection() != t.projection {
		return fmt.Errorf("%w: pgstore: table %s of projection %q written in a transaction of projection %q", annals.ErrInvalidArgument, t.table, t.projection, tx.Projection())
	}
	if id == "" || !utf8.ValidString(id) || strings.IndexByte(id, 0) >= 0 {
		return fmt.Errorf("%w: pgstore: table %s: id %q: want non-empty UTF-8 without NUL", annals.ErrInvalidArgument, t.table, id)
	}
	return nil
}

// Read returns row id as tx sees it (the handler's own writes included), and whether it
// exists. Errors: [annals.ErrInvalidArgument] (see Put), a row that does not decode as V, the
// database's.
func (t *QueryTable[V]) Read(ctx context.Context, tx *ProjectionTx, id string) (V, bool, error) {
	var v V
	if err := t.check(tx, id); err != nil {
		return v, false, err
	}
	var b []byte
	err := tx.Tx.QueryRow(ctx, "SELECT value FROM "+tx.Schema()+"."+t.table+" WHERE id = $1", id).Scan(&b)
	if errors.Is(err, pgx.ErrNoRows) {
		return v, false, nil
	}
	if err != nil {
		return v, false, err
	}
	if err := json.Unmarshal(b, &v); err != nil {
		return v, false, fmt.Errorf("%w: pgstore: table %s row %q: %w", annals.ErrCorrupt, t.table, id, err)
	}
	return v, true, nil
}

// Put writes row id in tx. Errors: [annals.ErrInvalidArgument] for a transaction of another
// projection, or an id that is empty, not UTF-8 or holds a NUL byte; v's encoding's; the
// database's.
func (t *QueryTable[V]) Put(ctx context.Context, tx *ProjectionTx, id string, v V) error {
	if err := t.check(tx, id); err != nil {
		return err
	}
	b, err := json.Marshal(v)
	if err != nil {
		return fmt.Errorf("pgstore: table %s row %q: %w", t.table, id, err)
	}
	_, err = tx.Tx.Exec(ctx, "INSERT INTO "+tx.Schema()+"."+t.table+" (id, value) VALUES ($1, $2) ON CONFLICT (id) DO UPDATE SET value = excluded.value", id, string(b))
	return err
}

// Delete removes row id in tx (nothing happens when it does not exist). Errors: as Put's.
func (t *QueryTable[V]) Delete(ctx context.Context, tx *ProjectionTx, id string) error {
	if err := t.check(tx, id); err != nil {
		return err
	}
	_, err := tx.Tx.Exec(ctx, "DELETE FROM "+tx.Schema()+"."+t.table+" WHERE id = $1", id)
	return err
}

// Source returns the query.Source of the table's rows in the active generation of its
// projection in p (see [Projections.Read]), read through the pool of p's store. For
// read-your-writes, give the query.Handler the projection's runner. Each Get or Scan is one
// statement, so a page is a consistent view of the generation active when it ran.
func (t *QueryTable[V]) Source(p *Projections) query.Source[V] {
	return &tableSource[V]{t: t, p: p}
}

type tableSource[V any] struct {
	t *QueryTable[V]
	p *Projections
}

// Get implements query.Source. Errors: [annals.ErrCorrupt] for a row that does not decode as
// V, ctx's, [annals.ErrClosed], the database's.
func (s *tableSource[V]) Get(ctx context.Context, key string) (V, bool, error) {
	var v V
	var b []byte
	found := false
	err := s.p.Read(ctx, s.t.projection, func(schema string) error {
		err := s.p.s.pool.QueryRow(ctx, "SELECT value FROM "+schema+"."+s.t.table+" WHERE id = $1", key).Scan(&b)
		if errors.Is(err, pgx.ErrNoRows) {
			return nil
		}
		found = err == nil
		return err
	})
	if err != nil {
		return v, false, s.p.s.fail(ctx, "read "+s.t.projection+" "+s.t.table, err)
	}
	if !found {
		return v, false, nil
	}
	if err := json.Unmarshal(b, &v); err != nil {
		return v, false, fmt.Errorf("%w: pgstore: table %s row %q: %w", annals.ErrCorrupt, s.t.table, key, err)
	}
	return v, true, nil
}

// Scan implements query.Source: one SELECT of the page's rows and one more, by the primary
// key. Errors: [query.ErrInvalid] for a bad limit, [annals.ErrCorrupt], ctx's,
// [annals.ErrClosed], the database's.
func (s *tableSource[V]) Scan(ctx context.Context, opts query.ScanOptions) (query.ScanPage[V], error) {
	limit, err := opts.PageSize()
	if err != nil {
		return query.ScanPage[V]{}, err
	}
	var items []query.Item[V]
	err = s.p.Read(ctx, s.t.projection, func(schema string) error {
		items = items[:0]
		rows, err := s.p.s.pool.Query(ctx, "SELECT id, value FROM "+schema+"."+s.t.table+`
			WHERE id >= $1 AND starts_with(id, $1) AND id > $2 ORDER BY id LIMIT $3`, opts.Prefix, opts.After, limit+1)
		if err != nil {
			return err
		}
		var id string
		var b []byte
		_, err = pgx.ForEachRow(rows, []any{&id, &b}, func() error {
			var v V
			if err := json.Unmarshal(b, &v); err != nil {
				return fmt.Errorf("%w: pgstore: table %s row %q: %w", annals.ErrCorrupt, s.t.table, id, err)
			}
			items = append(items, query.Item[V]{ID: id, Value: v})
			return nil
		})
		return err
	})
	if err != nil {
		if errors.Is(err, annals.ErrCorrupt) {
			return query.ScanPage[V]{}, err
		}
		return query.ScanPage[V]{}, s.p.s.fail(ctx, "scan "+s.t.projection+" "+s.t.table, err)
	}
	return query.NewScanPage(items, limit), nil
}
