package query_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"github.com/annalsdb/annals"
	"github.com/annalsdb/annals/filestore"
	"github.com/annalsdb/annals/internal/testwait"
	"github.com/annalsdb/annals/memstore"
	"github.com/annalsdb/annals/projection"
	"github.com/annalsdb/annals/query"
	"github.com/annalsdb/annals/tables"
	"github.com/google/go-cmp/cmp"
)

type cart struct {
	Items int `json:"items"`
	Total int `json:"total"`
}

type added struct {
	Price int `json:"price"`
}

func apply(c cart, ev annals.RecordedEvent) (cart, error) {
	var a added
	if err := json.Unmarshal(ev.Data, &a); err != nil {
		return c, err
	}
	return cart{Items: c.Items + 1, Total: c.Total + a.Price}, nil
}

var carts = &annals.Filter{Categories: []string{"cart"}}

// readModel is one way of keeping the carts: in memory or in tables.
type readModel struct {
	name  string
	setup func(t *testing.T, s annals.Store) (query.Source[cart], query.Waiter, func() error)
}

var readModels = []readModel{
	{"memory", func(t *testing.T, s annals.Store) (query.Source[cart], query.Waiter, func() error) {
		m := projection.NewMemory(func() map[string]cart { return map[string]cart{} })
		r, err := projection.NewRunner(s, m, projection.Projection[map[string]cart]{Name: "carts", Filter: carts,
			Handle: func(_ context.Context, rows map[string]cart, ev annals.RecordedEvent) error {
				c, err := apply(rows[ev.Stream], ev)
				rows[ev.Stream] = c
				return err
			}}, nil)
		if err != nil {
			t.Fatal(err)
		}
		return query.FromMemory(m, "carts", func(rows map[string]cart) map[string]cart { return rows }), r, run(t, r)
	}},
	{"tables", func(t *testing.T, s annals.Store) (query.Source[cart], query.Waiter, func() error) {
		db, err := tables.Open(filepath.Join(t.TempDir(), "tables"), nil)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { db.Close() })
		tb, err := tables.NewTable[cart](db, "carts", "carts")
		if err != nil {
			t.Fatal(err)
		}
		r, err := projection.NewRunner(s, db, projection.Projection[*tables.Tx]{Name: "carts", Filter: carts,
			Handle: func(_ context.Context, tx *tables.Tx, ev annals.RecordedEvent) error {
				c, _, err := tb.Read(tx, ev.Stream)
				if err != nil {
					return err
				}
				if c, err = apply(c, ev); err != nil {
					return err
				}
				return tb.Put(tx, ev.Stream, c)
			}}, nil)
		if err != nil {
			t.Fatal(err)
		}
		return query.FromScanner[cart](tb), r, run(t, r)
	}},
}

func run[Tx any](t *testing.T, r *projection.Runner[Tx]) func() error {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx) }()
	stopped := false
	var err error
	stop := func() error {
		if !stopped {
			stopped = true
			cancel()
			err = <-done
		}
		return err
	}
	t.Cleanup(func() { stop() })
	return stop
}

func forEach(t *testing.T, fn func(t *testing.T, s annals.Store, src query.Source[cart], w query.Waiter, stop func() error)) {
	stores := map[string]func(t *testing.T) annals.Store{
		"memstore": func(t *testing.T) annals.Store { return memstore.New(nil) },
		"filestore": func(t *testing.T) annals.Store {
			s, err := filestore.Open(t.TempDir(), nil)
			if err != nil {
				t.Fatal(err)
			}
			return s
		},
	}
	for _, sn := range []string{"memstore", "filestore"} {
		for _, rm := range readModels {
			t.Run(sn+"/"+rm.name, func(t *testing.T) {
				s := stores[sn](t)
				t.Cleanup(func() { s.Close() })
				src, w, stop := rm.setup(t, s)
				fn(t, s, src, w, stop)
			})
		}
	}
}

