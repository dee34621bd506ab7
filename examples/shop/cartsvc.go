package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/annalsdb/annals"
	"github.com/annalsdb/annals/codec"
	"github.com/annalsdb/annals/decider"
	"github.com/annalsdb/annals/examples/shop/cart"
	"github.com/annalsdb/annals/examples/shop/cartview"
	"github.com/annalsdb/annals/examples/shop/services"
	"github.com/annalsdb/annals/projection"
	"github.com/annalsdb/annals/query"
)

// maxWait bounds how long a query waits for the read model to reach its position.
const maxWait = 5 * time.Second

// cartService is one replica of the cart service: the cart's command handler over the
// server, and the cart read model (package cartview) kept in memory by a projection that
// follows the server's log from the beginning when the replica starts.
type cartService struct {
	log     *slog.Logger
	carts   *decider.Handler[cart.State, cart.Command, cart.Event]
	view    *projection.Runner[map[string]cartview.CartView]
	queries *query.Handler[cartview.CartView]
}

// runCart is "shop cart": one replica of the cart service, serving its HTTP API until ctx
// ends. listening, when not nil, is told the address it serves on.
func runCart(ctx context.Context, args []string, log *slog.Logger, listening func(addr string)) error {
	fs := flag.NewFlagSet("shop cart", flag.ContinueOnError)
	sf := addServerFlags(fs, "cart")
	addr := fs.String("addr", "127.0.0.1:8080", "address to serve the cart API on")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("shop cart: unexpected arguments %q", fs.Args())
	}
	c, err := sf.open(ctx)
	if err != nil {
		return err
	}
	defer c.Close()
	reg, err := services.Registry()
	if err != nil {
		return err
	}
	s := &cartService{log: log}
	if s.carts, err = decider.NewHandler(c, reg, cart.Decider, &decider.Options[cart.Command]{
		Validate: cart.Validate, CacheSize: 10_000}); err != nil {
		return err
	}
	if err := s.readModel(c, reg); err != nil {
		return err
	}
	ln, err := net.Listen("tcp", *addr)
	if err != nil {
		return err
	}
	log.Info("cart API", "url", "http://"+ln.Addr().String(), "replica", *sf.replica, "server", *sf.server)
	if listening != nil {
		listening(ln.Addr().String())
	}
	return s.serve(ctx, ln)
}

// readModel sets up the cart view in memory, its runner over events, and its queries.
func (s *cartService) readModel(events annals.ReadSubscriber, reg *codec.Registry) error {
	mem := projection.NewMemory(func() map[string]cartview.CartView { return map[string]cartview.CartView{} })
	var err error
	s.view, err = projection.NewRunner(events, mem, cartview.MemoryProjection(reg), nil)
	if err != nil {
		return err
	}
	src := query.FromMemory(mem, cartview.Name, func(m map[string]cartview.CartView) map[string]cartview.CartView { return m })
	s.queries = query.New(src, &query.HandlerOptions{Runner: s.view})
	return nil
}

// serve runs the read model and serves the API on ln until ctx is done or one of them fails;
// then it lets the requests in flight finish and stops the read model. It returns nil after
// ctx is done, else what failed.
func (s *cartService) serve(ctx context.Context, ln net.Listener) error {
	runCtx, stopRunner := context.WithCancel(context.WithoutCancel(ctx))
	defer stopRunner()
	failed := make(chan error, 2)
	var wg sync.WaitGroup
	wg.Go(func() {
		if err := s.view.Run(runCtx); runCtx.Err() == nil {
			failed <- fmt.Errorf("cart view: %w", err)
		}
	})
	srv := &http.Server{Handler: s.routes(), ReadHeaderTimeout: 10 * time.Second}
	wg.Go(func() {
		if err := srv.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
			failed <- err
		}
	})
	var err error
	select {
	case <-ctx.Done():
		s.log.Info("shutting down")
	case err = <-failed:
	}
	shutdown, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	err = errors.Join(err, srv.Shutdown(shutdown))
	stopRunner()
	wg.Wait()
	return err
}

// routes is the cart API.
func (s *cartService) routes() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("POST /carts/{id}/add", s.add)
	mux.HandleFunc("POST /carts/{id}/remove", s.remove)
	mux.HandleFunc("POST /carts/{id}/place", s.place)
	mux.HandleFunc("GET /carts/{id}", s.get)
	mux.HandleFunc("GET /carts", s.list)
	mux.HandleFunc("GET /products", func(w http.ResponseWriter, r *http.Request) { reply(w, http.StatusOK, catalog) })
	return mux
}

// itemRequest is the body of add and remove.
type itemRequest struct {
	SKU string `json:"sku"`
	Qty int    `json:"qty"`
}

func (s *cartService) add(w http.ResponseWriter, r *http.Request) {
	var req itemRequest
	if err := decode(w, r, &req); err != nil {
		reply(w, http.StatusBadRequest, err)
		return
	}
	p, ok := price(req.SKU)
	if !ok {
		reply(w, http.StatusBadRequest, fmt.Errorf("sku %q: the shop does not sell it", req.SKU))
		return
	}
	s.command(w, r, cart.AddItem{SKU: req.SKU, Qty: req.Qty, UnitPrice: p})
}

func (s *cartService) remove(w http.ResponseWriter, r *http.Request) {
	var req itemRequest
	if err := decode(w, r, &req); err != nil {
		reply(w, http.StatusBadRequest, err)
		return
	}
	s.command(w, r, cart.RemoveItem(req))
}

func (s *cartService) place(w http.ResponseWriter, r *http.Request) {
	if r.ContentLength != 0 {
		var empty struct{}
		if err := decode(w, r, &empty); err != nil {
			reply(w, http.StatusBadRequest, err)
			return
		}
	}
	s.command(w, r, cart.PlaceOrder{})
}

