// Package cartview is the shop's cart read model: one row per cart with its lines, total and
// status, kept up to date from the cart events by a projection, and answered by typed
// queries. The projection writes its rows and its checkpoint in one transaction, of the
// embedded store's side tables (package tables, [View]) or of the PostgreSQL database that
// also holds the events ([PostgresView]), so every event counts exactly once, across crashes
// and restarts.
package cartview

import (
	"context"
	"fmt"
	"slices"
	"strings"

	"github.com/annalsdb/annals"
	"github.com/annalsdb/annals/codec"
	"github.com/annalsdb/annals/examples/shop/cart"
	"github.com/annalsdb/annals/projection"
	"github.com/annalsdb/annals/query"
	"github.com/annalsdb/annals/tables"
)

// Name is the projection's name.
const Name = "cartview"

// CartView is a cart as the shop's pages show it.
type CartView struct {
	ID     string      `json:"id"`
	Status cart.Status `json:"status"`
	Lines  []cart.Line `json:"lines"` // in SKU order
	Total  int64       `json:"total"` // in cents: the lines' sum while open, the order's total once placed
	Items  int         `json:"items"` // units in the cart
	// Reason says why an order was rejected or cancelled.
	Reason string `json:"reason,omitempty"`
	// Revision is that of the cart's last event the row reflects.
	Revision uint64 `json:"revision"`
}

// View is the read model: its table, its projection and its queries.
type View struct {
	reg   *codec.Registry
	table *tables.Table[CartView]
}

// New returns the read model kept in db, decoding events with reg. Run its [View.Projection]
// with a projection.Runner and ask its [View.Queries].
func New(db *tables.DB, reg *codec.Registry) (*View, error) {
	t, err := tables.NewTable[CartView](db, Name, "carts")
	if err != nil {
		return nil, err
	}
	return &View{reg: reg, table: t}, nil
}

// Queries returns the view's query handler. A query given a position waits until w (the
// runner of the view's projection) has applied it: read-your-writes.
func (v *View) Queries(w query.Waiter) *query.Handler[CartView] {
	return query.New(query.FromScanner[CartView](v.table), &query.HandlerOptions{Runner: w})
}

// Projection returns the projection that keeps the view up to date.
func (v *View) Projection() projection.Projection[*tables.Tx] {
	return projection.Projection[*tables.Tx]{
		Name:   Name,
		Filter: &annals.Filter{Categories: []string{"cart"}},
		Handle: v.handle,
	}
}

func (v *View) handle(_ context.Context, tx *tables.Tx, ev annals.RecordedEvent) error {
	return update(v.reg, ev, func(id string) (CartView, bool, error) { return v.table.Read(tx, id) },
		func(id string, row CartView) error { return v.table.Put(tx, id, row) })
}

// MemoryProjection returns the same view kept in a map by cart id, for a projection.Memory
// (a process that rebuilds its read model on start, or a test with testkit.ForProjection).
func MemoryProjection(reg *codec.Registry) projection.Projection[map[string]CartView] {
	return projection.Projection[map[string]CartView]{
		Name:   Name,
		Filter: &annals.Filter{Categories: []string{"cart"}},
		Handle: func(_ context.Context, rows map[string]CartView, ev annals.RecordedEvent) error {
			return update(reg, ev, func(id string) (CartView, bool, error) { row, ok := rows[id]; return row, ok, nil },
				func(id string, row CartView) error { rows[id] = row; return nil })
		},
	}
}

// update applies ev to the row of its cart, read with get and written with put.
func update(reg *codec.Registry, ev annals.RecordedEvent, get func(id string) (CartView, bool, error), put func(id string, row CartView) error) error {
	id, ok := cart.ID(ev.Stream)
	if !ok {
		return nil
	}
	e, _, err := codec.Decode[cart.Event](reg, ev)
	if err != nil {
		return fmt.Errorf("cart view: %w", err)
	}
	row, found, err := get(id)
	if err != nil {
		return err
	}
	if !found {
		row = CartView{ID: id, Status: cart.Open}
	}
	row = apply(row, e)
	row.Revision = ev.Revision
	return put(id, row)
}

// apply returns the row after e.
func apply(row CartView, e cart.Event) CartView {
	row.Lines = slices.Clone(row.Lines)
	switch e := e.(type) {
	case cart.ItemAdded:
		i := slices.IndexFunc(row.Lines, func(l cart.Line) bool { return l.SKU == e.SKU })
		if i < 0 {
			row.Lines = append(row.Lines, cart.Line{SKU: e.SKU})
			i = len(row.Lines) - 1
		}
		row.Lines[i].Qty += e.Qty
		row.Lines[i].UnitPrice = e.UnitPrice
	case cart.ItemRemoved:
		if i := slices.IndexFunc(row.Lines, func(l cart.Line) bool { return l.SKU == e.SKU }); i >= 0 {
			if row.Lines[i].Qty -= e.Qty; row.Lines[i].Qty <= 0 {
				row.Lines = slices.Delete(row.Lines, i, i+1)
			}
		}
	case cart.OrderPlaced:
		row.Status, row.Lines = cart.Placed, slices.Clone(e.Lines)
	case cart.OrderConfirmed:
		row.Status = cart.Confirmed
	case cart.OrderRejected:
		row.Status, row.Reason = cart.Rejected, e.Reason
	case cart.OrderPaid:
		row.Status = cart.Paid
	case cart.OrderCancelled:
		row.Status, row.Reason = cart.Cancelled, e.Reason
	}
	slices.SortFunc(row.Lines, func(a, b cart.Line) int { return strings.Compare(a.SKU, b.SKU) })
	row.Total, row.Items = 0, 0
	for _, l := range row.Lines {
		row.Total += int64(l.Qty) * l.UnitPrice
		row.Items += l.Qty
	}
	return row
}

// ByStatus is a filter for GetAll: the carts in one of the statuses.
func ByStatus(statuses ...cart.Status) func(id string, v CartView) bool {
	return func(_ string, v CartView) bool { return slices.Contains(statuses, v.Status) }
}
