// Package query is the query side of an Annals application, kept apart from the command side:
// typed query handlers over read models ([Handler.GetByID], and [Handler.GetAll] with paging
// and filters), with read-your-writes.
//
// A [Handler] reads a [Source]: rows keyed by string, read a bounded page at a time in key
// order. [FromMemory] makes one of a projection.Memory read model, [FromScanner] one of a read
// model that walks its rows with a callback (tables.Table[T], the embedded store's side
// tables), and pgstore.QueryTable one of a table of a PostgreSQL read model.
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

// Bounds of a page, of [Handler.GetAll] and of [Source.Scan].
const (
	// DefaultLimit is the page size when none is given.
	DefaultLimit = 100
	// MaxLimit is the largest page size: a larger one is an error ([ErrInvalid]).
	MaxLimit = 1000
	// MaxScanned is how many rows one [Handler.GetAll] call reads at most when a Filter
	// refuses rows: past it, the page is returned with fewer rows than asked (even none) and
	// a NextPageToken that goes on from the last row read.
	MaxScanned = 10 * MaxLimit
)

// Errors of the package. Check them with errors.Is.
var (
	// ErrNotFound: no row has the id.
	ErrNotFound = errors.New("query: not found")
	// ErrInvalid: a bad page token, a page size below 0 or above [MaxLimit], or a Position
	// with no Waiter to wait on.
	ErrInvalid = errors.New("query: invalid argument")
)

// Waiter is what a query waits on for read-your-writes: *projection.Runner satisfies it.
type Waiter interface {
	// WaitFor returns once the read model reflects every event up to position, or with an
	// error (ctx's, or the projection's failure).
	WaitFor(ctx context.Context, position uint64) error
}

// Source is a read model a [Handler] reads: rows of V keyed by non-empty strings, in byte-wise
// key order. Implementations must be safe for concurrent use.
type Source[V any] interface {
	// Get returns the row key and whether it exists.
	Get(ctx context.Context, key string) (V, bool, error)
	// Scan returns a page of the rows whose key starts with opts.Prefix and comes after
	// opts.After (when not empty), in key order: at most opts.Limit rows (see
	// [ScanOptions.PageSize], which every Source calls to read the limit), and the cursor of
	// the next page. Each page is read on its own: rows written between two pages show in the
	// next one when their key is past the cursor.
	Scan(ctx context.Context, opts ScanOptions) (ScanPage[V], error)
}

// ScanOptions choose a page of [Source.Scan].
type ScanOptions struct {
	// Prefix keeps only the rows whose key starts with it.
	Prefix string
	// After, when not empty, starts after this key: the Next of the previous page.
	After string
	// Limit is the page size: 0 means [DefaultLimit]; below 0 or above [MaxLimit] is an error.
	Limit int
}

// PageSize returns the number of rows a page of o holds at most, or an error matching
// [ErrInvalid] that names a Limit below 0 or above [MaxLimit]. It is the one reading of the
// limit that every [Source] applies.
func (o ScanOptions) PageSize() (int, error) {
	switch {
	case o.Limit == 0:
		return DefaultLimit, nil
	case o.Limit < 0 || o.Limit > MaxLimit:
		return 0, fmt.Errorf("%w: page size %d: want 0 (the default, %d) to %d", ErrInvalid, o.Limit, DefaultLimit, MaxLimit)
	}
	return o.Limit, nil
}

// ScanPage is a page of [Source.Scan].
type ScanPage[V any] struct {
	Items []Item[V]
	// Next is the cursor of the following page (pass it as ScanOptions.After): the key of the
	// last item. It is empty when no row follows this page.
	Next string
}

// NewScanPage returns the page of rows, which holds the rows found for a page of size limit
// and at most one more (a Source reads limit+1 rows to learn whether another page follows).
func NewScanPage[V any](rows []Item[V], limit int) ScanPage[V] {
	if len(rows) <= limit {
		return ScanPage[V]{Items: rows}
	}
	rows = rows[:limit]
	return ScanPage[V]{Items: rows, Next: rows[len(rows)-1].ID}
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
	// Limit is the page size: 0 means [DefaultLimit]; below 0 or above [MaxLimit] is an
	// error.
	Limit int
	// Filter, when not nil, keeps only the rows for which it returns true. Pages are filled
	// with matching rows as far as [MaxScanned] rows read allow: a page may then hold fewer
	// rows than Limit, and still have a NextPageToken.
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
	// is the last page. With a Filter, the page it leads to may be empty.
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
// With opts.Position it first waits for the read model to reflect that position. It reads the
// source a page at a time, and at most [MaxScanned] rows. Errors: [ErrInvalid] for a bad page
// token or limit, the wait's, the source's.
func (h *Handler[V]) GetAll(ctx context.Context, opts *ListOptions[V]) (Page[V], error) {
	var o ListOptions[V]
	if opts != nil {
		o = *opts
	}
	limit, err := ScanOptions{Limit: o.Limit}.PageSize()
	if err != nil {
		return Page[V]{}, err
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
	scan := ScanOptions{Prefix: o.Prefix, After: after, Limit: limit}
	if o.Filter != nil {
		scan.Limit = max(limit, DefaultLimit)
	}
	var page Page[V]
	for scanned := 0; scanned < MaxScanned; {
		scan.Limit = min(scan.Limit, MaxScanned-scanned)
		sp, err := h.src.Scan(ctx, scan)
		if err != nil {
			return Page[V]{}, fmt.Errorf("query: list: %w", err)
		}
		for _, it := range sp.Items {
			scanned++
			if o.Filter != nil && !o.Filter(it.ID, it.Value) {
				continue
			}
			if len(page.Items) == limit { // a further row: there is a next page
				return page.next(page.Items[len(page.Items)-1].ID), nil
			}
			page.Items = append(page.Items, it)
		}
		switch {
		case sp.Next == "":
			return page, nil
		case len(sp.Items) == 0:
			return Page[V]{}, fmt.Errorf("query: list: the source returned an empty page with a next cursor %q", sp.Next)
		case len(page.Items) == limit:
			return page.next(sp.Next), nil
		}
		scan.After = sp.Next
	}
	return page.next(scan.After), nil
}

// next sets the page's NextPageToken to continue after key.
func (p Page[V]) next(key string) Page[V] {
	p.NextPageToken = base64.RawURLEncoding.EncodeToString([]byte(key))
	return p
}
