package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/annalsdb/annals"
	"github.com/annalsdb/annals/client"
	"github.com/annalsdb/annals/examples/shop/fulfillment"
	"github.com/annalsdb/annals/examples/shop/inventory"
	"github.com/annalsdb/annals/examples/shop/notification"
)

// benchConfig says what [benchShop] measures.
type benchConfig struct {
	Annals, Shop string  // binaries
	Orders       int     // customers, one order each
	Concurrency  int     // customers shopping at once
	Carts        int     // cart replicas
	Replicas     int     // replicas of each consumer
	Rate         float64 // orders started per second; 0: as fast as the customers go
	Bus          string  // the feed of fulfillment and notification (shopConfig.Bus)
	Out          io.Writer
}

// benchResult is what [benchShop] measured.
type benchResult struct {
	Orders     int
	Elapsed    time.Duration // from the first customer's first request to the last order's last notification
	PerSecond  float64       // orders through every service, per second
	P50, P99   time.Duration // from PlaceOrder sent to the notification of the order's outcome delivered
	Max        time.Duration
	PlaceOrder time.Duration // p99 of the PlaceOrder request alone, as the customer sees it
}

// runBench is "shop bench": orders per second through every service, and the time from
// PlaceOrder to the customer's notification of the outcome (shipped or out of stock).
func runBench(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("shop bench", flag.ContinueOnError)
	fs.SetOutput(stderr)
	annalsBin := fs.String("annals", "", "the server's binary (default: go build ./cmd/annals into a temporary directory)")
	orders := fs.Int("orders", 2000, "orders (one customer each)")
	conc := fs.Int("concurrency", 32, "customers shopping at once")
	carts := fs.Int("carts", 1, "replicas of the cart service")
	replicas := fs.Int("replicas", 2, "replicas of each consumer")
	rate := fs.Float64("rate", 0, "orders started per second (0: as fast as the customers go): for the latency below saturation")
	logs := fs.Bool("logs", false, "show the services' logs")
	bus := fs.String("bus", busGroups, "where fulfillment and notification take their events: groups, kafka or nats (as shop up)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 || *orders < 1 || *conc < 1 || *carts < 1 || *replicas < 1 || *rate < 0 {
		return errors.New("shop bench: want no arguments and positive counts")
	}
	if *bus != busGroups && *bus != busKafka && *bus != busNATS {
		return fmt.Errorf("shop bench: --bus %q: want %s, %s or %s", *bus, busGroups, busKafka, busNATS)
	}
	tmp, err := os.MkdirTemp("", "shop-bench-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	if *annalsBin == "" {
		if *annalsBin, err = buildAnnals(ctx, tmp); err != nil {
			return err
		}
	}
	self, err := os.Executable()
	if err != nil {
		return err
	}
	out := io.Discard
	if *logs {
		out = stderr
	}
	res, err := benchShop(ctx, benchConfig{Annals: *annalsBin, Shop: self, Orders: *orders, Concurrency: *conc,
		Carts: *carts, Replicas: *replicas, Rate: *rate, Out: out, Bus: *bus}, filepath.Join(tmp, "data"))
	if err != nil {
		return err
	}
	paced := "as fast as they go"
	if *rate > 0 {
		paced = fmt.Sprintf("started at %g/s", *rate)
	}
	fmt.Fprintf(stdout, "shop bench: %d orders (%s), %d customers at a time, %d cart replica(s), %d replicas of each consumer, fulfillment and notification on %s\n",
		res.Orders, paced, *conc, *carts, *replicas, *bus)
	fmt.Fprintf(stdout, "  %.0f orders/s through every service (%v)\n", res.PerSecond, res.Elapsed.Round(time.Millisecond))
	fmt.Fprintf(stdout, "  PlaceOrder → notification of the outcome: p50 %v, p99 %v, max %v\n",
		res.P50.Round(10*time.Microsecond), res.P99.Round(10*time.Microsecond), res.Max.Round(10*time.Microsecond))
	fmt.Fprintf(stdout, "  PlaceOrder request alone: p99 %v\n", res.PlaceOrder.Round(10*time.Microsecond))
	return nil
}

