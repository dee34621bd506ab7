package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"strings"
	"sync"
	"testing"

	"github.com/annalsdb/annals/decider"
	"github.com/annalsdb/annals/examples/shop/cart"
	"github.com/annalsdb/annals/examples/shop/consume"
	"github.com/annalsdb/annals/examples/shop/services"
	"github.com/annalsdb/annals/groups"
	"github.com/annalsdb/annals/internal/testwait"
	"github.com/annalsdb/annals/memstore"
)

// TestShopInProcess runs the consuming services as the programs do (consume.Run, two
// replicas each) but in process, over memstore and an in-process group manager; one replica
// of each leaves while orders come in. It checks what the end-to-end test checks: the stock,
// the shipments and the notifications are exactly what the orders imply.
func TestShopInProcess(t *testing.T) {
	ctx := t.Context()
	store := memstore.New(nil)
	m, err := groups.Open(ctx, store, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	const figs = 20
	initial, err := parseStock(strings.Replace(stockFlag(catalog), "fig=200", fmt.Sprintf("fig=%d", figs), 1))
	if err != nil {
		t.Fatal(err)
	}
	if err := stockUp(ctx, store, initial); err != nil {
		t.Fatal(err)
	}
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	inv, err := services.NewInventory(store)
	if err != nil {
		t.Fatal(err)
	}
	ful, err := services.NewFulfillment(store)
	if err != nil {
		t.Fatal(err)
	}
	note, err := services.NewNotification(store, quiet)
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	stopAll, cancelAll := context.WithCancel(ctx)
	defer func() { cancelAll(); wg.Wait() }()
	leave, cancelFirst := context.WithCancel(stopAll)
	defer cancelFirst()
	for _, svc := range []services.Service{inv, ful, note} {
		for i, rctx := range []context.Context{leave, stopAll} {
			wg.Go(func() {
				err := consume.Run(rctx, m, consume.Options{Group: svc.Group(), Settings: svc.Settings(),
					Consumer: fmt.Sprintf("%s-%d", svc.Group(), i+1), Workers: 4, Log: quiet}, svc.Handle)
				if err != nil {
					t.Errorf("%s-%d: %v", svc.Group(), i+1, err)
				}
			})
		}
	}

	reg, err := services.Registry()
	if err != nil {
		t.Fatal(err)
	}
	carts, err := decider.NewHandler(store, reg, cart.Decider, &decider.Options[cart.Command]{Validate: cart.Validate})
	if err != nil {
		t.Fatal(err)
	}
	seed := rand.Uint64()
	t.Logf("seed %d", seed)
	const customers = 120
	orders := make([]order, customers)
	var shoppers sync.WaitGroup
	for w := range 8 {
		shoppers.Go(func() {
			for i := w; i < customers; i += 8 {
				if i == customers/2 {
					cancelFirst() // one replica of each service leaves
				}
				r := rand.New(rand.NewPCG(seed, uint64(i)))
				id := fmt.Sprintf("c%d", i)
				lines := map[string]cart.Line{}
				for range 1 + r.IntN(3) {
					p := catalog[r.IntN(len(catalog))]
					qty := 1 + r.IntN(3)
					if _, err := carts.Handle(ctx, cart.Stream(id), cart.AddItem{SKU: p.SKU, Qty: qty, UnitPrice: p.Price}, nil); err != nil {
						t.Error(err)
						return
					}
					l := lines[p.SKU]
					l.SKU, l.Qty, l.UnitPrice = p.SKU, l.Qty+qty, p.Price
					lines[p.SKU] = l
				}
				if _, err := carts.Handle(ctx, cart.Stream(id), cart.PlaceOrder{}, nil); err != nil {
					t.Error(err)
					return
				}
				o := order{Cart: id}
				for _, l := range lines {
					o.Lines = append(o.Lines, l)
				}
				orders[i] = o
			}
		})
	}
	shoppers.Wait()
	if t.Failed() {
		return
	}
	testwait.UntilNil(t, "every group idle and every order's outcome told", func() error {
		for _, g := range consumers {
			info, err := m.Info(ctx, g)
			if err != nil {
				return err
			}
			if info.InFlight != 0 || info.Buffered != 0 || info.Parked != 0 {
				return fmt.Errorf("group %s: in flight %d, buffered %d, parked %d", g, info.InFlight, info.Buffered, info.Parked)
			}
		}
		_, err := checkShop(ctx, store, orders, figs)
		return err
	})
	sum, err := checkShop(ctx, store, orders, figs)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("%d orders: %d shipped, %d out of stock", len(orders), sum.shipped, sum.outOfStock)
}
