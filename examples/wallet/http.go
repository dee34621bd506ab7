package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"time"

	"github.com/annalsdb/annals/decider"
	"github.com/annalsdb/annals/examples/wallet/wallet"
	"github.com/annalsdb/annals/query"
)

// maxWait bounds how long a query waits for the read model to reach its position.
const maxWait = 5 * time.Second

// routes is the HTTP API: a POST per command, a GET per query, and the runners' status.
func (s *service) routes() http.Handler {
	mux := http.NewServeMux()
	mux.Handle("POST /wallets/{id}/open", command[wallet.Open](s))
	mux.Handle("POST /wallets/{id}/deposit", command[wallet.Deposit](s))
	mux.Handle("POST /wallets/{id}/transfer", command[wallet.Transfer](s))
	mux.HandleFunc("GET /wallets/{id}", s.balance)
	mux.HandleFunc("GET /status", s.status)
	return mux
}

// command handles the command C, given as a JSON body, on the wallet of the path, and answers
// the position it wrote: pass it to a query to read your write.
func command[C wallet.Command](s *service) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		var cmd C
		id := r.PathValue("id")
		if err := errors.Join(wallet.ValidID(id), decode(w, r, &cmd)); err != nil {
			reply(w, http.StatusBadRequest, err)
			return
		}
		res, err := s.wallets.Handle(r.Context(), wallet.Stream(id), cmd,
			&decider.CommandOptions{IdempotencyKey: r.Header.Get("Idempotency-Key")})
		if err != nil {
			s.fail(w, err)
			return
		}
		reply(w, http.StatusOK, map[string]any{"position": res.Position, "duplicate": res.Duplicate})
	}
}

// balance answers a wallet's row; ?position=N waits until the read model reflects position N.
func (s *service) balance(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	if err := wallet.ValidID(id); err != nil {
		reply(w, http.StatusBadRequest, err)
		return
	}
	var opts query.Options
	for k, v := range r.URL.Query() {
		n, err := strconv.ParseUint(v[0], 10, 64)
		if k != "position" || len(v) != 1 || err != nil {
			reply(w, http.StatusBadRequest, fmt.Errorf("query parameter %s=%q: want one position=N", k, v))
			return
		}
		opts.Position = n
	}
	ctx, cancel := context.WithTimeout(r.Context(), maxWait)
	defer cancel()
	b, err := s.queries.GetByID(ctx, id, &opts)
	if err != nil {
		s.fail(w, fmt.Errorf("wallet %s: %w", id, err))
		return
	}
	reply(w, http.StatusOK, b)
}

// runnerStatus is what GET /status says of a runner.
type runnerStatus struct {
	Name     string `json:"name"`
	State    string `json:"state"`            // live, standing-by, running, retrying, …
	Holder   string `json:"holder,omitempty"` // the replica holding the runner's lease
	Position uint64 `json:"position"`         // the last event handled
	Error    string `json:"error,omitempty"`
}

// status answers the status of the replica's runners.
func (s *service) status(w http.ResponseWriter, r *http.Request) {
	ps, err := s.balances.Status(r.Context())
	if err != nil {
		s.fail(w, err)
		return
	}
	ts := s.transfers.Status()
	reply(w, http.StatusOK, map[string]any{"replica": s.replica, "runners": []runnerStatus{
		{ps.Name, ps.State.String(), holder(ps.Supervisor), ps.Position, errString(ps.LastError)},
		{"transfer", ts.Supervisor.State.String(), holder(ts.Supervisor), ts.Position, errString(ts.Supervisor.Err)},
	}})
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
// a command the wallet refuses, 404, 503 when the read model is late; 500 and only a generic
// message otherwise.
func (s *service) fail(w http.ResponseWriter, err error) {
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

func errString(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}