func add(t *testing.T, s annals.Store, stream string, price int) uint64 {
	t.Helper()
	res, err := s.Append(context.Background(), stream, annals.Any, annals.Event{Type: "ItemAdded", Data: fmt.Appendf(nil, `{"price":%d}`, price)})
	if err != nil {
		t.Fatal(err)
	}
	return res.Position
}

func ctxT(t *testing.T) context.Context {
	return testwait.Context(t)
}

func TestReadYourWrites(t *testing.T) {
	forEach(t, func(t *testing.T, s annals.Store, src query.Source[cart], w query.Waiter, stop func() error) {
		h := query.New(src, &query.HandlerOptions{Runner: w})
		ctx := ctxT(t)
		for i := 1; i <= 30; i++ {
			pos := add(t, s, "cart-a", i)
			got, err := h.GetByID(ctx, "cart-a", &query.Options{Position: pos})
			if err != nil {
				t.Fatal(err)
			}
			if want := (cart{Items: i, Total: i * (i + 1) / 2}); got != want {
				t.Fatalf("after append %d: %+v, want %+v (stale read)", i, got, want)
			}
		}
		// A position after an event the filter leaves out does not wait forever.
		res, _ := s.Append(ctx, "user-1", annals.Any, annals.Event{Type: "Other"})
		if _, err := h.GetByID(ctx, "cart-a", &query.Options{Position: res.Position}); err != nil {
			t.Fatal(err)
		}
		if _, err := h.GetByID(ctx, "cart-zzz", nil); !errors.Is(err, query.ErrNotFound) {
			t.Fatalf("missing id: %v", err)
		}
		// With the runner stopped, a query for a newer position waits (bounded by ctx) instead
		// of returning stale data.
		stop()
		pos := add(t, s, "cart-a", 100)
		short, cancel := context.WithTimeout(ctx, 30*time.Millisecond)
		defer cancel()
		if _, err := h.GetByID(short, "cart-a", &query.Options{Position: pos}); !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("query past a stopped runner: %v, want deadline exceeded", err)
		}
		if _, err := query.New(src, nil).GetByID(ctx, "cart-a", &query.Options{Position: pos}); !errors.Is(err, query.ErrInvalid) {
			t.Fatalf("position without a runner: %v", err)
		}
	})
}

func TestGetAllPaging(t *testing.T) {
	forEach(t, func(t *testing.T, s annals.Store, src query.Source[cart], w query.Waiter, _ func() error) {
		h := query.New(src, &query.HandlerOptions{Runner: w})
		ctx := ctxT(t)
		var last uint64
		want := map[string]cart{}
		for i := range 25 {
			id := fmt.Sprintf("cart-%02d", i)
			for j := 0; j <= i%3; j++ {
				last = add(t, s, id, 10)
				c := want[id]
				want[id] = cart{Items: c.Items + 1, Total: c.Total + 10}
			}
		}
		add(t, s, "cartx-1", 1) // another category: not in the read model
		got := map[string]cart{}
		var order []string
		opts := &query.ListOptions[cart]{Options: query.Options{Position: last}, Limit: 7}
		pages := 0
		for {
			page, err := h.GetAll(ctx, opts)
			if err != nil {
				t.Fatal(err)
			}
			pages++
			for _, it := range page.Items {
				got[it.ID] = it.Value
				order = append(order, it.ID)
			}
			if page.NextPageToken == "" {
				break
			}
			if len(page.Items) != 7 {
				t.Fatalf("page %d has %d items, want 7", pages, len(page.Items))
			}
			opts.PageToken = page.NextPageToken
		}
		if diff := cmp.Diff(want, got); diff != "" {
			t.Fatalf("all pages (-want +got):\n%s", diff)
		}
		if pages != 4 {
			t.Fatalf("%d pages, want 4", pages)
		}
		for i := 1; i < len(order); i++ {
			if order[i-1] >= order[i] {
				t.Fatalf("not in id order: %v", order)
			}
		}
		// Filter and prefix.
		page, err := h.GetAll(ctx, &query.ListOptions[cart]{Prefix: "cart-1", Filter: func(_ string, c cart) bool { return c.Items == 3 }})
		if err != nil {
			t.Fatal(err)
		}
		var ids []string
		for _, it := range page.Items {
			ids = append(ids, it.ID)
		}
		if diff := cmp.Diff([]string{"cart-11", "cart-14", "cart-17"}, ids); diff != "" || page.NextPageToken != "" {
			t.Fatalf("filtered page (-want +got):\n%s next %q", diff, page.NextPageToken)
		}
		if _, err := h.GetAll(ctx, &query.ListOptions[cart]{PageToken: "!!"}); !errors.Is(err, query.ErrInvalid) {
			t.Fatalf("bad token: %v", err)
		}
	})
}

