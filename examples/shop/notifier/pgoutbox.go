package notifier

import (
	"context"
	"iter"

	"github.com/annalsdb/annals"
	"github.com/annalsdb/annals/codec"
	"github.com/annalsdb/annals/pgstore"
	"github.com/annalsdb/annals/projection"
)

// Postgres is the notifier with its outbox in the PostgreSQL database of a pgstore.Store: an
// outbox table per generation of the projection, written in the transaction that moves its
// checkpoint, so that each event makes exactly one message there too.
type Postgres struct {
	reg   *codec.Registry
	s     *pgstore.Store
	store *pgstore.Projections
}

// NewPostgres returns the notifier whose outbox is kept in the database of s.
func NewPostgres(s *pgstore.Store, reg *codec.Registry) *Postgres {
	return &Postgres{reg: reg, s: s, store: pgstore.NewProjections(s, &pgstore.ProjectionsOptions{
		Setup: func(ctx context.Context, tx *pgstore.ProjectionTx) error {
			_, err := tx.Tx.Exec(ctx, "CREATE TABLE "+tx.Schema()+`.outbox (position bigint PRIMARY KEY, cart text NOT NULL, text text NOT NULL)`)
			return err
		},
	})}
}

// Store returns the projection store that holds the outbox: the runner's target.
func (n *Postgres) Store() *pgstore.Projections { return n.store }

// Projection returns the projection that fills the outbox.
func (n *Postgres) Projection() projection.Projection[*pgstore.ProjectionTx] {
	return projection.Projection[*pgstore.ProjectionTx]{Name: Name, Filter: filter, Handle: n.handle}
}

func (n *Postgres) handle(ctx context.Context, tx *pgstore.ProjectionTx, ev annals.RecordedEvent) error {
	m, ok, err := message(n.reg, ev)
	if err != nil || !ok {
		return err
	}
	_, err = tx.Tx.Exec(ctx, "INSERT INTO "+tx.Schema()+".outbox VALUES ($1, $2, $3)", int64(m.Position), m.Cart, m.Text)
	return err
}

// Outbox yields the messages waiting to be sent, oldest first.
func (n *Postgres) Outbox(ctx context.Context) iter.Seq2[Message, error] {
	return func(yield func(Message, error) bool) {
		stopped := false
		err := n.store.Read(ctx, Name, func(schema string) error {
			rows, err := n.s.Pool().Query(ctx, "SELECT position, cart, text FROM "+schema+".outbox ORDER BY position")
			if err != nil {
				return err
			}
			defer rows.Close()
			for rows.Next() {
				var m Message
				var pos int64
				if err := rows.Scan(&pos, &m.Cart, &m.Text); err != nil {
					return err
				}
				m.Position = uint64(pos)
				if !yield(m, nil) {
					stopped = true
					return nil
				}
			}
			return rows.Err()
		})
		if err != nil && !stopped {
			yield(Message{}, err)
		}
	}
}