// command handles cmd on the cart of the path and answers the position it wrote: pass it to
// a query to read your write. The Idempotency-Key header makes a retried request write
// nothing more.
func (s *cartService) command(w http.ResponseWriter, r *http.Request, cmd cart.Command) {
	id := r.PathValue("id")
	if err := validID(id); err != nil {
		reply(w, http.StatusBadRequest, err)
		return
	}
	res, err := s.carts.Handle(r.Context(), cart.Stream(id), cmd,
		&decider.CommandOptions{IdempotencyKey: r.Header.Get("Idempotency-Key")})
	if err != nil {
		s.fail(w, err)
		return
	}
	reply(w, http.StatusOK, map[string]any{"position": res.Position, "revision": res.Revision, "duplicate": res.Duplicate})
}

// get answers a cart's row; ?position=N waits until the read model reflects position N.
func (s *cartService) get(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	if err := validID(id); err != nil {
		reply(w, http.StatusBadRequest, err)
		return
	}
	q, err := params(r, "position")
	if err != nil {
		reply(w, http.StatusBadRequest, err)
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), maxWait)
	defer cancel()
	v, err := s.queries.GetByID(ctx, id, &query.Options{Position: q["position"]})
	if err != nil {
		s.fail(w, fmt.Errorf("cart %s: %w", id, err))
		return
	}
	reply(w, http.StatusOK, v)
}

// list answers a page of carts, by id: ?limit=N (default 100), ?page=TOKEN (the previous
// page's next), ?position=N, ?status=S (open, placed, …).
func (s *cartService) list(w http.ResponseWriter, r *http.Request) {
	q, err := params(r, "position", "limit", "page", "status")
	if err != nil {
		reply(w, http.StatusBadRequest, err)
		return
	}
	opts := &query.ListOptions[cartview.CartView]{Options: query.Options{Position: q["position"]},
		Limit: int(q["limit"]), PageToken: r.URL.Query().Get("page")}
	if st := r.URL.Query().Get("status"); st != "" {
		switch cart.Status(st) {
		case cart.Open, cart.Placed, cart.Confirmed, cart.Paid, cart.Rejected, cart.Cancelled:
		default:
			reply(w, http.StatusBadRequest, fmt.Errorf("query parameter status=%q: not a cart's status", st))
			return
		}
		opts.Filter = cartview.ByStatus(cart.Status(st))
	}
	ctx, cancel := context.WithTimeout(r.Context(), maxWait)
	defer cancel()
	page, err := s.queries.GetAll(ctx, opts)
	if err != nil {
		s.fail(w, err)
		return
	}
	carts := make([]cartview.CartView, len(page.Items))
	for i, it := range page.Items {
		carts[i] = it.Value
	}
	reply(w, http.StatusOK, map[string]any{"carts": carts, "next": page.NextPageToken})
}

// params checks that r's query has only the names given, each once, and returns the numeric
// ones ("page" and "status" are strings, left in r.URL.Query()).
func params(r *http.Request, names ...string) (map[string]uint64, error) {
	out := map[string]uint64{}
	for k, v := range r.URL.Query() {
		known := false
		for _, n := range names {
			known = known || n == k
		}
		if !known || len(v) != 1 {
			return nil, fmt.Errorf("query parameter %s=%q: want one of %v, once", k, v, names)
		}
		if k == "page" || k == "status" {
			continue
		}
		n, err := strconv.ParseUint(v[0], 10, 64)
		if err != nil {
			return nil, fmt.Errorf("query parameter %s=%q: want a number", k, v[0])
		}
		out[k] = n
	}
	return out, nil
}

// validID checks a cart id: 1 to 64 letters, digits, '_' or '.'.
func validID(id string) error {
	if id == "" || len(id) > 64 {
		return fmt.Errorf("cart id %q: want 1 to 64 letters, digits, '_' or '.'", id)
	}
	for _, r := range id {
		if !('a' <= r && r <= 'z' || 'A' <= r && r <= 'Z' || '0' <= r && r <= '9' || r == '_' || r == '.') {
			return fmt.Errorf("cart id %q: want 1 to 64 letters, digits, '_' or '.'", id)
		}
	}
	return nil
}

// decode decodes the request's JSON body into v, strictly: one value, no unknown field.
func decode(w http.ResponseWriter, r *http.Request, v any) error {
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, 64<<10))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return fmt.Errorf("request body: %w", err)
	}
	if dec.Decode(new(json.RawMessage)) != io.EOF {
		return errors.New("request body: more than one JSON value")
	}
	return nil
}

// fail answers err with its status code: 400 for a command or query that cannot be, 409 for
// a command the cart refuses, 404, 503 when the read model is late; 500 and only a generic
// message otherwise.
func (s *cartService) fail(w http.ResponseWriter, err error) {
	code := http.StatusInternalServerError
	switch {
	case errors.Is(err, decider.ErrInvalidCommand), errors.Is(err, query.ErrInvalid):
		code = http.StatusBadRequest
	case errors.Is(err, decider.ErrRefused):
		code = http.StatusConflict
	case errors.Is(err, query.ErrNotFound):
		code = http.StatusNotFound
	case errors.Is(err, context.DeadlineExceeded):
		code, err = http.StatusServiceUnavailable, errors.New("the read model has not reached the position yet: try again")
	default:
		s.log.Error("request failed", "err", err)
		err = errors.New("internal error")
	}
	reply(w, code, err)
}

// reply writes v (an error as {"error": message}) as JSON with the status code.
func reply(w http.ResponseWriter, code int, v any) {
	if err, ok := v.(error); ok {
		v = map[string]string{"error": err.Error()}
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	json.NewEncoder(w).Encode(v)
}