// A failed projection makes a query that waits on it fail at once, not time out.
func TestQueryOnFailedProjection(t *testing.T) {
	s := memstore.New(nil)
	defer s.Close()
	m := projection.NewMemory(func() map[string]cart { return map[string]cart{} })
	r, _ := projection.NewRunner(s, m, projection.Projection[map[string]cart]{Name: "carts",
		Handle: func(_ context.Context, rows map[string]cart, ev annals.RecordedEvent) error {
			c, err := apply(rows[ev.Stream], ev)
			if err == nil {
				rows[ev.Stream] = c
			}
			return err
		}}, nil)
	run(t, r)
	res, _ := s.Append(context.Background(), "cart-1", annals.Any, annals.Event{Type: "ItemAdded", Data: []byte(`not json`)})
	h := query.New(query.FromMemory(m, "carts", func(rows map[string]cart) map[string]cart { return rows }), &query.HandlerOptions{Runner: r})
	_, err := h.GetByID(ctxT(t), "cart-1", &query.Options{Position: res.Position})
	if !errors.Is(err, projection.ErrFailed) {
		t.Fatalf("query on a failed projection: %v", err)
	}
}

// TestScanPages reads every source a page at a time through Scan itself.
func TestScanPages(t *testing.T) {
	forEach(t, func(t *testing.T, s annals.Store, src query.Source[cart], w query.Waiter, _ func() error) {
		ctx := ctxT(t)
		var last uint64
		for i := range 12 {
			last = add(t, s, fmt.Sprintf("cart-%02d", i), 1)
		}
		if err := w.WaitFor(ctx, last); err != nil {
			t.Fatal(err)
		}
		var got []string
		opts := query.ScanOptions{Prefix: "cart-0", Limit: 4}
		for pages := 1; ; pages++ {
			page, err := src.Scan(ctx, opts)
			if err != nil {
				t.Fatal(err)
			}
			if len(page.Items) > 4 {
				t.Fatalf("page %d has %d items", pages, len(page.Items))
			}
			for _, it := range page.Items {
				got = append(got, it.ID)
			}
			if page.Next == "" {
				if pages != 3 {
					t.Errorf("%d pages, want 3 (4+4+2)", pages)
				}
				break
			}
			if page.Next != page.Items[len(page.Items)-1].ID {
				t.Fatalf("next %q is not the last key of the page %v", page.Next, page.Items)
			}
			opts.After = page.Next
		}
		want := []string{"cart-00", "cart-01", "cart-02", "cart-03", "cart-04", "cart-05", "cart-06", "cart-07", "cart-08", "cart-09"}
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("keys (-want +got):\n%s", diff)
		}
		// A page of exactly the rows left has no next cursor.
		page, err := src.Scan(ctx, query.ScanOptions{Prefix: "cart-1", Limit: 2})
		if err != nil || len(page.Items) != 2 || page.Next != "" {
			t.Errorf("the last full page: %+v, %v", page, err)
		}
		for _, limit := range []int{-1, query.MaxLimit + 1} {
			if _, err := src.Scan(ctx, query.ScanOptions{Limit: limit}); !errors.Is(err, query.ErrInvalid) {
				t.Errorf("Scan with limit %d: %v, want ErrInvalid", limit, err)
			}
		}
		page, err = src.Scan(ctx, query.ScanOptions{})
		if err != nil || len(page.Items) != 12 {
			t.Errorf("the default page: %d items, %v", len(page.Items), err)
		}
	})
}

