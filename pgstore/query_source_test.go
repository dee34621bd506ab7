package pgstore_test

import (
	"context"
	"errors"
	"fmt"
	"testing"

	"github.com/annalsdb/annals"
	"github.com/annalsdb/annals/pgstore"
	"github.com/annalsdb/annals/projection"
	"github.com/annalsdb/annals/query"
	"github.com/google/go-cmp/cmp"
)

// account is a row of the balances read model.
type account struct {
	Deposits int    `json:"deposits"`
	Last     string `json:"last"`
}

// balances is a read model in a QueryTable: a row per acct- stream; an event of type Close
// deletes the row.
func balances(t *testing.T, s *pgstore.Store) (*pgstore.QueryTable[account], *pgstore.Projections, projection.Projection[*pgstore.ProjectionTx]) {
	t.Helper()
	tb, err := pgstore.NewQueryTable[account]("balances", "accounts")
	if err != nil {
		t.Fatal(err)
	}
	p := pgstore.NewProjections(s, &pgstore.ProjectionsOptions{Setup: tb.Setup})
	return tb, p, projection.Projection[*pgstore.ProjectionTx]{
		Name:   "balances",
		Filter: acctFilter,
		Handle: func(ctx context.Context, tx *pgstore.ProjectionTx, ev annals.RecordedEvent) error {
			if ev.Type == "Close" {
				return tb.Delete(ctx, tx, ev.Stream)
			}
			a, _, err := tb.Read(ctx, tx, ev.Stream)
			if err != nil {
				return err
			}
			a.Deposits++
			a.Last = ev.Type
			return tb.Put(ctx, tx, ev.Stream, a)
		},
	}
}

func TestQueryTable(t *testing.T) {
	s := openStore(t, nil)
	tb, p, proj := balances(t, s)
	r, err := projection.NewRunner(s, p, proj, nil)
	if err != nil {
		t.Fatal(err)
	}
	runInBackground(t, r)
	ctx := waitCtx(t)
	h := query.New(tb.Source(p), &query.HandlerOptions{Runner: r})

	// Before the projection ran: no rows, no error (the generation is created empty).
	if _, err := h.GetByID(ctx, "acct-00", nil); !errors.Is(err, query.ErrNotFound) {
		t.Fatalf("GetByID on an empty read model: %v", err)
	}
	want := map[string]account{}
	var last uint64
	for i := range 25 {
		id := fmt.Sprintf("acct-%02d", i)
		for j := 0; j <= i%3; j++ {
			res, err := s.Append(ctx, id, annals.Any, annals.Event{Type: fmt.Sprintf("D%d", j), Data: []byte(`{}`)})
			if err != nil {
				t.Fatal(err)
			}
			last = res.Position
			want[id] = account{Deposits: j + 1, Last: fmt.Sprintf("D%d", j)}
		}
	}
	// Read-your-writes through the runner.
	got, err := h.GetByID(ctx, "acct-24", &query.Options{Position: last})
	if err != nil || got != want["acct-24"] {
		t.Fatalf("GetByID after the last write: %+v, %v", got, err)
	}

	// Every page of GetAll.
	all := map[string]account{}
	opts := &query.ListOptions[account]{Limit: 7}
	pages := 0
	for {
		page, err := h.GetAll(ctx, opts)
		if err != nil {
			t.Fatal(err)
		}
		pages++
		for _, it := range page.Items {
			all[it.ID] = it.Value
		}
		if page.NextPageToken == "" {
			break
		}
		opts.PageToken = page.NextPageToken
	}
	if diff := cmp.Diff(want, all); diff != "" || pages != 4 {
		t.Fatalf("GetAll in %d pages (want 4), (-want +got):\n%s", pages, diff)
	}

	// Scan pages by key with the prefix.
	src := tb.Source(p)
	page, err := src.Scan(ctx, query.ScanOptions{Prefix: "acct-1", Limit: 4})
	if err != nil || len(page.Items) != 4 || page.Items[0].ID != "acct-10" || page.Next != "acct-13" {
		t.Fatalf("first page of acct-1: %+v, %v", page, err)
	}
	page, err = src.Scan(ctx, query.ScanOptions{Prefix: "acct-1", After: page.Next, Limit: 6})
	if err != nil || len(page.Items) != 6 || page.Items[0].ID != "acct-14" || page.Next != "" {
		t.Fatalf("last page of acct-1: %+v, %v", page, err)
	}
	for _, limit := range []int{-1, query.MaxLimit + 1} {
		if _, err := src.Scan(ctx, query.ScanOptions{Limit: limit}); !errors.Is(err, query.ErrInvalid) {
			t.Errorf("Scan with limit %d: %v, want ErrInvalid", limit, err)
		}
	}

	// Delete, and the read model follows a rebuild into its new generation.
	res, err := s.Append(ctx, "acct-03", annals.Any, annals.Event{Type: "Close", Data: []byte(`{}`)})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := h.GetByID(ctx, "acct-03", &query.Options{Position: res.Position}); !errors.Is(err, query.ErrNotFound) {
		t.Fatalf("a deleted row: %v", err)
	}
	if err := r.Rebuild(ctx, nil); err != nil {
		t.Fatal(err)
	}
	if gen, err := p.Generation(ctx, "balances"); gen != 1 || err != nil {
		t.Fatalf("generation after the rebuild: %d, %v", gen, err)
	}
	page, err = src.Scan(ctx, query.ScanOptions{Prefix: "acct-0", Limit: 20})
	if err != nil || len(page.Items) != 9 || page.Items[3].ID != "acct-04" {
		t.Fatalf("acct-0 rows after the rebuild: %+v, %v", page, err)
	}
}

func TestQueryTableRefusals(t *testing.T) {
	for _, name := range []string{"", "Accounts", "1st", "a-b", "a.b"} {
		if _, err := pgstore.NewQueryTable[account]("balances", name); !errors.Is(err, annals.ErrInvalidArgument) {
			t.Errorf("table name %q: %v", name, err)
		}
	}
	if _, err := pgstore.NewQueryTable[account]("", "accounts"); !errors.Is(err, annals.ErrInvalidArgument) {
		t.Errorf("empty projection: %v", err)
	}
	s := openStore(t, nil)
	tb, _, _ := balances(t, s)
	other, err := pgstore.NewQueryTable[account]("other", "accounts")
	if err != nil {
		t.Fatal(err)
	}
	p := pgstore.NewProjections(s, &pgstore.ProjectionsOptions{Setup: tb.Setup})
	ctx := waitCtx(t)
	err = p.Update(ctx, "balances", 0, 0, 1, func(tx *pgstore.ProjectionTx) error {
		for _, id := range []string{"", "a\x00b", "\xff"} {
			if err := tb.Put(ctx, tx, id, account{}); !errors.Is(err, annals.ErrInvalidArgument) {
				t.Errorf("Put of id %q: %v", id, err)
			}
		}
		if err := other.Put(ctx, tx, "a", account{}); !errors.Is(err, annals.ErrInvalidArgument) {
			t.Errorf("Put in a transaction of another projection: %v", err)
		}
		return tb.Put(ctx, tx, "a", account{Deposits: 1})
	})
	if err != nil {
		t.Fatal(err)
	}
	if v, ok, err := tb.Source(p).Get(ctx, "a"); !ok || err != nil || v.Deposits != 1 {
		t.Fatalf("Get after Update: %+v %v %v", v, ok, err)
	}
}
