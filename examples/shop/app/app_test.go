package app_test

import (
	"context"
	"errors"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/annalsdb/annals"
	"github.com/annalsdb/annals/codec"
	"github.com/annalsdb/annals/decider"
	"github.com/annalsdb/annals/examples/shop/app"
	"github.com/annalsdb/annals/examples/shop/cart"
	"github.com/annalsdb/annals/examples/shop/cartview"
	"github.com/annalsdb/annals/examples/shop/inventory"
	"github.com/annalsdb/annals/filestore"
	"github.com/annalsdb/annals/internal/teststores"
	"github.com/annalsdb/annals/internal/testwait"
	"github.com/annalsdb/annals/memstore"
	"github.com/annalsdb/annals/pgstore"
	"github.com/annalsdb/annals/query"
	"github.com/annalsdb/annals/tables"
)

type env struct {
	t     *testing.T
	store annals.Store
	db    *tables.DB
	pg    *pgstore.Store // the read models' database, when not db
}

// forEachStore runs fn with the shop's event store on memstore and on filestore, with the read
// models in tables, and on pgstore, with the read models in the same PostgreSQL database.
func forEachStore(t *testing.T, fn func(t *testing.T, e *env)) {
	for _, name := range []string{"memstore", "filestore", "pgstore"} {
		t.Run(name, func(t *testing.T) {
			e := &env{t: t}
			switch name {
			case "memstore":
				e.store = memstore.New(nil)
			case "filestore":
				s, err := filestore.Open(t.TempDir(), nil)
				if err != nil {
					t.Fatal(err)
				}
				e.store = s
			case "pgstore":
				e.pg = teststores.Postgres(t, nil)
				e.store = e.pg
				fn(t, e)
				return
			}
			t.Cleanup(func() { e.store.Close() })
			db, err := tables.Open(filepath.Join(t.TempDir(), "tables"), nil)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { db.Close() })
			e.db = db
			fn(t, e)
		})
	}
}

func (e *env) app(window time.Duration) *app.App {
	a, err := app.New(e.store, e.db, &app.Options{PaymentWindow: window, Postgres: e.pg})
	if err != nil {
		e.t.Fatal(err)
	}
	a.Start()
	e.t.Cleanup(func() { a.Stop() })
	return a
}

func ctx(t *testing.T) context.Context {
	c, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return c
}

func do[S, C, E any](t *testing.T, h *decider.Handler[S, C, E], stream string, cmd C) decider.Result[E] {
	t.Helper()
	res, err := h.Handle(ctx(t), stream, cmd, nil)
	if err != nil {
		t.Fatalf("%s %T: %v", stream, cmd, err)
	}
	return res
}

func view(t *testing.T, a *app.App, id string, position uint64) cartview.CartView {
	t.Helper()
	v, err := a.CartQueries().GetByID(ctx(t), id, &query.Options{Position: position})
	if err != nil {
		t.Fatalf("cart view %q: %v", id, err)
	}
	return v
}

func stock(t *testing.T, a *app.App, sku string) inventory.State {
	t.Helper()
	st, err := a.Inventory.Load(ctx(t), inventory.Stream(sku), nil)
	if err != nil {
		t.Fatal(err)
	}
	return st.Value
}

func settle(t *testing.T, a *app.App) {
	t.Helper()
	if err := a.Settle(ctx(t)); err != nil {
		t.Fatal(errors.Join(err, a.Stop()))
	}
}

// TestOrders takes three orders through the shop: paid, rejected, and cancelled when the
// payment window expires.
func TestOrders(t *testing.T) {
	forEachStore(t, func(t *testing.T, e *env) {
		a := e.app(3 * time.Second) // long enough for alice to pay on a loaded machine
		do(t, a.Inventory, inventory.Stream("apple"), inventory.Command(inventory.Restock{Qty: 10}))
		do(t, a.Inventory, inventory.Stream("pear"), inventory.Command(inventory.Restock{Qty: 1}))

		do(t, a.Carts, cart.Stream("alice"), cart.Command(cart.AddItem{SKU: "apple", Qty: 2, UnitPrice: 50}))
		do(t, a.Carts, cart.Stream("alice"), cart.Command(cart.AddItem{SKU: "pear", Qty: 1, UnitPrice: 80}))
		res := do(t, a.Carts, cart.Stream("alice"), cart.Command(cart.PlaceOrder{}))
		// Read-your-writes: the view has the order (the process may have confirmed it already).
		if v := view(t, a, "alice", res.Position); v.Status == cart.Open || v.Total != 180 {
			t.Errorf("alice's view right after PlaceOrder: %+v, want placed with total 180", v)
		}
		settle(t, a)
		if v := view(t, a, "alice", 0); v.Status != cart.Confirmed {
			t.Fatalf("alice's order after the process: %s, want confirmed", v.Status)
		}
		if got := stock(t, a, "pear"); got.Available() != 0 || got.Reserved["alice"] != 1 {
			t.Errorf("pear stock with alice's order confirmed: %+v", got)
		}

		do(t, a.Carts, cart.Stream("bob"), cart.Command(cart.AddItem{SKU: "apple", Qty: 1, UnitPrice: 50}))
		do(t, a.Carts, cart.Stream("bob"), cart.Command(cart.AddItem{SKU: "pear", Qty: 1, UnitPrice: 80}))
		do(t, a.Carts, cart.Stream("bob"), cart.Command(cart.PlaceOrder{}))
		do(t, a.Carts, cart.Stream("alice"), cart.Command(cart.Pay{Amount: 180}))
		settle(t, a)
		if v := view(t, a, "bob", 0); v.Status != cart.Rejected || v.Reason == "" {
			t.Errorf("bob's order (no pear left): %+v, want rejected with a reason", v)
		}
		if got := stock(t, a, "apple"); got.OnHand != 8 || len(got.Reserved) != 0 {
			t.Errorf("apple stock after alice's order shipped and bob's released: %+v, want 8 on hand, none reserved", got)
		}
		if v := view(t, a, "alice", 0); v.Status != cart.Paid {
			t.Errorf("alice's order: %s, want paid", v.Status)
		}

		do(t, a.Carts, cart.Stream("carol"), cart.Command(cart.AddItem{SKU: "apple", Qty: 3, UnitPrice: 50}))
		do(t, a.Carts, cart.Stream("carol"), cart.Command(cart.PlaceOrder{}))
		settle(t, a)
		if got := stock(t, a, "apple"); got.Reserved["carol"] != 3 {
			t.Errorf("apple stock with carol's order confirmed: %+v", got)
		}
		testwait.Until(t, "carol's order cancelled", func() bool {
			settle(t, a)
			return view(t, a, "carol", 0).Status == cart.Cancelled
		})
		settle(t, a)
		if got := stock(t, a, "apple"); got.OnHand != 8 || len(got.Reserved) != 0 {
			t.Errorf("apple stock after carol's reservation expired: %+v, want 8 on hand, none reserved", got)
		}
		checkCorrelation(t, a, "alice")
		checkCorrelation(t, a, "carol")
	})
}

