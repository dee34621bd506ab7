// Command shop is the online-shop example as separate services that talk only through
// `annals serve`: a cart service (an HTTP API over the cart's command handler and its read
// model) and three services that consume persistent subscriptions (consumer groups):
// inventory, fulfillment and notification.
//
//	go run ./examples/shop                       # the whole shop: the server and every service
//	go run ./examples/shop --bus kafka           # fulfillment and notification on Kafka (or nats), which a relay of the server fills
//	go run ./examples/shop customers --cart URL  # customers that shop through the cart API
//	go run ./examples/shop bench                 # orders per second through every service
//	go run ./examples/shop cart --server URL     # one service (cart, inventory, fulfillment, notification)
//	go run ./examples/shop scenario              # the scripted scenario in one process
//
// docs/shop.md walks through the services, docs/tutorial.md through the toolkit they use.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/annalsdb/annals/tracing"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	err := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	if errors.Is(err, flag.ErrHelp) {
		os.Exit(2)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "shop:", err)
		os.Exit(1)
	}
}

// run runs the subcommand args name ("up" when the first argument is a flag or missing) until
// it is done or ctx ends.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	cmd := "up"
	if len(args) > 0 && !strings.HasPrefix(args[0], "-") {
		cmd, args = args[0], args[1:]
	}
	log := slog.New(slog.NewTextHandler(stderr, nil))
	switch cmd {
	case "cart", "inventory", "fulfillment", "notification":
		// Tracing is on when the OTEL_* environment asks for it (docs/tracing.md); each
		// service names itself unless OTEL_SERVICE_NAME does.
		if os.Getenv("OTEL_SERVICE_NAME") == "" {
			os.Setenv("OTEL_SERVICE_NAME", "shop-"+cmd)
		}
		shutdown, err := tracing.Setup(ctx)
		if err != nil {
			return fmt.Errorf("tracing: %w", err)
		}
		defer func() {
			ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
			defer cancel()
			if err := shutdown(ctx); err != nil {
				log.Warn("tracing: flushing the spans failed", "err", err)
			}
		}()
	}
	switch cmd {
	case "up":
		return runUp(ctx, args, stdout, stderr)
	case "cart":
		return runCart(ctx, args, log, nil)
	case "inventory", "fulfillment", "notification":
		return runConsumer(ctx, cmd, args, log)
	case "customers":
		return runCustomers(ctx, args, stdout)
	case "bench":
		return runBench(ctx, args, stdout, stderr)
	case "scenario":
		return runScenario(ctx, args, stdout)
	}
	return fmt.Errorf("unknown command %q: want up, cart, inventory, fulfillment, notification, customers, bench or scenario", cmd)
}

// product is a line of the shop's catalog.
type product struct {
	SKU   string `json:"sku"`
	Price int64  `json:"price"` // cents
	Stock int    `json:"stock"` // the inventory's initial stock
}

// catalog is what the shop sells. Figs are scarce, so that some orders run out of stock.
var catalog = []product{
	{"apple", 50, 100_000}, {"pear", 80, 100_000}, {"plum", 20, 100_000}, {"kiwi", 40, 100_000}, {"fig", 120, 200},
}

// price returns the price of sku, and false when the shop does not sell it.
func price(sku string) (int64, bool) {
	for _, p := range catalog {
		if p.SKU == sku {
			return p.Price, true
		}
	}
	return 0, false
}
