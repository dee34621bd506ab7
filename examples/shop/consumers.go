package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"strconv"
	"strings"

	"github.com/annalsdb/annals"
	"github.com/annalsdb/annals/client"
	"github.com/annalsdb/annals/codec"
	"github.com/annalsdb/annals/examples/shop/consume"
	"github.com/annalsdb/annals/examples/shop/inventory"
	"github.com/annalsdb/annals/examples/shop/services"
)

// serverFlags are the flags of every service: the server and the replica's name.
type serverFlags struct {
	server  *string
	replica *string
}

func addServerFlags(fs *flag.FlagSet, name string) serverFlags {
	return serverFlags{
		server:  fs.String("server", "http://127.0.0.1:2113", "URL of `annals serve`"),
		replica: fs.String("replica", name, "this replica's name, as the group's figures show it"),
	}
}

// open opens a client of the server.
func (f serverFlags) open(ctx context.Context) (*client.Client, error) {
	return client.Open(ctx, *f.server, nil)
}

// runConsumer is "shop inventory|fulfillment|notification": one replica of a consuming
// service, until ctx ends, on the feed --bus names (its consumer group of the server by
// default).
func runConsumer(ctx context.Context, name string, args []string, log *slog.Logger) error {
	fs := flag.NewFlagSet("shop "+name, flag.ContinueOnError)
	sf := addServerFlags(fs, name)
	workers := fs.Int("workers", 8, "events handled at once")
	bf := addBusFlags(fs)
	var stock *string
	if name == "inventory" {
		stock = fs.String("stock", stockFlag(catalog), "initial stock, SKU=N,…: each product is stocked once, when its stream does not exist")
	}
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("shop %s: unexpected arguments %q", name, fs.Args())
	}
	c, err := sf.open(ctx)
	if err != nil {
		return err
	}
	defer c.Close()
	var svc services.Service
	switch name {
	case "inventory":
		initial, err := parseStock(*stock)
		if err != nil {
			return err
		}
		inv, err := services.NewInventory(c)
		if err != nil {
			return err
		}
		if err := stockUp(ctx, c, initial); err != nil {
			return err
		}
		svc = inv
	case "fulfillment":
		svc, err = services.NewFulfillment(c)
	case "notification":
		svc, err = services.NewNotification(c, log)
	}
	if err != nil {
		return err
	}
	feed, err := bf.feed(c.Groups(), svc.Settings().Filter)
	if err != nil {
		return err
	}
	log.Info("consuming", "group", svc.Group(), "replica", *sf.replica, "server", *sf.server, "bus", *bf.bus)
	err = feed.Run(ctx, consume.Options{
		Group: svc.Group(), Settings: svc.Settings(), Consumer: *sf.replica, Workers: *workers, Log: log,
	}, svc.Handle)
	log.Info("stopped", "group", svc.Group(), "replica", *sf.replica)
	return err
}

// stockFlag is the --stock of the catalog.
func stockFlag(ps []product) string {
	var parts []string
	for _, p := range ps {
		parts = append(parts, fmt.Sprintf("%s=%d", p.SKU, p.Stock))
	}
	return strings.Join(parts, ",")
}

// parseStock parses SKU=N,… strictly.
func parseStock(s string) (map[string]int, error) {
	out := map[string]int{}
	for part := range strings.SplitSeq(s, ",") {
		sku, n, ok := strings.Cut(part, "=")
		qty, err := strconv.Atoi(n)
		if !ok || sku == "" || err != nil || qty <= 0 {
			return nil, fmt.Errorf("--stock: %q is not SKU=N with N > 0", part)
		}
		if _, dup := out[sku]; dup {
			return nil, fmt.Errorf("--stock: %s given twice", sku)
		}
		out[sku] = qty
	}
	return out, nil
}

// stockUp stocks every product whose stream does not exist yet: the first StockRestocked of
// a product's stream is appended expecting no stream, under an id derived from the product,
// so replicas that start together, or again, stock it once.
func stockUp(ctx context.Context, store annals.Store, initial map[string]int) error {
	reg, err := services.Registry()
	if err != nil {
		return err
	}
	for sku, qty := range initial {
		ev, err := reg.Encode(inventory.Restocked{Qty: qty}, codec.Metadata{})
		if err != nil {
			return err
		}
		ev.ID = consume.ID(annals.UUID{}, "inventory", "initial stock of "+sku)
		_, err = store.Append(ctx, inventory.Stream(sku), annals.NoStream, ev)
		if err != nil && !errors.Is(err, annals.ErrWrongExpectedVersion) {
			return fmt.Errorf("stock %s: %w", sku, err)
		}
	}
	return nil
}