// checkCorrelation checks that what the order process did for a cart carries the correlation
// id of the cart's OrderPlaced.
func checkCorrelation(t *testing.T, a *app.App, id string) {
	t.Helper()
	var corr string
	for ev, err := range a.Store.ReadStream(ctx(t), cart.Stream(id), nil) {
		if err != nil {
			t.Fatal(err)
		}
		md, err := codec.ParseMetadata(ev.Metadata)
		if err != nil {
			t.Fatal(err)
		}
		switch {
		case ev.Type == cart.TypeOrderPlaced:
			corr = md.CorrelationID
		case corr != "" && ev.Type != cart.TypeOrderPaid && md.CorrelationID != corr:
			t.Errorf("%s@%d %s: correlation %q, want that of OrderPlaced %q", ev.Stream, ev.Revision, ev.Type, md.CorrelationID, corr)
		}
	}
	if corr == "" {
		t.Errorf("cart %q has no OrderPlaced", id)
	}
}

// TestRestart stops the shop with orders in flight and starts it again over the same stores:
// every order completes and every customer message is written once.
func TestRestart(t *testing.T) {
	forEachStore(t, func(t *testing.T, e *env) {
		a := e.app(time.Hour)
		do(t, a.Inventory, inventory.Stream("apple"), inventory.Command(inventory.Restock{Qty: 100}))
		var carts []string
		for i := range 20 {
			id := string(rune('a'+i%26)) + "-cart"
			carts = append(carts, id)
			do(t, a.Carts, cart.Stream(id), cart.Command(cart.AddItem{SKU: "apple", Qty: 1, UnitPrice: 50}))
			do(t, a.Carts, cart.Stream(id), cart.Command(cart.PlaceOrder{}))
			if i == 10 {
				if err := a.Stop(); err != nil {
					t.Fatal(err)
				}
				a = e.app(time.Hour)
			}
		}
		settle(t, a)
		if err := a.Stop(); err != nil {
			t.Fatal(err)
		}
		a = e.app(time.Hour)
		settle(t, a)
		for _, id := range carts {
			if v := view(t, a, id, 0); v.Status != cart.Confirmed {
				t.Errorf("cart %s: %s, want confirmed", id, v.Status)
			}
		}
		if got := stock(t, a, "apple"); got.Available() != 80 {
			t.Errorf("apples available: %d, want 80 (20 reserved once each)", got.Available())
		}
		var texts []string
		for m, err := range a.Notifier.Outbox(ctx(t)) {
			if err != nil {
				t.Fatal(err)
			}
			texts = append(texts, m.Cart+": "+m.Text)
		}
		if len(texts) != 40 {
			t.Errorf("%d messages, want 40 (placed and confirmed, for each of 20 carts):\n%q", len(texts), texts)
		}
		slices.Sort(texts)
		if len(slices.Compact(texts)) != len(texts) {
			t.Errorf("a message was written twice")
		}
	})
}

// TestRefusals checks the domain errors a customer meets.
func TestRefusals(t *testing.T) {
	forEachStore(t, func(t *testing.T, e *env) {
		a := e.app(time.Hour)
		c := ctx(t)
		_, err := a.Carts.Handle(c, cart.Stream("x"), cart.PlaceOrder{}, nil)
		if !errors.Is(err, cart.ErrEmpty) {
			t.Errorf("placing an empty cart: %v, want ErrEmpty", err)
		}
		_, err = a.Carts.Handle(c, cart.Stream("x"), cart.AddItem{SKU: "apple", Qty: -1}, nil)
		if !errors.Is(err, decider.ErrInvalidCommand) {
			t.Errorf("adding -1 apples: %v, want ErrInvalidCommand", err)
		}
		for ev, err := range e.store.ReadAll(c, nil) {
			t.Errorf("a refused command wrote %s %s (err %v)", ev.Stream, ev.Type, err)
		}
	})
}
