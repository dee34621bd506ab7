package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/annalsdb/annals"
	"github.com/annalsdb/annals/client"
	"github.com/annalsdb/annals/codec"
	"github.com/annalsdb/annals/examples/shop/fulfillment"
	"github.com/annalsdb/annals/examples/shop/inventory"
	"github.com/annalsdb/annals/examples/shop/notification"
	"github.com/annalsdb/annals/examples/shop/services"
	"github.com/annalsdb/annals/groups"
	"github.com/annalsdb/annals/internal/testwait"
)

// TestShopEndToEnd builds the server and the shop, starts them as processes (the server, two
// cart replicas, two replicas of each consumer), drives customers over the cart API, kills one
// replica of each consumer with SIGKILL while orders flow (and starts two of them again), and
// then checks, once every group is idle, that the stock, the shipments and the notifications
// are exactly what the placed orders imply: nothing lost, nothing done twice.
func TestShopEndToEnd(t *testing.T) { shopEndToEnd(t, busGroups) }

// TestShopEndToEndKafka is [TestShopEndToEnd] with fulfillment and notification on Kafka: the
// launcher runs an in-process Kafka (kfake), the server relays the events those services take
// to it, and their replicas share a Kafka consumer group per service.
func TestShopEndToEndKafka(t *testing.T) { shopEndToEnd(t, busKafka) }

// TestShopEndToEndNATS is [TestShopEndToEnd] with fulfillment and notification on NATS
// JetStream: the launcher runs an in-process NATS server, the server relays the events those
// services take to a JetStream stream, and their replicas share a durable pull consumer per
// service.
func TestShopEndToEndNATS(t *testing.T) { shopEndToEnd(t, busNATS) }

