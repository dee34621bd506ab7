package query

import "context"

// Scanner is a read model that walks its rows with a callback, in byte-wise key order:
// tables.Table[T] is one. [FromScanner] makes a [Source] of it.
type Scanner[V any] interface {
	// Get returns the row key and whether it exists.
	Get(ctx context.Context, key string) (V, bool, error)
	// Scan calls fn with the rows whose key starts with prefix and comes after after (when not
	// empty), in key order, until fn returns false.
	Scan(ctx context.Context, prefix, after string, fn func(key string, v V) bool) error
}

// FromScanner returns the [Source] of s: a page stops s's walk once it has read the rows of
// the page and one more (to learn whether another page follows), so a page reads and holds
// no more than that. It is safe for concurrent use when s is.
func FromScanner[V any](s Scanner[V]) Source[V] { return scannerSource[V]{s} }

type scannerSource[V any] struct{ s Scanner[V] }

func (s scannerSource[V]) Get(ctx context.Context, key string) (V, bool, error) {
	return s.s.Get(ctx, key)
}

func (s scannerSource[V]) Scan(ctx context.Context, opts ScanOptions) (ScanPage[V], error) {
	limit, err := opts.PageSize()
	if err != nil {
		return ScanPage[V]{}, err
	}
	var items []Item[V]
	err = s.s.Scan(ctx, opts.Prefix, opts.After, func(key string, v V) bool {
		items = append(items, Item[V]{key, v})
		return len(items) <= limit
	})
	if err != nil {
		return ScanPage[V]{}, err
	}
	return NewScanPage(items, limit), nil
}
