package main

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/annalsdb/annals/internal/testwait"
)

// TestGroupsOverServer runs the groups commands and consume against "annals serve" with
// --server: a group on $all filtered by category, events parked by consume --nack park,
// counted by info and list, replayed by replay-parked and consumed again; update keeps what
// it was not told to change; delete deletes.
func TestGroupsOverServer(t *testing.T) {
	p := startServer(t, t.TempDir(), nil)
	e := newEnv(t)
	on := func(args ...string) []string { return append([]string{"--server", p.url}, args...) }

	if out := e.ok("", on("groups", "create", "orders", "--all", "--category", "order")...); out != "created group orders on $all (categories order): round-robin\n" {
		t.Errorf("create: %q", out)
	}
	r := e.run(context.Background(), "", on("groups", "create", "orders", "--all")...)
	if r.code != 1 || !strings.Contains(r.line, "group orders exists already") {
		t.Errorf("create again: exit %d, %q", r.code, r.line)
	}
	var all []string
	for i := range 4 {
		e.ok("", on("append", fmt.Sprintf("order-%d", i), "OrderPlaced", fmt.Sprintf(`{"n":%d}`, i))...)
		e.ok("", on("append", "cart-1", "ItemAdded")...)
		all = append(all, fmt.Sprintf("order-%d@0", i))
	}

	parked := streamsOf(t, e.ok("", on("consume", "orders", "--count", "2", "--nack", "park", "--window", "1", "--name", "parker")...))
	acked := streamsOf(t, e.ok("", on("consume", "orders", "--count", "1", "--window", "1", "--json")...))
	if len(parked) != 2 || len(acked) != 1 || slices.Contains(parked, acked[0]) {
		t.Fatalf("consume: parked %v, acked %v", parked, acked)
	}
	testwait.Until(t, "two parked events in groups info", func() bool {
		return groupInfo(t, e, "orders", "--server", p.url).Parked == 2
	})
	list := e.ok("", on("groups", "list")...)
	if !slices.ContainsFunc(lines(list), func(l string) bool {
		f := strings.Fields(l)
		return len(f) > 0 && f[0] == "orders" && f[len(f)-1] == "2"
	}) {
		t.Errorf("groups list: no row of orders with 2 parked:\n%s", list)
	}
	if out := e.ok("", on("groups", "info", "orders")...); !strings.Contains(out, "parked") || !strings.Contains(out, "$all (categories order)") {
		t.Errorf("groups info:\n%s", out)
	}

	if out := e.ok("", on("groups", "replay-parked", "orders")...); out != "gave back 2 parked events of group orders for delivery\n" {
		t.Errorf("replay-parked: %q", out)
	}
	// The rest: the two replayed events and the one never settled.
	rest := streamsOf(t, e.ok("", on("consume", "orders", "--count", "3", "--window", "1")...))
	got := slices.Sorted(slices.Values(append(rest, acked...)))
	if !slices.Equal(got, all) {
		t.Errorf("events consumed after the replay %v and before %v: want each of %v once", rest, acked, all)
	}
	for _, s := range parked {
		if !slices.Contains(rest, s) {
			t.Errorf("parked event %s not delivered again after the replay (got %v)", s, rest)
		}
	}
	testwait.Until(t, "nothing parked or in flight", func() bool {
		in := groupInfo(t, e, "orders", "--server", p.url)
		return in.Parked == 0 && in.InFlight == 0
	})

	e.ok("", on("groups", "update", "orders", "--max-retries", "3")...)
	in := groupInfo(t, e, "orders", "--server", p.url)
	if in.Settings.MaxRetries != 3 || in.Settings.Filter == nil || !slices.Equal(in.Settings.Filter.Categories, []string{"order"}) {
		t.Errorf("settings after update --max-retries 3: %+v", in.Settings)
	}
	if out := e.ok("", on("groups", "delete", "orders")...); out != "deleted group orders\n" {
		t.Errorf("delete: %q", out)
	}
	for _, args := range [][]string{{"groups", "info", "orders"}, {"consume", "orders"}, {"groups", "replay-parked", "orders"}} {
		r := e.run(context.Background(), "", on(args...)...)
		if r.code != 1 || !strings.Contains(r.line, "no group orders: annals groups list shows the groups") {
			t.Errorf("annals %s after delete: exit %d, %q", strings.Join(args, " "), r.code, r.line)
		}
	}
}