// shopEndToEnd is the end-to-end test with fulfillment and notification on bus.
func shopEndToEnd(t *testing.T, bus string) {
	if testing.Short() {
		t.Skip("builds the server and the shop and runs them as processes")
	}
	bins := buildBinaries(t)
	// The processes live as long as the test; each wait below has its own deadline.
	ctx := t.Context()
	logs := &lockedBuffer{}
	const figs = 40 // scarce: some orders run out of stock
	stock := strings.Replace(stockFlag(catalog), "fig=200", fmt.Sprintf("fig=%d", figs), 1)
	s, err := startShop(ctx, shopConfig{Annals: bins.annals, Shop: bins.shop, Data: filepath.Join(t.TempDir(), "data"),
		Carts: []string{"127.0.0.1:0", "127.0.0.1:0"}, Replicas: 2, Stock: stock, Out: logs, Bus: bus, BusDir: t.TempDir()})
	if err != nil {
		t.Fatalf("start the shop: %v\n%s", err, logs.tail(100))
	}
	t.Cleanup(func() {
		if err := s.stop(); err != nil {
			t.Errorf("stop the shop: %v", err)
		}
		if t.Failed() {
			t.Logf("the shop's last lines:\n%s", logs.tail(200))
		}
	})

	seed := rand.Uint64()
	t.Logf("seed %d, fulfillment and notification on %s", seed, bus)
	const customers = 300
	d := &driver{urls: s.cartURLs, run: "e2e", seed: seed}
	third, n := make(chan struct{}), 0
	shopped := make(chan []order, 1)
	go func() {
		orders, err := d.shop(ctx, customers, 16, func(order) {
			if n++; n == customers/3 {
				close(third)
			}
		})
		if err != nil {
			t.Errorf("customers: %v", err)
		}
		shopped <- orders
	}()
	select { // a third of the orders are in: kill a replica of each consumer
	case <-third:
	case orders := <-shopped:
		t.Fatalf("the customers stopped after %d orders", len(orders))
	}
	for _, name := range consumers {
		victim := s.replicas(name + "-1")
		if len(victim) != 1 {
			t.Fatalf("replicas of %s-1: %d", name, len(victim))
		}
		victim[0].kill()
		t.Logf("killed %s with SIGKILL", victim[0].name)
		if name != "fulfillment" { // fulfillment goes on with one replica
			if _, err := s.restart(ctx, victim[0]); err != nil {
				t.Fatal(err)
			}
		}
	}
	orders := testwait.Recv(t, "the customers to finish", shopped)
	if t.Failed() {
		return
	}
	if len(orders) != customers {
		t.Fatalf("%d orders placed, want %d", len(orders), customers)
	}

	c, err := client.Open(ctx, s.serverURL, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	gs := c.Groups()
	// The groups of the server in use: on a broker, fulfillment's and notification's feed is
	// done when the log holds what the orders imply.
	inGroups := consumers
	if bus != busGroups {
		inGroups = slices.DeleteFunc(slices.Clone(consumers), func(name string) bool { return slices.Contains(onBus, name) })
	}
	testwait.UntilNil(t, "every group idle and every order's outcome told", func() error {
		for _, g := range inGroups {
			info, err := gs.Info(ctx, g)
			if err != nil {
				return err
			}
			if info.InFlight != 0 || info.Buffered != 0 {
				return fmt.Errorf("group %s: in flight %d, buffered %d", g, info.InFlight, info.Buffered)
			}
			if info.Parked != 0 {
				t.Fatalf("group %s parked %d events", g, info.Parked)
			}
		}
		_, err := checkShop(ctx, c, orders, figs)
		return err
	})
	sum, err := checkShop(ctx, c, orders, figs)
	if err != nil {
		t.Fatal(err)
	}
	for _, g := range inGroups {
		if info, err := gs.Info(ctx, g); err == nil {
			t.Logf("group %s: delivered %d, acked %d, retries %d (since the server loaded it)", g, info.Delivered, info.Acked, info.Retries)
		}
	}
	if bus != busGroups {
		for _, g := range onBus { // they took their events from the broker, not from the server
			if _, err := gs.Info(ctx, g); !errors.Is(err, groups.ErrGroupNotFound) {
				t.Errorf("group %s on the server: %v, want %v", g, err, groups.ErrGroupNotFound)
			}
		}
	}
	t.Logf("%d orders: %d shipped, %d out of stock", len(orders), sum.shipped, sum.outOfStock)
	if sum.shipped == 0 || sum.outOfStock == 0 {
		t.Errorf("want both outcomes among the orders: %d shipped, %d out of stock", sum.shipped, sum.outOfStock)
	}
}

// outcome sums up the orders' outcomes.
type outcome struct{ shipped, outOfStock int }

// checkShop reads the log back and checks that it holds exactly what the orders imply: for
// each order one allocation; when allocated, a shipment of OrderPrepared and OrderShipped and
// a stock reservation and shipment per line; when out of stock, no shipment and every
// reservation released; a notification of its placing and one of its outcome; and, per
// product, the stock on hand: what it was stocked with, less what was shipped.
func checkShop(ctx context.Context, store annals.Store, orders []order, figs int) (outcome, error) {
	reg, err := services.Registry()
	if err != nil {
		return outcome{}, err
	}
	streams := map[string][]annals.RecordedEvent{}
	for ev, err := range store.ReadAll(ctx, &annals.ReadOptions{Filter: &annals.Filter{
		Categories: []string{"allocation", "shipment", "notification", "stock"}}}) {
		if err != nil {
			return outcome{}, err
		}
		streams[ev.Stream] = append(streams[ev.Stream], ev)
	}
	types := func(stream string) string {
		var ts []string
		for _, ev := range streams[stream] {
			ts = append(ts, ev.Type)
		}
		delete(streams, stream) // what is left at the end is unexpected
		return strings.Join(ts, " ")
	}
	var errs []error
	bad := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }
	var sum outcome
	shipped := map[string]map[string]int{} // by SKU, by order
	allocated := map[string]bool{}         // by order
	for _, o := range orders {
		switch got := types(inventory.AllocationStream(o.Cart)); got {
		case inventory.TypeOrderAllocated:
			allocated[o.Cart] = true
			sum.shipped++
			if got := types(fulfillment.Stream(o.Cart)); got != "OrderPrepared OrderShipped" {
				bad("%s: shipment %q, want OrderPrepared OrderShipped", o.Cart, got)
			}
			for _, l := range o.Lines {
				if shipped[l.SKU] == nil {
					shipped[l.SKU] = map[string]int{}
				}
				shipped[l.SKU][o.Cart] = l.Qty
			}
		case inventory.TypeOrderOutOfStock:
			sum.outOfStock++
			if got := types(fulfillment.Stream(o.Cart)); got != "" {
				bad("%s: out of stock, yet shipment %q", o.Cart, got)
			}
		default:
			return sum, fmt.Errorf("%s: allocation %q, want one OrderAllocated or OrderOutOfStock", o.Cart, got)
		}
		told := inventory.TypeOrderOutOfStock
		if allocated[o.Cart] {
			told = fulfillment.TypeOrderShipped
		}
		for _, about := range []string{"OrderPlaced", told} {
			if got := types(notification.Stream(o.Cart, about)); got != notification.TypeNotificationSent {
				return sum, fmt.Errorf("%s: notification about %s: %q, want one NotificationSent", o.Cart, about, got)
			}
		}
	}
	for _, p := range catalog {
		stream := inventory.Stream(p.SKU)
		st := inventory.Decider.Initial()
		perOrder := map[string][]string{}
		for i, ev := range streams[stream] {
			e, _, err := codec.Decode[inventory.Event](reg, ev)
			if err != nil {
				return sum, err
			}
			if _, ok := e.(inventory.Restocked); ok != (i == 0) {
				bad("%s@%d: %s: want one StockRestocked, first", stream, ev.Revision, ev.Type)
			}
			switch e := e.(type) {
			case inventory.Reserved:
				perOrder[e.Order] = append(perOrder[e.Order], ev.Type)
			case inventory.Released:
				perOrder[e.Order] = append(perOrder[e.Order], ev.Type)
			case inventory.Shipped:
				perOrder[e.Order] = append(perOrder[e.Order], ev.Type)
			}
			st = inventory.Decider.Evolve(st, e)
		}
		delete(streams, stream)
		for order, ts := range perOrder {
			want := []string{inventory.TypeReserved, inventory.TypeReleased}
			if allocated[order] {
				want = []string{inventory.TypeReserved, inventory.TypeShipped}
			}
			if !slices.Equal(ts, want) {
				bad("%s, order %s: %v, want %v", stream, order, ts, want)
			}
		}
		total := 0
		for order, qty := range shipped[p.SKU] {
			total += qty
			if len(perOrder[order]) == 0 {
				bad("%s: nothing reserved nor shipped for order %s, which was allocated", stream, order)
			}
		}
		initial := p.Stock
		if p.SKU == "fig" {
			initial = figs
		}
		if want := initial - total; st.OnHand != want || len(st.Reserved) != 0 || st.OnHand < 0 {
			bad("%s: on hand %d, reserved %v; want %d on hand, nothing reserved", stream, st.OnHand, st.Reserved, want)
		}
	}
	for stream, evs := range streams {
		bad("unexpected stream %s (%d events)", stream, len(evs))
	}
	if len(errs) > 5 {
		errs = append(errs[:5], fmt.Errorf("and %d more", len(errs)-5))
	}
	return sum, errors.Join(errs...)
}