// countingSource counts the rows its Scan returns.
type countingSource struct {
	query.Source[cart]
	rows, scans int
}

func (c *countingSource) Scan(ctx context.Context, opts query.ScanOptions) (query.ScanPage[cart], error) {
	p, err := c.Source.Scan(ctx, opts)
	c.rows += len(p.Items)
	c.scans++
	return p, err
}

func TestGetAllBounds(t *testing.T) {
	s := memstore.New(nil)
	defer s.Close()
	m := projection.NewMemory(func() map[string]cart { return map[string]cart{} })
	n := query.MaxScanned + 500
	if err := m.Update(ctxT(t), "carts", 0, 0, 1, func(rows map[string]cart) error {
		for i := range n {
			rows[fmt.Sprintf("cart-%05d", i)] = cart{Items: i}
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	src := &countingSource{Source: query.FromMemory(m, "carts", func(rows map[string]cart) map[string]cart { return rows })}
	h := query.New[cart](src, nil)
	ctx := ctxT(t)
	for _, limit := range []int{-1, query.MaxLimit + 1} {
		if _, err := h.GetAll(ctx, &query.ListOptions[cart]{Limit: limit}); !errors.Is(err, query.ErrInvalid) {
			t.Errorf("GetAll with limit %d: %v, want ErrInvalid", limit, err)
		}
	}
	page, err := h.GetAll(ctx, &query.ListOptions[cart]{Limit: query.MaxLimit})
	if err != nil || len(page.Items) != query.MaxLimit || page.NextPageToken == "" || src.rows > query.MaxLimit {
		t.Fatalf("a page of MaxLimit: %d items, token %q, %d rows read, %v", len(page.Items), page.NextPageToken, src.rows, err)
	}
	// Every page, in order, each read with one Scan of its size.
	src.rows, src.scans = 0, 0
	all := &query.ListOptions[cart]{Limit: 700}
	for i := 0; ; {
		page, err := h.GetAll(ctx, all)
		if err != nil {
			t.Fatal(err)
		}
		for _, it := range page.Items {
			if want := fmt.Sprintf("cart-%05d", i); it.ID != want {
				t.Fatalf("row %d is %q, want %q", i, it.ID, want)
			}
			i++
		}
		if page.NextPageToken == "" {
			if i != n || src.scans != (n+699)/700 || src.rows != n {
				t.Fatalf("%d rows in %d scans reading %d rows, want %d in %d", i, src.scans, src.rows, n, (n+699)/700)
			}
			break
		}
		all.PageToken = page.NextPageToken
	}
	// A filter that matches only the last row: the first call reads MaxScanned rows and
	// returns an empty page that goes on; the second finds the row.
	src.rows = 0
	only := fmt.Sprintf("cart-%05d", n-1)
	opts := &query.ListOptions[cart]{Filter: func(id string, _ cart) bool { return id == only }}
	page, err = h.GetAll(ctx, opts)
	if err != nil || len(page.Items) != 0 || page.NextPageToken == "" || src.rows != query.MaxScanned {
		t.Fatalf("first filtered call: %d items, token %q, %d rows read, %v", len(page.Items), page.NextPageToken, src.rows, err)
	}
	opts.PageToken = page.NextPageToken
	page, err = h.GetAll(ctx, opts)
	if err != nil || len(page.Items) != 1 || page.Items[0].ID != only || page.NextPageToken != "" {
		t.Fatalf("second filtered call: %+v, %v", page, err)
	}
}
