package tables

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"iter"

	"github.com/cockroachdb/pebble/v2"
)

// Table is a typed table of one projection: rows of T, stored as JSON, keyed by string and
// kept in byte-wise key order. Handlers write it through a [*Tx] ([Table.Put],
// [Table.Delete], [Table.Read]); queries read the active generation ([Table.Get],
// [Table.List], [Table.Scan]). A Table is a plain value, safe for concurrent use.
type Table[T any] struct {
	db         *DB
	projection string
	name       string
}

// Row is a row of a [Table].
type Row[T any] struct {
	Key   string
	Value T
}

// NewTable returns the table name of projection in db. It returns an error matching
// [ErrInvalid] for an empty name or one that holds a NUL byte.
func NewTable[T any](db *DB, projection, name string) (*Table[T], error) {
	if err := validName("projection", projection); err != nil {
		return nil, err
	}
	if err := validName("table", name); err != nil {
		return nil, err
	}
	return &Table[T]{db: db, projection: projection, name: name}, nil
}

// rowPrefix is genPrefix table 0x00.
func (t *Table[T]) rowPrefix(gen []byte) []byte {
	k := make([]byte, 0, len(gen)+len(t.name)+1)
	k = append(k, gen...)
	k = append(k, t.name...)
	return append(k, 0)
}

func (t *Table[T]) check(tx *Tx) error {
	switch {
	case tx == nil || tx.b == nil:
		return fmt.Errorf("%w: table %q used with a Tx outside its Update", ErrInvalid, t.name)
	case tx.db != t.db || tx.name != t.projection:
		return fmt.Errorf("%w: table %q of projection %q written in a Tx of projection %q", ErrInvalid, t.name, t.projection, tx.name)
	}
	return nil
}

// Put writes row key in tx. Errors: [ErrInvalid] (a Tx of another projection or DB, or used
// after its Update), the JSON encoding's.
func (t *Table[T]) Put(tx *Tx, key string, v T) error {
	if err := t.check(tx); err != nil {
		return err
	}
	data, err := json.Marshal(v)
	if err != nil {
		return fmt.Errorf("tables: %s: encode row %q: %w", t.name, key, err)
	}
	k := append(t.rowPrefix(tx.prefix), key...)
	tx.writes[string(k)] = txWrite{value: data}
	return tx.b.Set(k, data, nil)
}

// Delete removes row key in tx (nothing happens if it does not exist). Errors: [ErrInvalid].
func (t *Table[T]) Delete(tx *Tx, key string) error {
	if err := t.check(tx); err != nil {
		return err
	}
	k := append(t.rowPrefix(tx.prefix), key...)
	tx.writes[string(k)] = txWrite{deleted: true}
	return tx.b.Delete(k, nil)
}

// Read returns row key as tx sees it (with the writes of tx), and whether it exists.
// Errors: [ErrInvalid], [ErrCorrupt] for a row that does not decode as T, Pebble's.
func (t *Table[T]) Read(tx *Tx, key string) (T, bool, error) {
	var v T
	if err := t.check(tx); err != nil {
		return v, false, err
	}
	k := append(t.rowPrefix(tx.prefix), key...)
	if w, ok := tx.writes[string(k)]; ok {
		if w.deleted {
			return v, false, nil
		}
		if err := json.Unmarshal(w.value, &v); err != nil {
			return v, false, fmt.Errorf("%w: %s row %q: %w", ErrCorrupt, t.name, key, err)
		}
		return v, true, nil
	}
	// Not written by tx: what is committed. Another runner may commit meanwhile, but then
	// the checkpoint moved and this Tx's Update is refused (compare-and-set), so what it
	// read here is never committed.
	return t.get(tx.db.pdb, k, key)
}

func (t *Table[T]) get(r pebble.Reader, k []byte, key string) (T, bool, error) {
	var v T
	data, closer, err := r.Get(k)
	if errors.Is(err, pebble.ErrNotFound) {
		return v, false, nil
	}
	if err != nil {
		return v, false, fmt.Errorf("tables: %s: read row %q: %w", t.name, key, err)
	}
	defer closer.Close()
	if err := json.Unmarshal(data, &v); err != nil {
		return v, false, fmt.Errorf("%w: %s row %q: %w", ErrCorrupt, t.name, key, err)
	}
	return v, true, nil
}

// Get returns row key of the active generation and whether it exists. Errors: [ErrClosed],
// [ErrCorrupt], ctx's, Pebble's.
func (t *Table[T]) Get(ctx context.Context, key string) (T, bool, error) {
	var v T
	if err := ctx.Err(); err != nil {
		return v, false, err
	}
	if err := t.db.readLock(); err != nil {
		return v, false, err
	}
	defer t.db.mu.RUnlock()
	gen := genPrefix(t.projection, t.db.mu.active[t.projection])
	return t.get(t.db.pdb, append(t.rowPrefix(gen), key...), key)
}

