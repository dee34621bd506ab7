package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"github.com/annalsdb/annals/decider"
	"github.com/annalsdb/annals/examples/shop/cart"
	"github.com/annalsdb/annals/examples/shop/services"
	"github.com/annalsdb/annals/memstore"
)

// TestCartAPI serves the cart API over memstore and checks its answers: read-your-writes,
// strict input, clear refusals.
func TestCartAPI(t *testing.T) {
	store := memstore.New(nil)
	reg, err := services.Registry()
	if err != nil {
		t.Fatal(err)
	}
	s := &cartService{log: slog.New(slog.NewTextHandler(io.Discard, nil))}
	if s.carts, err = decider.NewHandler(store, reg, cart.Decider, &decider.Options[cart.Command]{Validate: cart.Validate}); err != nil {
		t.Fatal(err)
	}
	if err := s.readModel(store, reg); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	var wg sync.WaitGroup
	defer func() { cancel(); wg.Wait() }()
	wg.Go(func() {
		if err := s.view.Run(ctx); err != nil && !errors.Is(err, context.Canceled) {
			t.Errorf("cart view: %v", err)
		}
	})
	srv := httptest.NewServer(s.routes())
	defer srv.Close()

	d := &driver{urls: []string{srv.URL}, run: "api", seed: 7}
	if _, err := d.customer(t.Context(), 1); err != nil { // adds, places, reads at the position
		t.Fatal(err)
	}
	for _, tc := range []struct {
		method, path, body string
		code               int
		want               string
	}{
		{"POST", "/carts/a/add", `{"sku":"apple","qty":2}`, 200, `"position"`},
		{"POST", "/carts/a/add", `{"sku":"apple","qty":2,"price":1}`, 400, `unknown field \"price\"`},
		{"POST", "/carts/a/add", `{"sku":"apple","qty":"2"}`, 400, `cannot unmarshal string`},
		{"POST", "/carts/a/add", `{"sku":"apple","qty":2} {}`, 400, `more than one JSON value`},
		{"POST", "/carts/a/add", `{"sku":"durian","qty":1}`, 400, `the shop does not sell it`},
		{"POST", "/carts/a/add", `{"sku":"apple","qty":0}`, 400, `quantities and prices must be positive`},
		{"POST", "/carts/a!/add", `{"sku":"apple","qty":1}`, 400, `cart id \"a!\"`},
		{"POST", "/carts/a/remove", `{"sku":"apple","qty":5}`, 409, `not that many in the cart`},
		{"POST", "/carts/b/place", ``, 409, `the cart is empty`},
		{"POST", "/carts/a/place", `{"now":true}`, 400, `unknown field \"now\"`},
		{"GET", "/carts/zz", ``, 404, `not found`},
		{"GET", "/carts/a?position=x", ``, 400, `want a number`},
		{"GET", "/carts?status=lost", ``, 400, `not a cart's status`},
		{"GET", "/carts?sort=id", ``, 400, `query parameter sort`},
		{"GET", "/carts?limit=100000", ``, 400, `page size 100000`},
	} {
		req, _ := http.NewRequest(tc.method, srv.URL+tc.path, strings.NewReader(tc.body))
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != tc.code || !strings.Contains(string(b), tc.want) {
			t.Errorf("%s %s %s: %d %s, want %d and %s", tc.method, tc.path, tc.body, resp.StatusCode, b, tc.code, tc.want)
		}
	}
	var page struct {
		Carts []struct{ ID, Status string }
		Next  string
	}
	if err := d.get(t.Context(), srv.URL+"/carts?status=placed", &page); err != nil || fmt.Sprint(page.Carts) != "[{capi_1 placed}]" {
		t.Errorf("placed carts: %v %v, want capi_1's", page.Carts, err)
	}
}
