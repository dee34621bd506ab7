// Package app wires the shop together: the event store, the codec registry, the command
// handlers of the cart and the inventory, the cart read model and the notifier (projections
// into the embedded store's side tables, or into the PostgreSQL database that holds the
// events) and the order process. Each part is its own package
// and knows the others only through their events and commands; this package is the one place
// that knows them all.
package app

import (
	"context"
	"errors"
	"fmt"
	"iter"
	"sync"
	"time"

	"github.com/annalsdb/annals"
	"github.com/annalsdb/annals/codec"
	"github.com/annalsdb/annals/decider"
	"github.com/annalsdb/annals/examples/shop/cart"
	"github.com/annalsdb/annals/examples/shop/cartview"
	"github.com/annalsdb/annals/examples/shop/inventory"
	"github.com/annalsdb/annals/examples/shop/notifier"
	"github.com/annalsdb/annals/examples/shop/order"
	"github.com/annalsdb/annals/pgstore"
	"github.com/annalsdb/annals/process"
	"github.com/annalsdb/annals/projection"
	"github.com/annalsdb/annals/query"
	"github.com/annalsdb/annals/tables"
)

// Options configure an [App]. nil means the defaults.
type Options struct {
	// PaymentWindow is how long a confirmed order waits for its payment; default 15 minutes.
	PaymentWindow time.Duration
	// Postgres, when not nil, keeps the read models in the PostgreSQL database of this store
	// (pgstore.Projections: each projection's rows and checkpoint in one transaction) instead
	// of the side tables, which New's db then may be nil. The event store is typically this
	// store too, so that events and read models live in one database.
	Postgres *pgstore.Store
}

// Runner is a projection's runner, whatever store holds its read model:
// *projection.Runner[*tables.Tx] or *projection.Runner[*pgstore.ProjectionTx].
type Runner interface {
	Name() string
	Run(ctx context.Context) error
	WaitFor(ctx context.Context, position uint64) error
	Status(ctx context.Context) (projection.Status, error)
	Rebuild(ctx context.Context, progress func(projection.Status)) error
	Retry() error
	Skip() error
}

// Outbox is the notifier's outbox, whatever store holds it: *notifier.Notifier or
// *notifier.Postgres.
type Outbox interface {
	Outbox(ctx context.Context) iter.Seq2[notifier.Message, error]
}

// cartSource is the cart view, whatever store holds it: *cartview.View or
// *cartview.PostgresView.
type cartSource interface {
	Queries(w query.Waiter) *query.Handler[cartview.CartView]
}

// App is the running shop. Use the handlers for commands and the queries for reads; Start runs
// the projections and the order process in the background.
type App struct {
	Store    annals.Store
	Registry *codec.Registry

	Carts     *decider.Handler[cart.State, cart.Command, cart.Event]
	Inventory *decider.Handler[inventory.State, inventory.Command, inventory.Event]

	Notifier Outbox
	Orders   *process.Runner[order.State]

	// CartViewRunner and NotifierRunner run the projections; wait on them for your writes.
	CartViewRunner Runner
	NotifierRunner Runner

	cartView cartSource

	wg     sync.WaitGroup
	cancel context.CancelFunc
	mu     struct {
		sync.Mutex
		errs []error
	}
}

// New wires the shop over store, with its read models in db (or in opts.Postgres). The caller
// keeps the stores and closes them after [App.Stop].
func New(store annals.Store, db *tables.DB, opts *Options) (*App, error) {
	o := Options{PaymentWindow: 15 * time.Minute}
	if opts != nil {
		o.Postgres = opts.Postgres
		if opts.PaymentWindow > 0 {
			o.PaymentWindow = opts.PaymentWindow
		}
	}
	if db == nil && o.Postgres == nil {
		return nil, errors.New("app: no store for the read models: want side tables or Options.Postgres")
	}
	reg := codec.New(nil)
	if err := errors.Join(cart.Register(reg), inventory.Register(reg)); err != nil {
		return nil, err
	}
	a := &App{Store: store, Registry: reg}
	var err error
	snapshots := &decider.SnapshotPolicy{Every: 100, Version: "cart/1"}
	if a.Carts, err = decider.NewHandler(store, reg, cart.Decider, &decider.Options[cart.Command]{
		Validate: cart.Validate, Snapshots: snapshots, CacheSize: 1000}); err != nil {
		return nil, err
	}
	if a.Inventory, err = decider.NewHandler(store, reg, inventory.Decider, &decider.Options[inventory.Command]{
		Validate: inventory.Validate, CacheSize: 1000}); err != nil {
		return nil, err
	}
	if o.Postgres != nil {
		err = a.readModelsIn(o.Postgres)
	} else {
		err = a.readModelsInTables(db)
	}
	if err != nil {
		return nil, err
	}
	send, err := order.Sender(a.Carts, a.Inventory)
	if err != nil {
		return nil, err
	}
	if a.Orders, err = process.NewRunner(store, order.Manager(reg, o.PaymentWindow), send, nil); err != nil {
		return nil, err
	}
	return a, nil
}

