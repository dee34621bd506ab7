package main

import (
	"bytes"
	"context"
	"regexp"
	"strings"
	"testing"
	"time"
)

// TestScenario runs the example as a user would and checks what it tells.
func TestScenario(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	dir := t.TempDir()
	var out bytes.Buffer
	if err := run(ctx, []string{"--data", dir, "--payment-window", "3s"}, &out); err != nil {
		t.Fatalf("shop: %v\n%s", err, out.String())
	}
	got := out.String()
	if !regexp.MustCompile(`OrderPaid +→ paid: 2 apple, 1 pear`).MatchString(got) {
		t.Errorf("the history lacks alice's payment:\n%s", got)
	}
	for _, want := range []string{
		"alice's app retries the same request: a repeat (same idempotency key): nothing written",
		"alice adds 0 plums: refused: decider: invalid command",
		"alice adds another pear: refused: cart: the order is already placed",
		"the cart view, read at position 6:",
		"alice  paid ",
		"bob    rejected ",
		"carol  cancelled ",
		"apple  on hand  8, reserved 0, available 8",
		"pear   on hand  1, reserved 0, available 1",
		"to bob    Sorry, we could not take your order: inventory: insufficient stock",
		"as of revision 1: open: 3 apple, 1 pear",
		"just before she placed her order (revision 2): open: 2 apple, 1 pear",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("the output lacks %q:\n%s", want, got)
		}
	}

	// history reads the kept store.
	out.Reset()
	if err := run(ctx, []string{"history", "cart-bob", "--data", dir}, &out); err != nil {
		t.Fatal(err)
	}
	if got := out.String(); !regexp.MustCompile(`OrderRejected +→ rejected: 5 pear`).MatchString(got) {
		t.Errorf("history of cart-bob:\n%s", got)
	}
	for _, args := range [][]string{{"history"}, {"history", "cart-bob"}, {"history", "stock-apple", "--data", dir}, {"--nope"}} {
		if err := run(ctx, args, &out); err == nil {
			t.Errorf("shop %q: no error", args)
		}
	}
}