// binaries are the programs the end-to-end tests run.
type binaries struct{ annals, shop string }

// buildBinaries builds the server and the shop into a temporary directory.
func buildBinaries(t testing.TB) binaries {
	dir := t.TempDir()
	b := binaries{annals: filepath.Join(dir, "annals"), shop: filepath.Join(dir, "shop")}
	for bin, pkg := range map[string]string{b.annals: "github.com/annalsdb/annals/cmd/annals", b.shop: "."} {
		if out, err := exec.Command("go", "build", "-o", bin, pkg).CombinedOutput(); err != nil {
			t.Fatalf("go build %s: %v\n%s", pkg, err, out)
		}
	}
	return b
}

// lockedBuffer is the shop's output, kept for a failing test to show.
type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

// tail returns the last n lines.
func (b *lockedBuffer) tail(n int) string {
	b.mu.Lock()
	defer b.mu.Unlock()
	lines := strings.Split(strings.TrimRight(b.buf.String(), "\n"), "\n")
	return strings.Join(lines[max(0, len(lines)-n):], "\n")
}

// BenchmarkShop runs b.N orders through the shop's processes (see "shop bench") and reports
// orders per second and the p99 from PlaceOrder to the notification of the outcome.
func BenchmarkShop(b *testing.B) {
	bins := buildBinaries(b)
	b.ResetTimer()
	res, err := benchShop(b.Context(), benchConfig{Annals: bins.annals, Shop: bins.shop, Orders: max(b.N, 100),
		Concurrency: 32, Carts: 1, Replicas: 2, Out: io.Discard}, filepath.Join(b.TempDir(), "data"))
	if err != nil {
		b.Fatal(err)
	}
	b.ReportMetric(res.PerSecond, "orders/s")
	b.ReportMetric(float64(res.P99)/1e6, "p99-ms")
}