// readModelsInTables sets up the cart view and the notifier in the side tables db.
func (a *App) readModelsInTables(db *tables.DB) error {
	view, err := cartview.New(db, a.Registry)
	if err != nil {
		return err
	}
	n, err := notifier.New(db, a.Registry)
	if err != nil {
		return err
	}
	a.cartView, a.Notifier = view, n
	if a.CartViewRunner, err = projection.NewRunner(a.Store, db, view.Projection(), nil); err != nil {
		return err
	}
	a.NotifierRunner, err = projection.NewRunner(a.Store, db, n.Projection(), nil)
	return err
}

// readModelsIn sets up the cart view and the notifier in the PostgreSQL database of pg.
func (a *App) readModelsIn(pg *pgstore.Store) error {
	view := cartview.NewPostgres(pg, a.Registry)
	n := notifier.NewPostgres(pg, a.Registry)
	a.cartView, a.Notifier = view, n
	var err error
	if a.CartViewRunner, err = projection.NewRunner(a.Store, view.Store(), view.Projection(), nil); err != nil {
		return err
	}
	a.NotifierRunner, err = projection.NewRunner(a.Store, n.Store(), n.Projection(), nil)
	return err
}

// Carts' queries: read-your-writes through the cart view's runner.
func (a *App) CartQueries() *query.Handler[cartview.CartView] {
	return a.cartView.Queries(a.CartViewRunner)
}

// Start runs the projections and the order process until [App.Stop].
func (a *App) Start() {
	ctx, cancel := context.WithCancel(context.Background())
	a.cancel = cancel
	for _, run := range []func(context.Context) error{a.CartViewRunner.Run, a.NotifierRunner.Run, a.Orders.Run} {
		a.wg.Go(func() {
			if err := run(ctx); err != nil && !errors.Is(err, context.Canceled) {
				a.mu.Lock()
				a.mu.errs = append(a.mu.errs, err)
				a.mu.Unlock()
			}
		})
	}
}

// Stop stops what Start runs and waits for it; it returns what made any of them stop early.
func (a *App) Stop() error {
	if a.cancel != nil {
		a.cancel()
	}
	a.wg.Wait()
	a.mu.Lock()
	defer a.mu.Unlock()
	return errors.Join(a.mu.errs...)
}

// Settle waits until the projections and the order process have handled every event in the
// log, again and again until the process sends no more commands (its commands make events it
// reacts to in turn), or ctx is done.
func (a *App) Settle(ctx context.Context) error {
	for {
		head, err := a.head(ctx)
		if err != nil {
			return err
		}
		for _, r := range []Runner{a.CartViewRunner, a.NotifierRunner} {
			if err := r.WaitFor(ctx, head); err != nil {
				return fmt.Errorf("settle: %s: %w", r.Name(), err)
			}
		}
		if err := a.Orders.WaitFor(ctx, head); err != nil {
			return fmt.Errorf("settle: the order process: %w", err)
		}
		now, err := a.head(ctx)
		if err != nil {
			return err
		}
		if now == head {
			return nil
		}
	}
}

// head returns the position of the last event of the log.
func (a *App) head(ctx context.Context) (uint64, error) {
	for ev, err := range a.Store.ReadAll(ctx, &annals.ReadOptions{Backwards: true, From: annals.End, Limit: 1}) {
		if err != nil {
			return 0, err
		}
		return ev.Position, nil
	}
	return 0, nil
}
