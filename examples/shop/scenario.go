package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/annalsdb/annals"
	"github.com/annalsdb/annals/codec"
	"github.com/annalsdb/annals/decider"
	"github.com/annalsdb/annals/examples/shop/app"
	"github.com/annalsdb/annals/examples/shop/cart"
	"github.com/annalsdb/annals/examples/shop/cartview"
	"github.com/annalsdb/annals/examples/shop/inventory"
	"github.com/annalsdb/annals/query"
)

var products = []struct {
	sku   string
	stock int
	price int64
}{{"apple", 10, 50}, {"pear", 2, 80}}

// scenario drives the shop through three orders: Alice's is paid, Bob's is rejected for want
// of stock, Carol's is cancelled when its payment window expires.
func scenario(ctx context.Context, out io.Writer, a *app.App) error {
	s := &script{ctx: ctx, out: out, a: a}
	s.title("What happens")
	for _, p := range products {
		s.stock(p.sku, inventory.Restock{Qty: p.stock}, fmt.Sprintf("restock %d %s", p.stock, p.sku))
	}

	s.cart("alice", cart.AddItem{SKU: "apple", Qty: 3, UnitPrice: 50}, "alice adds 3 apples", "add-1")
	s.cart("alice", cart.AddItem{SKU: "apple", Qty: 3, UnitPrice: 50}, "alice's app retries the same request", "add-1")
	s.cart("alice", cart.AddItem{SKU: "pear", Qty: 1, UnitPrice: 80}, "alice adds a pear", "")
	s.cart("alice", cart.RemoveItem{SKU: "apple", Qty: 1}, "alice puts an apple back", "")
	s.cart("alice", cart.AddItem{SKU: "plum", Qty: 0, UnitPrice: 20}, "alice adds 0 plums", "")
	s.beforeOrder = time.Now()
	placed := s.cart("alice", cart.PlaceOrder{}, "alice places her order", "")
	if s.err == nil {
		// Read-your-writes: the query waits until the cart view has applied the order.
		v, err := a.CartQueries().GetByID(ctx, "alice", &query.Options{Position: placed.Position})
		s.check(err)
		fmt.Fprintf(out, "    the cart view, read at position %d: %s, %d items, total %s\n", placed.Position, v.Status, v.Items, money(v.Total))
	}
	s.cart("alice", cart.AddItem{SKU: "pear", Qty: 1, UnitPrice: 80}, "alice adds another pear", "")
	s.settle("the order process reserves alice's stock and confirms her order")
	s.cart("alice", cart.Pay{Amount: 180}, "alice pays $1.80", "")
	s.settle("the order process ships alice's order")

	s.cart("bob", cart.AddItem{SKU: "pear", Qty: 5, UnitPrice: 80}, "bob adds 5 pears", "")
	s.cart("bob", cart.PlaceOrder{}, "bob places his order", "")
	s.settle("the order process finds only 1 pear and rejects bob's order")

	s.cart("carol", cart.AddItem{SKU: "apple", Qty: 2, UnitPrice: 50}, "carol adds 2 apples", "")
	s.cart("carol", cart.PlaceOrder{}, "carol places her order", "")
	s.settle("the order process confirms carol's order")
	s.expire("carol does not pay; her payment window expires")

	if s.err != nil {
		return s.err
	}
	for _, section := range []func(*script){auditTrail, cartViews, stockLevels, messages, earlier} {
		section(s)
	}
	return s.err
}

// script runs the scenario's steps and prints them; after an unexpected error it does nothing
// more and keeps the error.
type script struct {
	ctx context.Context
	out io.Writer
	a   *app.App
	err error
	// beforeOrder is a moment before alice placed her order.
	beforeOrder time.Time
}

func (s *script) title(t string) { fmt.Fprintf(s.out, "\n== %s\n", t) }

func (s *script) check(err error) {
	if err != nil && s.err == nil {
		s.err = err
	}
}

// cart sends cmd to alice's, bob's or carol's cart. A domain error is part of the story: it is
// printed, not returned.
func (s *script) cart(id string, cmd cart.Command, what, key string) decider.Result[cart.Event] {
	if s.err != nil {
		return decider.Result[cart.Event]{}
	}
	res, err := s.a.Carts.Handle(s.ctx, cart.Stream(id), cmd, &decider.CommandOptions{IdempotencyKey: key})
	s.report(what, res.Written, res.Duplicate, res.Position, len(res.Events), err)
	return res
}

func (s *script) stock(sku string, cmd inventory.Command, what string) {
	if s.err != nil {
		return
	}
	res, err := s.a.Inventory.Handle(s.ctx, inventory.Stream(sku), cmd, nil)
	s.report(what, res.Written, res.Duplicate, res.Position, len(res.Events), err)
}

func (s *script) report(what string, written, duplicate bool, position uint64, events int, err error) {
	switch {
	case errors.Is(err, decider.ErrRefused):
		fmt.Fprintf(s.out, "  %s: refused: %v\n", what, err)
	case err != nil:
		s.check(fmt.Errorf("%s: %w", what, err))
	case duplicate:
		fmt.Fprintf(s.out, "  %s: a repeat (same idempotency key): nothing written, first result at position %d\n", what, position)
	case written:
		fmt.Fprintf(s.out, "  %s: %d event(s), position %d\n", what, events, position)
	default:
		fmt.Fprintf(s.out, "  %s: nothing to do\n", what)
	}
}

// settle waits until the read models and the order process have caught up with everything.
func (s *script) settle(what string) {
	if s.err != nil {
		return
	}
	ctx, cancel := context.WithTimeout(s.ctx, 30*time.Second)
	defer cancel()
	s.check(s.a.Settle(ctx))
	fmt.Fprintf(s.out, "  %s\n", what)
}

