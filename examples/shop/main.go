// Command shop runs the online-shop example: a scripted scenario against the embedded store,
// printing the audit trail, the cart read model, the inventory, the customers' messages and a
// cart's state at an earlier moment.
//
//	go run ./examples/shop                    # in a temporary directory, removed afterwards
//	go run ./examples/shop --data shop-data   # keep the store (read it with annals read --data shop-data)
//	go run ./examples/shop history cart-alice --data shop-data
//
// docs/tutorial.md walks through it.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"time"

	"github.com/annalsdb/annals/examples/shop/app"
	"github.com/annalsdb/annals/filestore"
	"github.com/annalsdb/annals/tables"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "shop:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string, out io.Writer) error {
	fs := flag.NewFlagSet("shop", flag.ContinueOnError)
	data := fs.String("data", "", "data directory of the store (default: a temporary directory, removed afterwards)")
	window := fs.Duration("payment-window", time.Second, "how long a confirmed order waits for its payment")
	history := ""
	if len(args) > 0 && args[0] == "history" {
		if len(args) < 2 {
			return errors.New("usage: shop history CART-STREAM [--data DIR]")
		}
		history, args = args[1], args[2:]
	}
	if err := fs.Parse(args); err != nil {
		return err
	}
	if history != "" && *data == "" {
		return errors.New("history needs --data DIR: the store of an earlier run kept with --data")
	}
	dir := *data
	if dir == "" {
		tmp, err := os.MkdirTemp("", "shop-")
		if err != nil {
			return err
		}
		defer os.RemoveAll(tmp)
		dir = tmp
	}
	store, err := filestore.Open(dir, nil)
	if err != nil {
		return err
	}
	defer store.Close()
	db, err := tables.Open(filepath.Join(dir, "tables"), nil)
	if err != nil {
		return err
	}
	defer db.Close()
	a, err := app.New(store, db, &app.Options{PaymentWindow: *window})
	if err != nil {
		return err
	}
	if history != "" {
		return printHistory(ctx, out, a, history)
	}
	a.Start()
	err = scenario(ctx, out, a)
	return errors.Join(err, a.Stop())
}
