// Package query is the query side of an Annals application, kept apart from the command side:
// typed query handlers over read models ([Handler.GetByID], and [Handler.GetAll] with paging
// and filters), with read-your-writes.
//
// A [Handler] reads a [Source]: tables.Table[T] is one (the embedded store's side tables), and
// [FromMemory] makes one of a projection.Memory read model. The source holds rows keyed by
// string in key order.
//
// # Read-your-writes
//
// A command's result carries the position of the events it appended. A query given that
// position ([Options].Position) first waits until the projection's runner (any [Waiter], such
// as *projection.Runner) has applied everything up to it, bounded by ctx, so that it never
// returns data older than the caller's own write. Without a position a query reads the read
// model as it is (eventually consistent).
package query

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
)

// DefaultLimit is the page size of [Handler.GetAll] when ListOptions.Limit is 0.
const DefaultLimit = 100

// Errors of the package. Check them with errors.Is.
var (
	// ErrNotFound: no row has the id.
	ErrNotFound = errors.New("query: not found")
	// ErrInvalid: a bad page token, or a Position with no Waiter to wait on.
	ErrInvalid = errors.New("query: invalid argument")
)

// Waiter is what a query waits on for read-your-writes: *projection.Runner satisfies it.
type Waiter interface {
	// WaitFor returns once the read model reflects every event up to position, or with an
	// error (ctx's, or the projection's failure).
	WaitFor(ctx context.Context, position uint64) error
}

// Source is a read model a [Handler] reads: rows of V keyed by string, in byte-wise key order.
// tables.Table[T] implements it.
type Source[V any] interface {
	// Get returns the row key and whether it exists.
	Get(ctx context.Context, key string) (V, bool, error)
	// Scan calls fn with the rows whose key starts with prefix and comes after after (when not
	// empty), in key order, until fn returns false.
	Scan(ctx context.Context, prefix, after string, fn func(key string, v V) bool) error
}

// Options are the consistency options of a query. The zero value (and nil) reads the read
// model as it is.
type Options struct {
	// Position, when not 0, makes the query wait until the handler's Waiter has applied every
	// event up to it (typically the position a command returned) before it reads.
	Position uint64
}

// ListOptions shape [Handler.GetAll]. The zero value (and nil) returns the first page of
// every row.
type ListOptions[V any] struct {
	Options
	// Prefix keeps only the rows whose id starts with it.
	Prefix string
	// PageToken continues after the page whose NextPageToken it is; empty starts at the
	// beginning.
	PageToken string
	// Limit is the page size; 0 means [DefaultLimit].
	Limit int
	// Filter, when not nil, keeps only the rows for which it returns true; pages are filled
	// with matching rows.
	Filter func(id string, v V) bool
}

// Item is a row of a result.
type Item[V any] struct {
	ID    string
	Value V
}

// Page is one page of [Handler.GetAll].
type Page[V any] struct {
	Items []Item[V]
	// NextPageToken continues the listing (pass it as ListOptions.PageToken); empty when this
	// is the last page.
	NextPageToken string
}

// HandlerOptions configure [New]. The zero value (and nil) means no Waiter.
type HandlerOptions struct {
	// Runner is what queries with a Position wait on: the runner of the projection that
	// builds the source.
	Runner Waiter
}

// Handler answers queries over one read model. It is a plain value, safe for concurrent use
// when its Source is.
type Handler[V any] struct {
	src    Source[V]
	waiter Waiter
}

// New returns a Handler over src.
func New[V any](src Source[V], opts *HandlerOptions) *Handler[V] {
	h := &Handler[V]{src: src}
	if opts != nil {
		h.waiter = opts.Runner
	}
	return h
}

func (h *Handler[V]) wait(ctx context.Context, opts *Options) error {
	if opts == nil || opts.Position == 0 {
		return nil
	}
	if h.waiter == nil {
		return fmt.Errorf("%w: a query with a position needs a handler with a Runner", ErrInvalid)
	}
	if err := h.waiter.WaitFor(ctx, opts.Position); err != nil {
		return fmt.Errorf("query: wait for position %d: %w", opts.Position, err)
	}
	return nil
}

// GetByID returns the row id. With opts.Position it first waits for the read model to reflect
// that position. Errors: [ErrNotFound], [ErrInvalid], the wait's (ctx's, or the projection's
// failure), the source's.
func (h *Handler[V]) GetByID(ctx context.Context, id string, opts *Options) (V, error) {
	var zero V
	if err := h.wait(ctx, opts); err != nil {
		return zero, err
	}
	v, ok, err := h.src.Get(ctx, id)
	if err != nil {
		return zero, fmt.Errorf("query: get %q: %w", id, err)
	}
	if !ok {
		return zero, fmt.Errorf("%w: %q", ErrNotFound, id)
	}
	return v, nil
}

// GetAll returns one page of the rows, in id order, that have the prefix and pass the filter.
// With opts.Position it first waits for the read model to reflect that position. Errors:
// [ErrInvalid] for a bad page token, the wait's, the source's.
func (h *Handler[V]) GetAll(ctx context.Context, opts *ListOptions[V]) (Page[V], error) {
	var o ListOptions[V]
	if opts != nil {
		o = *opts
	}
	if o.Limit <= 0 {
		o.Limit = DefaultLimit
	}
	after := ""
	if o.PageToken != "" {
		b, err := base64.RawURLEncoding.DecodeString(o.PageToken)
		if err != nil || len(b) == 0 {
			return Page[V]{}, fmt.Errorf("%w: page token %q", ErrInvalid, o.PageToken)
		}
		after = string(b)
	}
	if err := h.wait(ctx, &o.Options); err != nil {
		return Page[V]{}, err
	}
	var page Page[V]
	more := false
	err := h.src.Scan(ctx, o.Prefix, after, func(id string, v V) bool {
		if o.Filter != nil && !o.Filter(id, v) {
			return true
		}
		if len(page.Items) == o.Limit {
			more = true
			return false
		}
		page.Items = append(page.Items, Item[V]{ID: id, Value: v})
		return true
	})
	if err != nil {
		return Page[V]{}, fmt.Errorf("query: list: %w", err)
	}
	if more {
		page.NextPageToken = base64.RawURLEncoding.EncodeToString([]byte(page.Items[len(page.Items)-1].ID))
	}
	return page, nil
}
