package main

import (
	"cmp"
	"context"
	"log/slog"
	"time"

	"github.com/annalsdb/annals"
	"github.com/annalsdb/annals/codec"
	"github.com/annalsdb/annals/decider"
	"github.com/annalsdb/annals/examples/wallet/wallet"
	"github.com/annalsdb/annals/pgstore"
	"github.com/annalsdb/annals/process"
	"github.com/annalsdb/annals/projection"
	"github.com/annalsdb/annals/query"
	"github.com/annalsdb/annals/supervisor"
	"github.com/annalsdb/annals/tables"
)

// stores are what a replica runs on: the events, and the read model's store beside them.
type stores struct {
	events annals.Store
	tables *tables.DB     // the read model in the embedded store's side tables, or
	pg     *pgstore.Store // in the PostgreSQL database of the events
}

// service is one replica of the wallet service.
type service struct {
	log       *slog.Logger
	replica   string
	wallets   *decider.Handler[wallet.State, wallet.Command, wallet.Event]
	balances  readModel
	queries   *query.Handler[Balance]
	transfers *process.Runner[transfer]
}

// readModel is the balances' runner, whichever store keeps them.
type readModel interface {
	Run(ctx context.Context) error
	WaitFor(ctx context.Context, position uint64) error
	Status(ctx context.Context) (projection.Status, error)
}

// newService wires a replica over st. Replicas of one store share the work: each runner works
// on one replica, under a lease of time to live ttl, while the others stand by.
func newService(st stores, replica string, ttl time.Duration, log *slog.Logger) (*service, error) {
	reg := codec.New(nil)
	if err := wallet.Register(reg); err != nil {
		return nil, err
	}
	s := &service{log: log, replica: replica}
	var err error
	s.wallets, err = decider.NewHandler(st.events, reg, wallet.Decider,
		&decider.Options[wallet.Command]{Validate: wallet.Validate, CacheSize: 1000})
	if err != nil {
		return nil, err
	}
	policy := func(runner string) supervisor.Policy {
		return supervisor.Policy{Holder: replica, TTL: ttl, OnChange: func(st supervisor.Status) {
			log.Info("runner", "runner", runner, "replica", replica, "state", st.State, "holder", holder(st), "err", st.Err)
		}}
	}
	if s.balances, s.queries, err = balances(st, reg, &projection.RunnerOptions{Supervision: policy("balances")}); err != nil {
		return nil, err
	}
	send, err := process.HandlerSender(process.To("wallet", s.wallets))
	if err != nil {
		return nil, err
	}
	s.transfers, err = process.NewRunner(st.events, transfers(reg), send, &process.RunnerOptions{Supervision: policy("transfer")})
	return s, err
}

// Balance is a row of the read model.
type Balance struct {
	ID       string `json:"id"`
	Owner    string `json:"owner"`
	Balance  int64  `json:"balance"`
	Revision uint64 `json:"revision"` // of the wallet's last event the row reflects
}

// balances sets up the read model (a table in the side tables of the embedded store, or in
// the PostgreSQL database of the events), the runner of its projection, and its queries, which
// wait on the runner when given a position: read-your-writes.
func balances(st stores, reg *codec.Registry, opts *projection.RunnerOptions) (readModel, *query.Handler[Balance], error) {
	const name = "balances"
	filter := &annals.Filter{Categories: []string{"wallet"}}
	if st.pg != nil {
		t, err := pgstore.NewQueryTable[Balance](name, "balances")
		if err != nil {
			return nil, nil, err
		}
		target := pgstore.NewProjections(st.pg, &pgstore.ProjectionsOptions{Setup: t.Setup})
		r, err := projection.NewRunner(st.events, target, projection.Projection[*pgstore.ProjectionTx]{
			Name: name, Filter: filter,
			Handle: func(ctx context.Context, tx *pgstore.ProjectionTx, ev annals.RecordedEvent) error {
				return apply(reg, ev, func(id string) (Balance, bool, error) { return t.Read(ctx, tx, id) },
					func(id string, b Balance) error { return t.Put(ctx, tx, id, b) })
			},
		}, opts)
		return r, query.New(t.Source(target), &query.HandlerOptions{Runner: r}), err
	}
	t, err := tables.NewTable[Balance](st.tables, name, "balances")
	if err != nil {
		return nil, nil, err
	}
	r, err := projection.NewRunner(st.events, st.tables, projection.Projection[*tables.Tx]{
		Name: name, Filter: filter,
		Handle: func(_ context.Context, tx *tables.Tx, ev annals.RecordedEvent) error {
			return apply(reg, ev, func(id string) (Balance, bool, error) { return t.Read(tx, id) },
				func(id string, b Balance) error { return t.Put(tx, id, b) })
		},
	}, opts)
	return r, query.New(query.FromScanner[Balance](t), &query.HandlerOptions{Runner: r}), err
}

// apply applies ev to the row of its wallet, read with get and written with put.
func apply(reg *codec.Registry, ev annals.RecordedEvent, get func(string) (Balance, bool, error), put func(string, Balance) error) error {
	e, _, err := codec.Decode[wallet.Event](reg, ev)
	if err != nil {
		return err
	}
	id := wallet.ID(ev.Stream)
	b, _, err := get(id)
	if err != nil {
		return err
	}
	if o, ok := e.(wallet.Opened); ok {
		b.Owner = o.Owner
	}
	b.ID, b.Revision = id, ev.Revision
	b.Balance = wallet.Decider.Evolve(wallet.State{Open: true, Balance: b.Balance}, e).Balance // the decider's sums
	return put(id, b)
}

// transfer is the state of one transfer: the process credits the wallet a TransferSent names,
// and returns the money to the sender when that wallet refuses it.
type transfer struct {
	From, To string
	Amount   int64
}

// transfers is the transfer process manager; each transfer (a TransferSent event) is an
// instance.
func transfers(reg *codec.Registry) process.Manager[transfer, wallet.Event] {
	return process.Manager[transfer, wallet.Event]{
		Name:   "transfer",
		Filter: &annals.Filter{Categories: []string{"wallet"}, EventTypes: []string{"TransferSent"}},
		Decode: process.Decoder[wallet.Event](reg),
		Instance: func(_ wallet.Event, rec annals.RecordedEvent) (string, bool) {
			return rec.ID.String(), true
		},
		Initial: func() transfer { return transfer{} },
		React: func(_ string, t transfer, in process.Input[wallet.Event]) []process.Action {
			if sent, ok := in.Event.(wallet.TransferSent); ok && in.Recorded != nil {
				from := wallet.ID(in.Recorded.Stream)
				return []process.Action{process.Send{Stream: wallet.Stream(sent.To),
					Command: wallet.Receive{From: from, Amount: sent.Amount}}}
			}
			if in.Refusal != nil && in.Refusal.Stream == wallet.Stream(t.To) { // compensate
				return []process.Action{process.Send{Stream: wallet.Stream(t.From),
					Command: wallet.Return{To: t.To, Amount: t.Amount, Reason: in.Refusal.Error}}}
			}
			return nil
		},
		Evolve: func(t transfer, in process.Input[wallet.Event]) transfer {
			if sent, ok := in.Event.(wallet.TransferSent); ok && in.Recorded != nil {
				t = transfer{From: wallet.ID(in.Recorded.Stream), To: sent.To, Amount: sent.Amount}
			}
			return t
		},
	}
}

// holder is the replica that holds the lease st is about, this one's or another's.
func holder(st supervisor.Status) string {
	return cmp.Or(st.Lease.Holder, st.Other.Holder)
}
