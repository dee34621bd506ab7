package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"maps"
	"math/rand/v2"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/annalsdb/annals/examples/shop/cart"
	"github.com/annalsdb/annals/examples/shop/cartview"
)

// runCustomers is "shop customers": customers that fill carts and place orders through the
// cart API, concurrently, and what they ordered.
func runCustomers(ctx context.Context, args []string, stdout io.Writer) error {
	fs := flag.NewFlagSet("shop customers", flag.ContinueOnError)
	urls := fs.String("cart", "http://127.0.0.1:8080", "URL of the cart API (several, comma-separated: the customers spread over them)")
	n := fs.Int("n", 20, "customers")
	conc := fs.Int("concurrency", 4, "customers shopping at once")
	seed := fs.Uint64("seed", 0, "seed of the customers' choices (0: a random one, printed)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 || *n < 1 || *conc < 1 {
		return errors.New("shop customers: want no arguments, -n and -concurrency at least 1")
	}
	if *seed == 0 {
		*seed = rand.Uint64()
	}
	fmt.Fprintf(stdout, "%d customers, %d at a time, seed %d\n", *n, *conc, *seed)
	d := &driver{urls: strings.Split(*urls, ","), run: fmt.Sprintf("%x", *seed&0xffffff), seed: *seed}
	orders, err := d.shop(ctx, *n, *conc, func(o order) {
		fmt.Fprintf(stdout, "  %s placed %d lines, $%d.%02d, position %d\n", o.Cart, len(o.Lines), o.Total/100, o.Total%100, o.Position)
	})
	fmt.Fprintf(stdout, "%d orders placed\n", len(orders))
	return err
}

// order is an order a customer placed.
type order struct {
	Cart      string
	Lines     []cart.Line
	Total     int64
	Position  uint64
	Placed    time.Time     // when PlaceOrder was sent
	PlaceTook time.Duration // how long PlaceOrder took to answer
}

// driver drives customers through the cart API.
type driver struct {
	urls []string
	run  string // part of every cart id, so that runs on one store do not mix
	seed uint64
	// rate, when positive, paces the customers: customer i starts no earlier than i/rate
	// seconds after the first (a schedule, so that a slow start is not made up by a burst
	// beyond the concurrency).
	rate float64
	http http.Client
}

// shop runs n customers, conc at a time; each fills a cart with random products (and puts one
// back now and then), places the order, and reads its cart back at the order's position
// (read-your-writes: it must show the order placed). It returns the orders placed (every
// customer's, unless an error stopped it), and tells placed of each as it is placed (one at a
// time, under a lock).
func (d *driver) shop(ctx context.Context, n, conc int, placed func(order)) ([]order, error) {
	var (
		mu     sync.Mutex
		orders []order
		errs   []error
		wg     sync.WaitGroup
	)
	next := make(chan int)
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	for range conc {
		wg.Go(func() {
			for i := range next {
				o, err := d.customer(ctx, i)
				mu.Lock()
				if err != nil {
					errs = append(errs, err)
					cancel()
				} else {
					orders = append(orders, o)
					if placed != nil {
						placed(o)
					}
				}
				mu.Unlock()
			}
		})
	}
	start := time.Now()
feed:
	for i := range n {
		if d.rate > 0 {
			at := start.Add(time.Duration(float64(i) / d.rate * float64(time.Second)))
			select {
			case <-time.After(time.Until(at)):
			case <-ctx.Done():
				break feed
			}
		}
		select {
		case next <- i:
		case <-ctx.Done():
			break feed
		}
	}
	close(next)
	wg.Wait()
	if len(errs) == 0 && ctx.Err() != nil {
		errs = append(errs, ctx.Err())
	}
	return orders, errors.Join(errs...)
}

// customer is customer i's visit.
func (d *driver) customer(ctx context.Context, i int) (order, error) {
	r := rand.New(rand.NewPCG(d.seed, uint64(i)))
	base := d.urls[i%len(d.urls)]
	id := fmt.Sprintf("c%s_%d", d.run, i)
	want := map[string]int{}
	for range 1 + r.IntN(3) {
		p := catalog[r.IntN(len(catalog))]
		qty := 1 + r.IntN(3)
		if _, err := d.post(ctx, base+"/carts/"+id+"/add", itemRequest{SKU: p.SKU, Qty: qty}); err != nil {
			return order{}, err
		}
		want[p.SKU] += qty
	}
	if r.IntN(3) == 0 { // puts one back
		for _, sku := range slices.Sorted(maps.Keys(want))[:1] {
			if _, err := d.post(ctx, base+"/carts/"+id+"/remove", itemRequest{SKU: sku, Qty: 1}); err != nil {
				return order{}, err
			}
			if want[sku]--; want[sku] == 0 {
				delete(want, sku)
			}
		}
	}
	if len(want) == 0 {
		p := catalog[r.IntN(len(catalog))]
		if _, err := d.post(ctx, base+"/carts/"+id+"/add", itemRequest{SKU: p.SKU, Qty: 1}); err != nil {
			return order{}, err
		}
		want[p.SKU] = 1
	}
	o := order{Cart: id, Placed: time.Now()}
	res, err := d.post(ctx, base+"/carts/"+id+"/place", nil)
	if err != nil {
		return order{}, err
	}
	o.Position, o.PlaceTook = res.Position, time.Since(o.Placed)
	// Read-your-writes: the cart read at the order's position shows the order.
	var v cartview.CartView
	if err := d.get(ctx, fmt.Sprintf("%s/carts/%s?position=%d", base, id, o.Position), &v); err != nil {
		return order{}, err
	}
	if v.Status != cart.Placed {
		return order{}, fmt.Errorf("cart %s read at position %d: status %s, want placed", id, o.Position, v.Status)
	}
	got := map[string]int{}
	for _, l := range v.Lines {
		got[l.SKU] += l.Qty
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		return order{}, fmt.Errorf("cart %s: lines %v, want %v", id, got, want)
	}
	o.Lines, o.Total = v.Lines, v.Total
	return o, nil
}

// commandResult is what the cart API answers a command.
type commandResult struct {
	Position  uint64 `json:"position"`
	Revision  uint64 `json:"revision"`
	Duplicate bool   `json:"duplicate"`
}

// post sends a command; body nil sends none.
func (d *driver) post(ctx context.Context, url string, body any) (commandResult, error) {
	var rd io.Reader = http.NoBody
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return commandResult{}, err
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, rd)
	if err != nil {
		return commandResult{}, err
	}
	var res commandResult
	return res, d.do(req, &res)
}

func (d *driver) get(ctx context.Context, url string, v any) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	return d.do(req, v)
}

// do sends req and decodes a 200 answer into v; another status is an error with the answer.
func (d *driver) do(req *http.Request, v any) error {
	resp, err := d.http.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return err
	}
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%s %s: %s: %s", req.Method, req.URL, resp.Status, bytes.TrimSpace(b))
	}
	return json.Unmarshal(b, v)
}
