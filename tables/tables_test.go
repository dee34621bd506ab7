package tables_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"path/filepath"
	"slices"
	"testing"

	"github.com/annalsdb/annals/projection"
	"github.com/annalsdb/annals/tables"
)

var _ projection.Store[*tables.Tx] = (*tables.DB)(nil)

type item struct {
	Name  string `json:"name"`
	Price int    `json:"price"`
}

func openDB(t *testing.T, dir string) *tables.DB {
	t.Helper()
	db, err := tables.Open(dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

func mustTable[T any](t *testing.T, db *tables.DB, p, name string) *tables.Table[T] {
	t.Helper()
	tb, err := tables.NewTable[T](db, p, name)
	if err != nil {
		t.Fatal(err)
	}
	return tb
}

func keys[T any](t *testing.T, tb *tables.Table[T], opts *tables.ListOptions[T]) []string {
	t.Helper()
	var out []string
	for row, err := range tb.List(context.Background(), opts) {
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, row.Key)
	}
	return out
}

func TestRowsAndCheckpointCommitTogether(t *testing.T) {
	ctx := context.Background()
	dir := filepath.Join(t.TempDir(), "tables")
	db := openDB(t, dir)
	items := mustTable[item](t, db, "shop", "items")
	err := db.Update(ctx, "shop", 0, 0, 7, func(tx *tables.Tx) error {
		for i := range 5 {
			if err := items.Put(tx, fmt.Sprintf("sku-%d", i), item{Name: fmt.Sprint("n", i), Price: i * 10}); err != nil {
				return err
			}
		}
		// The Tx sees its own writes before the commit; queries do not.
		if v, ok, err := items.Read(tx, "sku-3"); err != nil || !ok || v.Price != 30 {
			t.Errorf("Read in tx: %v %v %v", v, ok, err)
		}
		if _, ok, _ := items.Get(ctx, "sku-3"); ok {
			t.Error("Get saw a row before its commit")
		}
		return items.Delete(tx, "sku-4")
	})
	if err != nil {
		t.Fatal(err)
	}
	if cp, err := db.Checkpoint(ctx, "shop", 0); err != nil || cp != 7 {
		t.Fatalf("checkpoint %d, %v", cp, err)
	}
	// A failed fn writes nothing, not even the checkpoint.
	boom := errors.New("boom")
	err = db.Update(ctx, "shop", 0, 7, 9, func(tx *tables.Tx) error {
		items.Put(tx, "sku-9", item{Name: "never"})
		return boom
	})
	if !errors.Is(err, boom) {
		t.Fatalf("Update returned %v, want fn's error", err)
	}
	if _, ok, _ := items.Get(ctx, "sku-9"); ok {
		t.Fatal("row of a failed Update is visible")
	}
	if cp, _ := db.Checkpoint(ctx, "shop", 0); cp != 7 {
		t.Fatalf("checkpoint %d after a failed Update, want 7", cp)
	}
	// Durable: a reopened DB has the rows and the checkpoint.
	db.Close()
	db = openDB(t, dir)
	items = mustTable[item](t, db, "shop", "items")
	if got, want := keys(t, items, nil), []string{"sku-0", "sku-1", "sku-2", "sku-3"}; !slices.Equal(got, want) {
		t.Fatalf("after reopen: %v, want %v", got, want)
	}
	if v, ok, err := items.Get(ctx, "sku-2"); err != nil || !ok || v != (item{"n2", 20}) {
		t.Fatalf("Get after reopen: %v %v %v", v, ok, err)
	}
	if cp, _ := db.Checkpoint(ctx, "shop", 0); cp != 7 {
		t.Fatalf("checkpoint after reopen %d", cp)
	}
}

func TestListPaging(t *testing.T) {
	ctx := context.Background()
	db := openDB(t, t.TempDir())
	tb := mustTable[int](t, db, "p", "t")
	other := mustTable[int](t, db, "p", "t2")
	db.Update(ctx, "p", 0, 0, 1, func(tx *tables.Tx) error {
		for i := range 30 {
			tb.Put(tx, fmt.Sprintf("a-%02d", i), i)
			other.Put(tx, fmt.Sprintf("a-%02d", i), -i)
		}
		tb.Put(tx, "b-1", 100)
		tb.Put(tx, "a", 1000)
		return nil
	})
	cases := []struct {
		name string
		opts *tables.ListOptions[int]
		want []string
	}{
		{"prefix and limit", &tables.ListOptions[int]{Prefix: "a-", Limit: 3}, []string{"a-00", "a-01", "a-02"}},
		{"after", &tables.ListOptions[int]{Prefix: "a-", After: "a-27"}, []string{"a-28", "a-29"}},
		{"after between keys", &tables.ListOptions[int]{After: "a-295"}, []string{"b-1"}},
		{"filter", &tables.ListOptions[int]{Filter: func(_ string, v int) bool { return v%10 == 0 }, Limit: 3}, []string{"a", "a-00", "a-10"}},
		{"other prefix", &tables.ListOptions[int]{Prefix: "b"}, []string{"b-1"}},
		{"no match", &tables.ListOptions[int]{Prefix: "c"}, nil},
	}
	for _, c := range cases {
		if got := keys(t, tb, c.opts); !slices.Equal(got, c.want) {
			t.Errorf("%s: got %v, want %v", c.name, got, c.want)
		}
	}
	// Paging through everything with After = the last key of the previous page.
	var all []string
	after := ""
	for {
		page := keys(t, tb, &tables.ListOptions[int]{After: after, Limit: 7})
		if len(page) == 0 {
			break
		}
		all = append(all, page...)
		after = page[len(page)-1]
	}
	if len(all) != 32 || !slices.IsSorted(all) {
		t.Fatalf("paged %d keys: %v", len(all), all)
	}
}

func TestGenerations(t *testing.T) {
	ctx := context.Background()
	db := openDB(t, t.TempDir())
	tb := mustTable[string](t, db, "p", "t")
	put := func(gen uint64, v string) {
		t.Helper()
		if err := db.Update(ctx, "p", gen, 0, gen+10, func(tx *tables.Tx) error { return tb.Put(tx, "k", v) }); err != nil {
			t.Fatal(err)
		}
	}
	put(0, "old")
	put(1, "new")
	if v, _, _ := tb.Get(ctx, "k"); v != "old" {
		t.Fatalf("before Activate: %q, want the active generation's", v)
	}
	if err := db.Activate(ctx, "p", 1); err != nil {
		t.Fatal(err)
	}
	if v, _, _ := tb.Get(ctx, "k"); v != "new" {
		t.Fatalf("after Activate: %q", v)
	}
	if gen, _ := db.Generation(ctx, "p"); gen != 1 {
		t.Fatalf("generation %d", gen)
	}
	if cp, _ := db.Checkpoint(ctx, "p", 0); cp != 0 {
		t.Fatalf("old generation kept checkpoint %d", cp)
	}
	if err := db.Reset(ctx, "p", 1); err != nil {
		t.Fatal(err)
	}
	if _, ok, _ := tb.Get(ctx, "k"); ok {
		t.Fatal("row survived Reset")
	}
	// A projection whose name is a prefix of another's is kept apart.
	tb2 := mustTable[string](t, db, "pp", "t")
	db.Update(ctx, "pp", 0, 0, 1, func(tx *tables.Tx) error { return tb2.Put(tx, "k", "pp") })
	db.Activate(ctx, "p", 2)
	if v, _, _ := tb2.Get(ctx, "k"); v != "pp" {
		t.Fatalf("other projection's row: %q", v)
	}
}

func TestMisuseAndClosed(t *testing.T) {
	ctx := context.Background()
	db := openDB(t, t.TempDir())
	if _, err := tables.NewTable[int](db, "", "t"); !errors.Is(err, tables.ErrInvalid) {
		t.Fatalf("empty projection: %v", err)
	}
	if _, err := tables.NewTable[int](db, "p", "a\x00b"); !errors.Is(err, tables.ErrInvalid) {
		t.Fatalf("NUL in table name: %v", err)
	}
	other := mustTable[int](t, db, "q", "t")
	var kept *tables.Tx
	err := db.Update(ctx, "p", 0, 0, 1, func(tx *tables.Tx) error {
		kept = tx
		return other.Put(tx, "k", 1)
	})
	if !errors.Is(err, tables.ErrInvalid) {
		t.Fatalf("Put into another projection's table: %v", err)
	}
	if err := other.Put(kept, "k", 1); !errors.Is(err, tables.ErrInvalid) {
		t.Fatalf("Put with a Tx after its Update: %v", err)
	}
	// A row that does not decode as T.
	asString := mustTable[string](t, db, "q", "t")
	db.Update(ctx, "q", 0, 0, 1, func(tx *tables.Tx) error { return other.Put(tx, "k", 5) })
	_, _, err = asString.Get(ctx, "k")
	if !errors.Is(err, tables.ErrCorrupt) {
		t.Fatalf("Get of a row of another type: %v", err)
	}
	if _, ok := errors.AsType[*json.UnmarshalTypeError](err); !ok {
		t.Errorf("Get of a row of another type: %v, want it to wrap the decoder's error", err)
	}
	db.Close()
	if err := db.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	if _, _, err := other.Get(ctx, "k"); !errors.Is(err, tables.ErrClosed) {
		t.Fatalf("Get after Close: %v", err)
	}
	if err := db.Update(ctx, "q", 0, 1, 2, func(*tables.Tx) error { return nil }); !errors.Is(err, tables.ErrClosed) {
		t.Fatalf("Update after Close: %v", err)
	}
	for _, err := range other.List(ctx, nil) {
		if !errors.Is(err, tables.ErrClosed) {
			t.Fatalf("List after Close: %v", err)
		}
	}
	if _, err := db.Checkpoint(ctx, "q", 0); !errors.Is(err, tables.ErrClosed) {
		t.Fatalf("Checkpoint after Close: %v", err)
	}
}
