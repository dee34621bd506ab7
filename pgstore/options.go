package pgstore

import (
	"fmt"
	"strings"
	"time"

	"github.com/annalsdb/annals"
	"github.com/annalsdb/annals/internal/rules"
)

// DefaultSchema is the schema a store uses when [Options].Schema is empty.
const DefaultSchema = "annals"

// Options configure [Open]. A nil *Options means all defaults; a zero field means its default.
type Options struct {
	// Schema is the PostgreSQL schema that holds the store's tables (created when missing), so
	// that several stores can share a database; default [DefaultSchema] ("annals"). At most 48
	// bytes, without a '$': the schemas of the store's projection generations are named
	// Schema$<n>_<generation> (see [Projections]).
	Schema string

	// Limits bounds event and append sizes; zero fields take the defaults of [annals.Limits]
	// (1 MiB per event, 16 MiB per append).
	Limits annals.Limits

	// MaxConns is the size of the connection pool; default 10. The store also keeps one more
	// connection of its own, outside the pool, to LISTEN for appends.
	MaxConns int32
	// MinConns is how many idle connections the pool keeps open; default 0.
	MinConns int32
	// MaxConnLifetime closes pooled connections older than this; default 1 hour.
	MaxConnLifetime time.Duration
	// MaxConnIdleTime closes pooled connections idle for longer than this; default 30 minutes.
	MaxConnIdleTime time.Duration
	// ConnectTimeout bounds each attempt to connect, unless the connection string sets
	// connect_timeout; default 10 seconds.
	ConnectTimeout time.Duration
	// StatementTimeout is the statement_timeout of every connection of the store: the server
	// cancels a statement that runs longer. Default 30 seconds; negative means no timeout.
	StatementTimeout time.Duration

	// PollInterval is how often the store reads the log's head when no notification came, so
	// that subscriptions still move if a notification is lost (for example while the listening
	// connection reconnects); default 1 second. It is one query per interval per store, however
	// many subscriptions run.
	PollInterval time.Duration
	// Writers is how many transactions of appends the store runs at once; default 2, so that
	// one batch prepares while the previous one commits.
	Writers int
	// MaxBatch is the most appends the store commits in one transaction; default 128. 1 turns
	// batching off.
	MaxBatch int
	// ReadBatch is how many events a read or subscription fetches per query; default 1024.
	ReadBatch int
}

func (o *Options) withDefaults() (Options, error) {
	var v Options
	if o != nil {
		v = *o
	}
	if v.Schema == "" {
		v.Schema = DefaultSchema
	}
	if len(v.Schema) > 48 {
		return v, fmt.Errorf("%w: pgstore schema name %q is longer than 48 bytes", annals.ErrInvalidArgument, v.Schema)
	}
	if strings.Contains(v.Schema, "$") {
		return v, fmt.Errorf("%w: pgstore schema name %q holds a '$', which names the schemas of projection generations", annals.ErrInvalidArgument, v.Schema)
	}
	if err := annals.ValidateStreamID(v.Schema); err != nil {
		return v, fmt.Errorf("%w: pgstore schema name %q: want printable UTF-8", annals.ErrInvalidArgument, v.Schema)
	}
	v.Limits = rules.Limits(v.Limits)
	if v.MaxConns <= 0 {
		v.MaxConns = 10
	}
	if v.MinConns < 0 || v.MinConns > v.MaxConns {
		v.MinConns = 0
	}
	if v.MaxConnLifetime <= 0 {
		v.MaxConnLifetime = time.Hour
	}
	if v.MaxConnIdleTime <= 0 {
		v.MaxConnIdleTime = 30 * time.Minute
	}
	if v.ConnectTimeout <= 0 {
		v.ConnectTimeout = 10 * time.Second
	}
	if v.StatementTimeout == 0 {
		v.StatementTimeout = 30 * time.Second
	}
	if v.PollInterval <= 0 {
		v.PollInterval = time.Second
	}
	if v.Writers <= 0 {
		v.Writers = 2
	}
	if v.MaxBatch <= 0 {
		v.MaxBatch = 128
	}
	if v.ReadBatch <= 0 {
		v.ReadBatch = 1024
	}
	return v, nil
}
