package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	"github.com/annalsdb/annals"
	"github.com/annalsdb/annals/examples/shop/app"
	"github.com/annalsdb/annals/filestore"
	"github.com/annalsdb/annals/pgstore"
	"github.com/annalsdb/annals/tables"
)

// runScenario is "shop scenario": the scripted scenario in one process, over the embedded
// store or PostgreSQL, with the order process of package order and the notifier's outbox.
func runScenario(ctx context.Context, args []string, out io.Writer) error {
	fs := flag.NewFlagSet("shop scenario", flag.ContinueOnError)
	data := fs.String("data", "", "data directory of the store (default: a temporary directory, removed afterwards)")
	pgURL := fs.String("postgres", "", "run on PostgreSQL at this URL: the events and the read models in one database")
	pgSchema := fs.String("schema", "", "with --postgres: the store's schema (default: a new one, dropped afterwards)")
	window := fs.Duration("payment-window", time.Second, "how long a confirmed order waits for its payment")
	history := ""
	if len(args) > 0 && args[0] == "history" {
		if len(args) < 2 {
			return errors.New("usage: shop scenario history CART-STREAM [--data DIR | --postgres URL --schema NAME]")
		}
		history, args = args[1], args[2:]
	}
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *pgURL != "" && *data != "" {
		return errors.New("--data and --postgres: choose one store")
	}
	if *pgURL == "" && *pgSchema != "" {
		return errors.New("--schema needs --postgres URL")
	}
	if history != "" && *data == "" && *pgSchema == "" {
		return errors.New("history needs --data DIR or --postgres URL --schema NAME: the store of an earlier run")
	}
	var store annals.Store
	var db *tables.DB
	var pg *pgstore.Store
	if *pgURL != "" {
		schema := *pgSchema
		if schema == "" {
			b := make([]byte, 4)
			rand.Read(b)
			schema = "shop_" + hex.EncodeToString(b)
			defer func() {
				if err := pgstore.Drop(context.WithoutCancel(ctx), *pgURL, schema); err != nil {
					fmt.Fprintln(os.Stderr, "shop:", err)
				}
			}()
		}
		s, err := pgstore.Open(ctx, *pgURL, &pgstore.Options{Schema: schema})
		if err != nil {
			return err
		}
		defer s.Close()
		store, pg = s, s
	} else {
		dir := *data
		if dir == "" {
			tmp, err := os.MkdirTemp("", "shop-")
			if err != nil {
				return err
			}
			defer os.RemoveAll(tmp)
			dir = tmp
		}
		s, err := filestore.Open(dir, nil)
		if err != nil {
			return err
		}
		defer s.Close()
		if db, err = tables.Open(filepath.Join(dir, "tables"), nil); err != nil {
			return err
		}
		defer db.Close()
		store = s
	}
	a, err := app.New(store, db, &app.Options{PaymentWindow: *window, Postgres: pg})
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
