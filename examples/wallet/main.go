// Command wallet is a complete, small service on the toolkit: wallets that take deposits,
// withdrawals and transfers over an HTTP API (command handlers), their balances as a read
// model (a projection, queried with read-your-writes), a process manager that completes each
// transfer, every runner supervised under a lease so that replicas share the work, and a
// graceful shutdown.
//
//	go run ./examples/wallet --data wallet-data            # the embedded store, on :8080
//	go run ./examples/wallet --postgres postgres://localhost/wallet
//
// docs/service.md walks through it.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"sync"
	"syscall"
	"time"

	"github.com/annalsdb/annals/filestore"
	"github.com/annalsdb/annals/lease"
	"github.com/annalsdb/annals/pgstore"
	"github.com/annalsdb/annals/tables"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], slog.Default(), nil); err != nil {
		fmt.Fprintln(os.Stderr, "wallet:", err)
		os.Exit(1)
	}
}

// run runs the service until ctx is done, then shuts it down and returns nil. listening, when
// not nil, is told the address it serves on.
func run(ctx context.Context, args []string, log *slog.Logger, listening func(addr string)) error {
	fs := flag.NewFlagSet("wallet", flag.ContinueOnError)
	addr := fs.String("addr", "localhost:8080", "address to serve the HTTP API on")
	data := fs.String("data", "", "data directory of the embedded store (default: a temporary one)")
	pgURL := fs.String("postgres", "", "keep the events and the read model in PostgreSQL at this URL")
	schema := fs.String("schema", pgstore.DefaultSchema, "with --postgres: the store's schema")
	replica := fs.String("replica", lease.NewHolder(), "this replica's name, as the leases show it")
	ttl := fs.Duration("lease-ttl", lease.DefaultTTL, "time to live of the runners' leases")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *data != "" && *pgURL != "" {
		return errors.New("--data and --postgres: choose one store")
	}
	var st stores
	if *pgURL != "" {
		pg, err := pgstore.Open(ctx, *pgURL, &pgstore.Options{Schema: *schema})
		if err != nil {
			return err
		}
		defer pg.Close()
		st = stores{events: pg, pg: pg}
	} else {
		if *data == "" {
			tmp, err := os.MkdirTemp("", "wallet-")
			if err != nil {
				return err
			}
			defer os.RemoveAll(tmp)
			*data = tmp
		}
		events, err := filestore.Open(*data, nil)
		if err != nil {
			return err
		}
		defer events.Close()
		db, err := tables.Open(filepath.Join(*data, "tables"), nil)
		if err != nil {
			return err
		}
		defer db.Close()
		st = stores{events: events, tables: db}
	}
	s, err := newService(st, *replica, *ttl, log)
	if err != nil {
		return err
	}
	ln, err := net.Listen("tcp", *addr)
	if err != nil {
		return err
	}
	log.Info("serving", "addr", ln.Addr().String(), "replica", *replica)
	if listening != nil {
		listening(ln.Addr().String())
	}
	return s.serve(ctx, ln)
}

// serve runs the replica's runners and serves its API on ln until ctx is done or one of them
// fails. Then it stops accepting requests and lets those in flight finish, stops the runners,
// and waits for them: the caller may close the stores when it returns. It returns nil after
// ctx is done, else what failed.
func (s *service) serve(ctx context.Context, ln net.Listener) error {
	runCtx, stopRunners := context.WithCancel(context.WithoutCancel(ctx))
	defer stopRunners()
	failed := make(chan error, 3)
	var wg sync.WaitGroup
	for name, run := range map[string]func(context.Context) error{
		"balances": s.balances.Run,
		"transfer": s.transfers.Run,
	} {
		wg.Go(func() {
			if err := run(runCtx); runCtx.Err() == nil {
				failed <- fmt.Errorf("%s: %w", name, err) // a permanent error: the replica stops
			}
		})
	}
	srv := &http.Server{Handler: s.routes(), ReadHeaderTimeout: 10 * time.Second}
	wg.Go(func() {
		if err := srv.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
			failed <- err
		}
	})
	var err error
	select {
	case <-ctx.Done():
		s.log.Info("shutting down", "replica", s.replica)
	case err = <-failed:
	}
	shutdown, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	err = errors.Join(err, srv.Shutdown(shutdown)) // no new requests; those in flight finish
	stopRunners()
	wg.Wait()
	return err
}