// ListOptions narrow [Table.List]. The zero value (and nil) lists every row.
type ListOptions[T any] struct {
	// Prefix keeps only the rows whose key starts with it.
	Prefix string
	// After, when not empty, starts after this key (for paging: the last key of the previous
	// page).
	After string
	// Limit stops after that many rows (that passed Filter); 0 means no limit.
	Limit int
	// Filter, when not nil, keeps only the rows for which it returns true.
	Filter func(key string, v T) bool
}

// List yields the rows of the active generation in key order, as of when it started (a
// consistent snapshot, of the generation active then, even if Activate switches meanwhile).
// The sequence yields one error and stops on failure: [ErrClosed], [ErrCorrupt], ctx's,
// Pebble's. The loop holds no lock: its body may call the DB and its tables (Get, List,
// Activate, …), and a slow consumer delays nothing but Close, which waits for the loop to end
// (so the body must not call Close).
func (t *Table[T]) List(ctx context.Context, opts *ListOptions[T]) iter.Seq2[Row[T], error] {
	var o ListOptions[T]
	if opts != nil {
		o = *opts
	}
	return func(yield func(Row[T], error) bool) {
		n, stopped := 0, false
		err := t.Scan(ctx, o.Prefix, o.After, func(key string, v T) bool {
			if o.Filter != nil && !o.Filter(key, v) {
				return true
			}
			n++
			if !yield(Row[T]{Key: key, Value: v}, nil) {
				stopped = true
				return false
			}
			return o.Limit <= 0 || n < o.Limit
		})
		if err != nil && !stopped {
			yield(Row[T]{}, err)
		}
	}
}

// Scan calls fn with the rows of the active generation whose key starts with prefix and
// comes after after (when not empty), in key order, until fn returns false; it reads a
// consistent snapshot taken when it started (as [Table.List]). It is what the query package
// reads. fn holds no lock and may call the DB, but not Close. Errors: [ErrClosed],
// [ErrCorrupt], ctx's, Pebble's.
func (t *Table[T]) Scan(ctx context.Context, prefix, after string, fn func(key string, v T) bool) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	base, it, err := t.iter(ctx, prefix)
	if err != nil {
		return err
	}
	defer t.db.inflight.Done()
	var ok bool
	if after != "" {
		start := append(base[:len(base):len(base)], after...)
		ok = it.SeekGE(start)
		if ok && string(it.Key()) == string(start) {
			ok = it.Next()
		}
	} else {
		ok = it.First()
	}
	for i := 0; ok; ok = it.Next() {
		if i++; i%256 == 0 && ctx.Err() != nil {
			it.Close()
			return ctx.Err()
		}
		key := string(it.Key()[len(base):])
		var v T
		if err := json.Unmarshal(it.Value(), &v); err != nil {
			it.Close()
			return fmt.Errorf("%w: %s row %q: %w", ErrCorrupt, t.name, key, err)
		}
		if !fn(key, v) {
			break
		}
	}
	if err := it.Close(); err != nil {
		return fmt.Errorf("tables: %s: list: %w", t.name, err)
	}
	return nil
}

// iter returns the row prefix of the active generation and an iterator over its rows that
// start with prefix, registered in db.inflight (the caller closes it, then calls Done). The
// generation is read and the iterator (Pebble's consistent view) made under db.mu, which is
// released before the rows are read.
func (t *Table[T]) iter(ctx context.Context, prefix string) ([]byte, *pebble.Iterator, error) {
	if err := t.db.readLock(); err != nil {
		return nil, nil, err
	}
	defer t.db.mu.RUnlock()
	gen := t.db.mu.active[t.projection]
	base := t.rowPrefix(genPrefix(t.projection, gen))
	lower := append(base[:len(base):len(base)], prefix...)
	upper := prefixEnd(lower)
	if upper == nil {
		_, upper = genBounds(t.projection, gen)
	}
	it, err := t.db.pdb.NewIterWithContext(ctx, &pebble.IterOptions{LowerBound: lower, UpperBound: upper})
	if err != nil {
		return nil, nil, fmt.Errorf("tables: %s: list: %w", t.name, err)
	}
	t.db.inflight.Add(1)
	return base, it, nil
}

// prefixEnd returns the smallest key greater than every key starting with p, nil if none.
func prefixEnd(p []byte) []byte {
	end := append([]byte(nil), p...)
	for i := len(end) - 1; i >= 0; i-- {
		if end[i] != 0xff {
			end[i]++
			return end[:i+1]
		}
	}
	return nil
}
