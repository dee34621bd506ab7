package cartview

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/annalsdb/annals"
	"github.com/annalsdb/annals/codec"
	"github.com/annalsdb/annals/examples/shop/cart"
	"github.com/annalsdb/annals/pgstore"
	"github.com/annalsdb/annals/projection"
	"github.com/annalsdb/annals/query"
	"github.com/jackc/pgx/v5"
)

// pgCarts creates the table of one generation of the view: a plain SQL table, one row per
// cart, that other tools can query too (SELECT id, status, total FROM … WHERE status = 'paid').
const pgCarts = `CREATE TABLE %[1]s.carts (
    id       text COLLATE "C" PRIMARY KEY,
    status   text NOT NULL,
    lines    jsonb NOT NULL,
    total    bigint NOT NULL,
    items    int NOT NULL,
    reason   text NOT NULL,
    revision bigint NOT NULL
);
CREATE INDEX ON %[1]s.carts (status)`

const pgColumns = "id, status, lines, total, items, reason, revision"

// PostgresView is the same read model as [View], kept in the PostgreSQL database of a
// pgstore.Store: a carts table per generation of the projection, written in the transaction
// that moves the projection's checkpoint (exactly-once, like [View]). It is a query.Source, so
// [PostgresView.Queries] answers the same queries.
type PostgresView struct {
	reg   *codec.Registry
	s     *pgstore.Store
	store *pgstore.Projections
}

// NewPostgres returns the read model kept in the database of s, decoding events with reg.
// Run its [PostgresView.Projection] with a projection.Runner over [PostgresView.Store].
func NewPostgres(s *pgstore.Store, reg *codec.Registry) *PostgresView {
	v := &PostgresView{reg: reg, s: s}
	v.store = pgstore.NewProjections(s, &pgstore.ProjectionsOptions{
		Setup: func(ctx context.Context, tx *pgstore.ProjectionTx) error {
			_, err := tx.Tx.Exec(ctx, fmt.Sprintf(pgCarts, tx.Schema()))
			return err
		},
	})
	return v
}

// Store returns the projection store that holds the view: the runner's target.
func (v *PostgresView) Store() *pgstore.Projections { return v.store }

// Projection returns the projection that keeps the view up to date.
func (v *PostgresView) Projection() projection.Projection[*pgstore.ProjectionTx] {
	return projection.Projection[*pgstore.ProjectionTx]{
		Name:   Name,
		Filter: &annals.Filter{Categories: []string{"cart"}},
		Handle: v.handle,
	}
}

func (v *PostgresView) handle(ctx context.Context, tx *pgstore.ProjectionTx, ev annals.RecordedEvent) error {
	get := func(id string) (CartView, bool, error) {
		row, err := scanRow(tx.Tx.QueryRow(ctx, "SELECT "+pgColumns+" FROM "+tx.Schema()+".carts WHERE id = $1", id))
		if errors.Is(err, pgx.ErrNoRows) {
			return CartView{}, false, nil
		}
		return row, err == nil, err
	}
	put := func(id string, row CartView) error {
		lines, err := json.Marshal(row.Lines)
		if err != nil {
			return err
		}
		_, err = tx.Tx.Exec(ctx, "INSERT INTO "+tx.Schema()+".carts ("+pgColumns+`) VALUES ($1, $2, $3, $4, $5, $6, $7)
			ON CONFLICT (id) DO UPDATE SET status = excluded.status, lines = excluded.lines, total = excluded.total,
			items = excluded.items, reason = excluded.reason, revision = excluded.revision`,
			id, string(row.Status), lines, row.Total, row.Items, row.Reason, int64(row.Revision))
		return err
	}
	return update(v.reg, ev, get, put)
}

func scanRow(row pgx.Row) (CartView, error) {
	var v CartView
	var status string
	var lines []byte
	var rev int64
	if err := row.Scan(&v.ID, &status, &lines, &v.Total, &v.Items, &v.Reason, &rev); err != nil {
		return v, err
	}
	v.Status, v.Revision = cart.Status(status), uint64(rev)
	if err := json.Unmarshal(lines, &v.Lines); err != nil {
		return v, fmt.Errorf("cart view: lines of %q: %w", v.ID, err)
	}
	return v, nil
}

// Queries returns the view's query handler. A query given a position waits until w (the
// runner of the view's projection) has applied it: read-your-writes.
func (v *PostgresView) Queries(w query.Waiter) *query.Handler[CartView] {
	return query.New[CartView](v, &query.HandlerOptions{Runner: w})
}

// Get implements query.Source: the row of cart id in the active generation.
func (v *PostgresView) Get(ctx context.Context, id string) (CartView, bool, error) {
	var row CartView
	var found bool
	err := v.store.Read(ctx, Name, func(schema string) error {
		var err error
		row, err = scanRow(v.s.Pool().QueryRow(ctx, "SELECT "+pgColumns+" FROM "+schema+".carts WHERE id = $1", id))
		found = err == nil
		if errors.Is(err, pgx.ErrNoRows) {
			return nil
		}
		return err
	})
	return row, found, err
}

// Scan implements query.Source: a page of the carts of the active generation whose id starts
// with opts.Prefix and comes after opts.After, in id order, read with one SELECT … LIMIT.
func (v *PostgresView) Scan(ctx context.Context, opts query.ScanOptions) (query.ScanPage[CartView], error) {
	limit, err := opts.PageSize()
	if err != nil {
		return query.ScanPage[CartView]{}, err
	}
	var items []query.Item[CartView]
	err = v.store.Read(ctx, Name, func(schema string) error {
		items = items[:0]
		rows, err := v.s.Pool().Query(ctx, "SELECT "+pgColumns+" FROM "+schema+`.carts
			WHERE id >= $1 AND starts_with(id, $1) AND id > $2 ORDER BY id LIMIT $3`, opts.Prefix, opts.After, limit+1)
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			row, err := scanRow(rows)
			if err != nil {
				return err
			}
			items = append(items, query.Item[CartView]{ID: row.ID, Value: row})
		}
		return rows.Err()
	})
	if err != nil {
		return query.ScanPage[CartView]{}, err
	}
	return query.NewScanPage(items, limit), nil
}