// benchShop starts the shop on data (and its broker, if any, beside it) with stock enough for
// every order, runs the customers, and waits for the notification of every order's outcome.
func benchShop(ctx context.Context, cfg benchConfig, data string) (benchResult, error) {
	var stock []string
	for _, p := range catalog {
		stock = append(stock, p.SKU+"=1000000000")
	}
	s, err := startShop(ctx, shopConfig{Annals: cfg.Annals, Shop: cfg.Shop, Data: data,
		Carts: slices.Repeat([]string{"127.0.0.1:0"}, cfg.Carts), Replicas: cfg.Replicas,
		Stock: strings.Join(stock, ","), Out: cfg.Out, Bus: cfg.Bus, BusDir: filepath.Dir(data)})
	if err != nil {
		return benchResult{}, err
	}
	defer s.stop()
	c, err := client.Open(ctx, s.serverURL, nil)
	if err != nil {
		return benchResult{}, err
	}
	defer c.Close()

	// The notifications of the outcomes, when a subscriber gets them.
	var (
		mu      sync.Mutex
		told    = map[string]time.Time{}
		allTold = make(chan struct{})
	)
	sctx, stopSub := context.WithCancel(ctx)
	defer stopSub()
	subErr := make(chan error, 1)
	go func() {
		filter := &annals.Filter{Categories: []string{"notification"}, EventTypes: []string{notification.TypeNotificationSent}}
		// From the start (the store is new), so that no notification comes before it.
		for ev, err := range c.SubscribeAll(sctx, &annals.SubscribeOptions{Filter: filter}) {
			if err != nil {
				subErr <- err
				return
			}
			var n notification.NotificationSent
			if err := json.Unmarshal(ev.Data, &n); err != nil {
				subErr <- err
				return
			}
			if n.About != fulfillment.TypeOrderShipped && n.About != inventory.TypeOrderOutOfStock {
				continue
			}
			mu.Lock()
			if _, ok := told[n.Order]; !ok {
				told[n.Order] = time.Now()
				if len(told) == cfg.Orders {
					close(allTold)
				}
			}
			mu.Unlock()
		}
		subErr <- nil
	}()

	d := &driver{urls: s.cartURLs, run: "bench", seed: 1, rate: cfg.Rate}
	var placeTimes []time.Duration
	start := time.Now()
	orders, err := d.shop(ctx, cfg.Orders, cfg.Concurrency, nil)
	if err != nil {
		return benchResult{}, err
	}
	select {
	case <-allTold:
	case err := <-subErr:
		return benchResult{}, fmt.Errorf("subscription to the notifications: %v", err)
	case <-time.After(5 * time.Minute):
		return benchResult{}, errors.New("not every order's outcome was told within 5 minutes")
	case <-ctx.Done():
		return benchResult{}, ctx.Err()
	}
	mu.Lock()
	defer mu.Unlock()
	var lat []time.Duration
	last := start
	for _, o := range orders {
		at := told[o.Cart]
		lat = append(lat, at.Sub(o.Placed))
		placeTimes = append(placeTimes, o.PlaceTook)
		if at.After(last) {
			last = at
		}
	}
	slices.Sort(lat)
	slices.Sort(placeTimes)
	pct := func(ds []time.Duration, p float64) time.Duration { return ds[min(len(ds)-1, int(p*float64(len(ds))))] }
	res := benchResult{Orders: len(orders), Elapsed: last.Sub(start), P50: pct(lat, 0.50), P99: pct(lat, 0.99),
		Max: lat[len(lat)-1], PlaceOrder: pct(placeTimes, 0.99)}
	res.PerSecond = float64(res.Orders) / res.Elapsed.Seconds()
	return res, nil
}
