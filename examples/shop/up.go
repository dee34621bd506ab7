package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"strconv"
	"strings"
)

// runUp is "shop" and "shop up": the whole shop on this machine until ctx ends (Ctrl-C), then
// stops it in order.
//
// The server is the real `annals serve`: the binary --annals names, or else cmd/annals of this
// module built with `go build` into a temporary directory (the build cache makes that quick
// after the first time, and it is the very binary users run; importing the server into this
// program instead would run a second copy of its wiring, not the server). Each service is this
// program again, with the service's subcommand, so that one `go run` builds everything.
func runUp(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("shop up", flag.ContinueOnError)
	fs.SetOutput(stderr)
	annalsBin := fs.String("annals", "", "the server's binary (default: go build ./cmd/annals into a temporary directory)")
	data := fs.String("data", "", "the server's data directory (default: a temporary one, removed afterwards)")
	addr := fs.String("addr", "127.0.0.1:8080", "address of the cart API; with --carts N, replica i (from 0) listens on the port + i")
	carts := fs.Int("carts", 1, "replicas of the cart service")
	replicas := fs.Int("replicas", 2, "replicas of each consuming service (inventory, fulfillment, notification)")
	bus := fs.String("bus", busGroups, "where fulfillment and notification take their events: groups (the server's consumer groups), kafka or nats (a broker run in this process, which a relay of the server fills)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 || *carts < 1 || *replicas < 1 {
		return fmt.Errorf("shop up: want no arguments, --carts and --replicas at least 1")
	}
	if *bus != busGroups && *bus != busKafka && *bus != busNATS {
		return fmt.Errorf("shop up: --bus %q: want %s, %s or %s", *bus, busGroups, busKafka, busNATS)
	}
	tmp, err := os.MkdirTemp("", "shop-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	if *data == "" {
		*data = tmp + "/data"
	}
	if *annalsBin == "" {
		fmt.Fprintln(stdout, "building the server (go build ./cmd/annals) …")
		if *annalsBin, err = buildAnnals(ctx, tmp); err != nil {
			return err
		}
	}
	self, err := os.Executable()
	if err != nil {
		return err
	}
	addrs, err := cartAddrs(*addr, *carts)
	if err != nil {
		return err
	}
	s, err := startShop(ctx, shopConfig{Annals: *annalsBin, Shop: self, Data: *data, Carts: addrs, Replicas: *replicas, Out: stdout,
		Bus: *bus, BusDir: tmp})
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "\nThe shop is open. The server: %s (console, /metrics). The cart API: %s\n", s.serverURL, strings.Join(s.cartURLs, " "))
	fmt.Fprintf(stdout, "Try: go run ./examples/shop customers --cart %s\nCtrl-C stops every service, then the server.\n\n", s.cartURLs[0])
	var died error
	select {
	case <-ctx.Done():
	case c := <-s.died:
		died = fmt.Errorf("%s exited: %v", c.name, c.err)
		fmt.Fprintf(stdout, "%v: stopping the shop\n", died)
	}
	fmt.Fprintln(stdout, "stopping: the cart API, then the consumers, then the server")
	return errors.Join(died, s.stop())
}

// cartAddrs returns n addresses from addr, on consecutive ports (or all on port 0).
func cartAddrs(addr string, n int) ([]string, error) {
	host, port, err := net.SplitHostPort(addr)
	p, perr := strconv.Atoi(port)
	if err != nil || perr != nil || p < 0 || p+n > 65536 {
		return nil, fmt.Errorf("--addr %q: want host:port", addr)
	}
	out := make([]string, n)
	for i := range out {
		q := p
		if p != 0 {
			q += i
		}
		out[i] = net.JoinHostPort(host, strconv.Itoa(q))
	}
	return out, nil
}
