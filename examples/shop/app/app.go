// Package app wires the shop together: the event store, the codec registry, the command
// handlers of the cart and the inventory, the cart read model and the notifier (projections
// into the embedded store's side tables) and the order process. Each part is its own package
// and knows the others only through their events and commands; this package is the one place
// that knows them all.
package app

import (
	"context"
	"errors"
	"fmt"
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
	"github.com/annalsdb/annals/process"
	"github.com/annalsdb/annals/projection"
	"github.com/annalsdb/annals/query"
	"github.com/annalsdb/annals/tables"
)

// Options configure an [App]. nil means the defaults.
type Options struct {
	// PaymentWindow is how long a confirmed order waits for its payment; default 15 minutes.
	PaymentWindow time.Duration
}

// App is the running shop. Use the handlers for commands and the queries for reads; Start runs
// the projections and the order process in the background.
type App struct {
	Store    annals.Store
	Registry *codec.Registry

	Carts     *decider.Handler[cart.State, cart.Command, cart.Event]
	Inventory *decider.Handler[inventory.State, inventory.Command, inventory.Event]

	CartView *cartview.View
	Notifier *notifier.Notifier
	Orders   *process.Runner[order.State]

	// CartViewRunner and NotifierRunner run the projections; wait on them for your writes.
	CartViewRunner *projection.Runner[*tables.Tx]
	NotifierRunner *projection.Runner[*tables.Tx]

	wg     sync.WaitGroup
	cancel context.CancelFunc
	mu     struct {
		sync.Mutex
		errs []error
	}
}

// New wires the shop over store, with its read models in db. The caller keeps store and db
// and closes them after [App.Stop].
func New(store annals.Store, db *tables.DB, opts *Options) (*App, error) {
	o := Options{PaymentWindow: 15 * time.Minute}
	if opts != nil && opts.PaymentWindow > 0 {
		o.PaymentWindow = opts.PaymentWindow
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
	if a.CartView, err = cartview.New(db, reg); err != nil {
		return nil, err
	}
	if a.Notifier, err = notifier.New(db, reg); err != nil {
		return nil, err
	}
	if a.CartViewRunner, err = projection.NewRunner(store, db, a.CartView.Projection(), nil); err != nil {
		return nil, err
	}
	if a.NotifierRunner, err = projection.NewRunner(store, db, a.Notifier.Projection(), nil); err != nil {
		return nil, err
	}
	handlers := order.Handlers{Cart: a.Carts, Inventory: a.Inventory}
	if a.Orders, err = process.NewRunner(store, order.Manager(reg, o.PaymentWindow), handlers.Send,
		&process.RunnerOptions{IsRefusal: order.IsRefusal}); err != nil {
		return nil, err
	}
	return a, nil
}

// Carts' queries: read-your-writes through the cart view's runner.
func (a *App) CartQueries() *query.Handler[cartview.CartView] {
	return a.CartView.Queries(a.CartViewRunner)
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
		for _, r := range []*projection.Runner[*tables.Tx]{a.CartViewRunner, a.NotifierRunner} {
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