// expire waits until no deadline of the order process is pending, and for what they cause.
func (s *script) expire(what string) {
	ctx, cancel := context.WithTimeout(s.ctx, 30*time.Second)
	defer cancel()
	for s.err == nil {
		pending := s.a.Orders.Status().Pending
		if len(pending) == 0 {
			break
		}
		select {
		case <-time.After(time.Until(pending[0].At) + time.Millisecond):
		case <-ctx.Done():
			s.check(fmt.Errorf("%s: %w", what, ctx.Err()))
		}
		s.check(s.a.Settle(ctx))
	}
	fmt.Fprintf(s.out, "  %s\n", what)
}

func auditTrail(s *script) {
	s.title("Audit trail (carts and stock, in the log's order)")
	w := tabwriter.NewWriter(s.out, 0, 0, 2, ' ', 0)
	fmt.Fprintln(w, "  POS\tSTREAM@REV\tTYPE\tDATA\tCORRELATION")
	filter := &annals.Filter{Categories: []string{"cart", "stock"}}
	for ev, err := range s.a.Store.ReadAll(s.ctx, &annals.ReadOptions{Filter: filter}) {
		if err != nil {
			s.check(err)
			return
		}
		md, _ := codec.ParseMetadata(ev.Metadata)
		fmt.Fprintf(w, "  %d\t%s@%d\t%s\t%s\t%s\n", ev.Position, ev.Stream, ev.Revision, ev.Type, ev.Data, short(md.CorrelationID))
	}
	s.check(w.Flush())
}

func short(id string) string {
	if len(id) > 8 {
		return id[len(id)-8:]
	}
	return id
}

func cartViews(s *script) {
	s.title("Cart read model (query: all carts, a page of 2 at a time)")
	q := s.a.CartQueries()
	token := ""
	for {
		page, err := q.GetAll(s.ctx, &query.ListOptions[cartview.CartView]{Limit: 2, PageToken: token})
		if err != nil {
			s.check(err)
			return
		}
		for _, it := range page.Items {
			v := it.Value
			var lines []string
			for _, l := range v.Lines {
				lines = append(lines, fmt.Sprintf("%d %s", l.Qty, l.SKU))
			}
			reason := ""
			if v.Reason != "" {
				reason = " (" + v.Reason + ")"
			}
			fmt.Fprintf(s.out, "  %-6s %-9s %-22s %s%s\n", v.ID, v.Status, strings.Join(lines, ", "), money(v.Total), reason)
		}
		if token = page.NextPageToken; token == "" {
			return
		}
	}
}

func stockLevels(s *script) {
	s.title("Inventory")
	for _, p := range products {
		st, err := s.a.Inventory.Load(s.ctx, inventory.Stream(p.sku), nil)
		if err != nil {
			s.check(err)
			return
		}
		fmt.Fprintf(s.out, "  %-6s on hand %2d, reserved %d, available %d\n", p.sku, st.Value.OnHand, len(st.Value.Reserved), st.Value.Available())
	}
}

func messages(s *script) {
	s.title("Messages to customers (the notifier's outbox)")
	for m, err := range s.a.Notifier.Outbox(s.ctx) {
		if err != nil {
			s.check(err)
			return
		}
		fmt.Fprintf(s.out, "  to %-6s %s\n", m.Cart, m.Text)
	}
}

// earlier shows alice's cart before she placed her order, and its whole history.
func earlier(s *script) {
	s.title("Alice's cart at an earlier moment")
	st, err := s.a.Carts.Load(s.ctx, cart.Stream("alice"), &decider.LoadOptions{Until: 2})
	if err != nil {
		s.check(err)
		return
	}
	fmt.Fprintf(s.out, "  as of revision 1: %s\n", describe(st.Value))
	st, err = s.a.Carts.Load(s.ctx, cart.Stream("alice"), &decider.LoadOptions{AsOf: s.beforeOrder})
	if err != nil {
		s.check(err)
		return
	}
	fmt.Fprintf(s.out, "  as of %s, just before she placed her order (revision %d): %s\n", s.beforeOrder.UTC().Format(time.TimeOnly), st.Revision, describe(st.Value))
	s.title("History of alice's cart (state after each event)")
	s.check(printHistory(s.ctx, s.out, s.a, cart.Stream("alice")))
}

// printHistory prints each event of a cart's stream with the cart's state after it.
func printHistory(ctx context.Context, out io.Writer, a *app.App, stream string) error {
	if _, ok := cart.ID(stream); !ok {
		return fmt.Errorf("%q is not a cart's stream (cart-<id>)", stream)
	}
	w := tabwriter.NewWriter(out, 0, 0, 2, ' ', 0)
	for step, err := range a.Carts.History(ctx, stream) {
		if errors.Is(err, annals.ErrStreamNotFound) {
			return fmt.Errorf("no cart %q in this store (see 'annals streams --data DIR')", stream)
		}
		if err != nil {
			return err
		}
		fmt.Fprintf(w, "  %d\t%s\t%s\t→ %s\n", step.Event.Revision, step.Event.Time.Format(time.TimeOnly), step.Event.Type, describe(step.State))
	}
	return w.Flush()
}

func describe(c cart.State) string {
	var lines []string
	for _, l := range c.Lines() {
		lines = append(lines, fmt.Sprintf("%d %s", l.Qty, l.SKU))
	}
	if len(lines) == 0 {
		lines = []string{"empty"}
	}
	return fmt.Sprintf("%s: %s", c.Status, strings.Join(lines, ", "))
}

func money(cents int64) string { return fmt.Sprintf("$%d.%02d", cents/100, cents%100) }
