package query

import (
	"context"
	"slices"
	"strings"

	"github.com/annalsdb/annals/projection"
)

// FromMemory returns a [Source] over the active generation of projection name in m: rows
// returns the model's rows by id (it runs under m's read lock and must not change the model).
// A Scan walks the model's rows under the lock, keeping the keys of one page (and one more),
// and copies out the rows of that page.
//
// The copies are shallow: Get and Scan hand out the V values themselves, so when V is or holds
// a pointer, a slice or a map, the caller shares it with the model. The projection's handler
// must then not change such a value in place (it would race with queries that hold it, and
// change what they returned): either the handler stores a new value for the row (copy, then
// modify), or M has a Clone method that copies those values too, so that [projection.Memory]
// applies each update to a clone and never changes a model queries have read.
func FromMemory[M, V any](m *projection.Memory[M], name string, rows func(M) map[string]V) Source[V] {
	return memorySource[M, V]{m: m, name: name, rows: rows}
}

type memorySource[M, V any] struct {
	m    *projection.Memory[M]
	name string
	rows func(M) map[string]V
}

func (s memorySource[M, V]) Get(ctx context.Context, key string) (v V, ok bool, err error) {
	if err := ctx.Err(); err != nil {
		return v, false, err
	}
	s.m.Read(s.name, func(model M, _ uint64) { v, ok = s.rows(model)[key] })
	return v, ok, nil
}

func (s memorySource[M, V]) Scan(ctx context.Context, opts ScanOptions) (ScanPage[V], error) {
	limit, err := opts.PageSize()
	if err != nil {
		return ScanPage[V]{}, err
	}
	if err := ctx.Err(); err != nil {
		return ScanPage[V]{}, err
	}
	var items []Item[V]
	s.m.Read(s.name, func(model M, _ uint64) {
		rows := s.rows(model)
		// The limit+1 smallest keys that match, in memory of O(limit): whenever twice that
		// many are collected, sort them and keep the smallest.
		keys := make([]string, 0, 2*(limit+1))
		for k := range rows {
			if !strings.HasPrefix(k, opts.Prefix) || opts.After != "" && k <= opts.After {
				continue
			}
			if len(keys) == cap(keys) {
				slices.Sort(keys)
				keys = keys[:limit+1]
			}
			keys = append(keys, k)
		}
		slices.Sort(keys)
		keys = keys[:min(len(keys), limit+1)]
		items = make([]Item[V], len(keys))
		for i, k := range keys {
			items[i] = Item[V]{k, rows[k]}
		}
	})
	return NewScanPage(items, limit), nil
}
