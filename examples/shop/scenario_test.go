package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/annalsdb/annals/internal/teststores"
	"github.com/annalsdb/annals/pgstore"
)

// TestScenario runs the example as a user would and checks what it tells.
func TestScenario(t *testing.T) {
	dir := t.TempDir()
	checkScenario(t, []string{"--data", dir}, []string{"--data", dir})
	var out bytes.Buffer
	for _, args := range [][]string{{"history"}, {"history", "cart-bob"}, {"history", "stock-apple", "--data", dir}, {"--nope"},
		{"--schema", "x"}, {"--data", dir, "--postgres", "postgres://localhost/x"}} {
		if err := runScenario(context.Background(), args, &out); err == nil {
			t.Errorf("shop %q: no error", args)
		}
	}
}

// TestScenarioOnPostgres runs it with the events and the read models in PostgreSQL.
func TestScenarioOnPostgres(t *testing.T) {
	url := teststores.PostgresURL(t)
	b := make([]byte, 6)
	rand.Read(b)
	schema := "test_shop_" + hex.EncodeToString(b)
	t.Cleanup(func() {
		if err := pgstore.Drop(context.Background(), url, schema); err != nil {
			t.Errorf("drop schema %s: %v", schema, err)
		}
	})
	at := []string{"--postgres", url, "--schema", schema}
	checkScenario(t, at, at)
}

// checkScenario runs the scenario on the store that args name, checks what it tells, and reads
// a cart's history back from the store that history names.
func checkScenario(t *testing.T, args, history []string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	var out bytes.Buffer
	if err := runScenario(ctx, append(args, "--payment-window", "3s"), &out); err != nil {
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
	if err := runScenario(ctx, append([]string{"history", "cart-bob"}, history...), &out); err != nil {
		t.Fatal(err)
	}
	if got := out.String(); !regexp.MustCompile(`OrderRejected +→ rejected: 5 pear`).MatchString(got) {
		t.Errorf("history of cart-bob:\n%s", got)
	}
}