// TestShopUp runs "shop up" as a user does, sends customers to the cart API it prints, and
// stops it with SIGINT: every process stops, in order (the cart API, the consumers, the
// server), and the command exits with status 0.
func TestShopUp(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the server and the shop and runs them as processes")
	}
	bins := buildBinaries(t)
	cmd := exec.Command(bins.shop, "up", "--annals", bins.annals, "--addr", "127.0.0.1:0", "--data", filepath.Join(t.TempDir(), "data"))
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr lockedBuffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill() })
	open := make(chan string, 1)
	var lines []string
	read := make(chan struct{})
	go func() {
		defer close(read)
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			line := sc.Text()
			if _, api, ok := strings.Cut(line, "The cart API: "); ok {
				open <- api
			}
			lines = append(lines, line)
		}
	}()
	api := testwait.Recv(t, "the shop to open", open)
	d := &driver{urls: []string{api}, run: "up", seed: 1}
	if orders, err := d.shop(t.Context(), 10, 4, nil); err != nil || len(orders) != 10 {
		t.Fatalf("customers: %d orders, %v", len(orders), err)
	}
	cmd.Process.Signal(os.Interrupt)
	exited := make(chan error, 1)
	go func() { <-read; exited <- cmd.Wait() }()
	if err := testwait.Recv(t, "shop up to exit", exited); err != nil {
		t.Fatalf("shop up: %v\nstderr: %s\nstdout:\n%s", err, stderr.tail(20), strings.Join(lines, "\n"))
	}
	// Each process's lines carry its name; they stop in order.
	last := map[string]int{}
	for i, l := range lines {
		name, _, ok := strings.Cut(l, " | ")
		if ok {
			last[strings.TrimSpace(name)] = i
		}
	}
	for _, name := range []string{"annals", "cart-1", "inventory-1", "inventory-2", "fulfillment-1", "fulfillment-2", "notification-1", "notification-2"} {
		if _, ok := last[name]; !ok {
			t.Errorf("no line of %s", name)
		}
	}
	for _, name := range consumers {
		for _, r := range []string{"-1", "-2"} {
			if !(last["cart-1"] < last[name+r] && last[name+r] < last["annals"]) {
				t.Errorf("the last line of %s (%d) is not between cart-1's (%d) and the server's (%d)", name+r, last[name+r], last["cart-1"], last["annals"])
			}
		}
	}
}
