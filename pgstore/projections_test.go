package pgstore_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/annalsdb/annals"
	"github.com/annalsdb/annals/internal/testwait"
	"github.com/annalsdb/annals/pgstore"
	"github.com/annalsdb/annals/projection"
	"github.com/google/go-cmp/cmp"
	"github.com/jackc/pgx/v5"
)

var _ projection.Store[*pgstore.ProjectionTx] = (*pgstore.Projections)(nil)

// counter is a read model that a replayed event would double-count: a row per stream with its
// number of events, and a "$total" row.
type counter struct {
	s *pgstore.Store
	p *pgstore.Projections
	// fail, when set, makes the handler fail on events of type Bad.
	fail atomic.Bool
}

var acctFilter = &annals.Filter{Categories: []string{"acct"}}

func newCounter(s *pgstore.Store) *counter {
	return &counter{s: s, p: pgstore.NewProjections(s, &pgstore.ProjectionsOptions{Setup: counterSetup})}
}

func counterSetup(ctx context.Context, tx *pgstore.ProjectionTx) error {
	_, err := tx.Tx.Exec(ctx, "CREATE TABLE "+tx.Schema()+`.counts (stream text COLLATE "C" PRIMARY KEY, n bigint NOT NULL)`)
	return err
}

func (c *counter) projection() projection.Projection[*pgstore.ProjectionTx] {
	return projection.Projection[*pgstore.ProjectionTx]{
		Name:   "counter",
		Filter: acctFilter,
		Handle: func(ctx context.Context, tx *pgstore.ProjectionTx, ev annals.RecordedEvent) error {
			if ev.Type == "Bad" && c.fail.Load() {
				return errors.New("cannot handle Bad")
			}
			b := &pgx.Batch{}
			for _, key := range []string{ev.Stream, "$total"} {
				b.Queue("INSERT INTO "+tx.Schema()+".counts AS c VALUES ($1, 1) ON CONFLICT (stream) DO UPDATE SET n = c.n + 1", key)
			}
			return tx.Tx.SendBatch(ctx, b).Close()
		},
	}
}

func (c *counter) runner(t testing.TB, opts *projection.RunnerOptions) *projection.Runner[*pgstore.ProjectionTx] {
	t.Helper()
	r, err := projection.NewRunner(c.s, c.p, c.projection(), opts)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// rows reads the active generation's read model, through p.
func rows(ctx context.Context, s *pgstore.Store, p *pgstore.Projections) (map[string]int, error) {
	out := map[string]int{"$total": 0}
	err := p.Read(ctx, "counter", func(schema string) error {
		rows, err := s.Pool().Query(ctx, "SELECT stream, n FROM "+schema+".counts")
		if err != nil {
			return err
		}
		var k string
		var n int
		_, err = pgx.ForEachRow(rows, []any{&k, &n}, func() error { out[k] = n; return nil })
		return err
	})
	return out, err
}

func (c *counter) rows(t testing.TB) map[string]int {
	t.Helper()
	out, err := rows(context.Background(), c.s, c.p)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// singlePass folds the log in one pass: what the read model must equal.
func singlePass(t testing.TB, s annals.Store) map[string]int {
	t.Helper()
	out := map[string]int{"$total": 0}
	for ev, err := range s.ReadAll(context.Background(), &annals.ReadOptions{Filter: acctFilter}) {
		if err != nil {
			t.Fatal(err)
		}
		out[ev.Stream]++
		out["$total"]++
	}
	return out
}

// appendAccounts appends n events in appends of up to 50, to streams acct-0… and, every third
// append, to a stream the filter leaves out; it returns the last position.
func appendAccounts(t testing.TB, s annals.Store, n, streams int) uint64 {
	t.Helper()
	var last uint64
	for i := 0; i < n; {
		k := min(50, n-i)
		evs := make([]annals.Event, k)
		for j := range evs {
			evs[j] = annals.Event{Type: "Deposited", Data: []byte(`{}`)}
		}
		stream := fmt.Sprintf("acct-%d", (i/50)%streams)
		if i%150 == 0 {
			stream = fmt.Sprintf("other-%d", i)
		}
		res, err := s.Append(context.Background(), stream, annals.Any, evs...)
		if err != nil {
			t.Fatal(err)
		}
		last = res.Position
		i += k
	}
	return last
}

func runInBackground(t *testing.T, r *projection.Runner[*pgstore.ProjectionTx]) func() error {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx) }()
	var once sync.Once
	var err error
	stop := func() error {
		once.Do(func() { cancel(); err = <-done })
		return err
	}
	t.Cleanup(func() { stop() })
	return stop
}

func waitCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// TestProjectionsCancelAndRestart cancels a runner mid-stream again and again (its context
// ends in the middle of a transaction): the read model equals a single pass over the log.
func TestProjectionsCancelAndRestart(t *testing.T) {
	s := openStore(t, nil)
	c := newCounter(s)
	appendAccounts(t, s, 3000, 7)
	for round := range 5 {
		r := c.runner(t, &projection.RunnerOptions{MaxBatch: 32})
		cp0, err := c.p.Checkpoint(context.Background(), "counter", 0)
		if err != nil {
			t.Fatal(err)
		}
		stop := runInBackground(t, r)
		testwait.Until(t, fmt.Sprintf("progress in round %d", round), func() bool {
			cp, _ := c.p.Checkpoint(context.Background(), "counter", 0)
			return cp > cp0
		})
		if err := stop(); !errors.Is(err, context.Canceled) {
			t.Fatalf("round %d: Run: %v", round, err)
		}
		appendAccounts(t, s, 100, 7)
	}
	r := c.runner(t, nil)
	runInBackground(t, r)
	if err := r.WaitFor(waitCtx(t), appendAccounts(t, s, 10, 7)); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(singlePass(t, s), c.rows(t)); diff != "" {
		t.Fatalf("read model after restarts differs from a single pass (-want +got):\n%s", diff)
	}
}

// schemas returns the generation schemas of the store in the database.
func schemas(t *testing.T, s *pgstore.Store) []string {
	t.Helper()
	rows, err := s.Pool().Query(context.Background(), "SELECT nspname FROM pg_namespace WHERE starts_with(nspname, $1) ORDER BY 1", s.Schema()+"$")
	if err != nil {
		t.Fatal(err)
	}
	names, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		t.Fatal(err)
	}
	return names
}

// TestProjectionsRebuildWhileLive rebuilds the read model while the runner follows live
// appends and queries keep reading: queries never fail nor go back, and after the switch the
// read model is the single pass, in generation 1, with generation 0 dropped.
func TestProjectionsRebuildWhileLive(t *testing.T) {
	s := openStore(t, nil)
	c := newCounter(s)
	appendAccounts(t, s, 4000, 5)
	r := c.runner(t, &projection.RunnerOptions{MaxBatch: 256})
	runInBackground(t, r)
	ctx := waitCtx(t)
	if err := r.WaitFor(ctx, appendAccounts(t, s, 1, 5)); err != nil {
		t.Fatal(err)
	}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() { // live writes with read-your-writes
		for {
			select {
			case <-stop:
				return
			default:
			}
			if err := r.WaitFor(ctx, appendAccounts(t, s, 5, 5)); err != nil {
				t.Errorf("WaitFor: %v", err)
				return
			}
		}
	})
	wg.Go(func() { // queries keep answering from the live generation
		prev := 0
		for {
			select {
			case <-stop:
				return
			default:
			}
			got, err := rows(ctx, s, c.p)
			if err != nil || got["$total"] < prev {
				t.Errorf("query during rebuild: total %d (before %d), %v", got["$total"], prev, err)
				return
			}
			prev = got["$total"]
		}
	})
	reports := 0
	err := r.Rebuild(ctx, func(projection.Status) { reports++ })
	close(stop)
	wg.Wait()
	if err != nil {
		t.Fatal(err)
	}
	if gen, err := c.p.Generation(ctx, "counter"); gen != 1 || err != nil || reports < 2 {
		t.Fatalf("generation %d (%v) after rebuild, %d reports", gen, err, reports)
	}
	if err := r.WaitFor(ctx, appendAccounts(t, s, 3, 5)); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(singlePass(t, s), c.rows(t)); diff != "" {
		t.Fatalf("rebuilt read model differs (-want +got):\n%s", diff)
	}
	if cp, _ := c.p.Checkpoint(ctx, "counter", 0); cp != 0 {
		t.Fatalf("old generation not dropped: checkpoint %d", cp)
	}
	if got, want := schemas(t, s), []string{s.Schema() + "$1_1"}; !cmp.Equal(got, want) {
		t.Fatalf("generation schemas after the rebuild: %q, want %q", got, want)
	}
}

// TestProjectionsFailureRetrySkip fails the handler on one event: the read model keeps the
// events before it (the failed batch rolled back, then applied one event per transaction),
// and Retry or Skip go on from there.
func TestProjectionsFailureRetrySkip(t *testing.T) {
	for _, choice := range []string{"retry", "skip"} {
		t.Run(choice, func(t *testing.T) {
			s := openStore(t, nil)
			c := newCounter(s)
			c.fail.Store(true)
			deposits := func(n int) uint64 {
				res, err := s.Append(context.Background(), "acct-0", annals.Any, slices.Repeat([]annals.Event{{Type: "Deposited", Data: []byte(`{}`)}}, n)...)
				if err != nil {
					t.Fatal(err)
				}
				return res.Position
			}
			deposits(150)
			bad, err := s.Append(context.Background(), "acct-0", annals.Any, annals.Event{Type: "Bad", Data: []byte(`{}`)})
			if err != nil {
				t.Fatal(err)
			}
			after := deposits(10)
			r := c.runner(t, nil)
			runInBackground(t, r)
			var st projection.Status
			testwait.Until(t, "failed", func() bool {
				st, err = r.Status(context.Background())
				return err == nil && st.State == projection.StateFailed
			})
			if st.FailedEvent == nil || st.FailedEvent.Position != bad.Position || st.Position != bad.Position-1 {
				t.Fatalf("failed status %+v, want failed at %d with checkpoint %d", st, bad.Position, bad.Position-1)
			}
			if !strings.Contains(st.LastError.Error(), "cannot handle Bad") {
				t.Fatalf("last error %v", st.LastError)
			}
			if cp, _ := c.p.Checkpoint(context.Background(), "counter", 0); cp != bad.Position-1 {
				t.Fatalf("stored checkpoint %d while failed, want %d", cp, bad.Position-1)
			}
			if diff := cmp.Diff(map[string]int{"$total": 150, "acct-0": 150}, c.rows(t)); diff != "" {
				t.Fatalf("while failed (-want +got):\n%s", diff)
			}
			want := 161
			if choice == "retry" {
				c.fail.Store(false)
				err = r.Retry()
			} else {
				want = 160
				err = r.Skip()
			}
			if err != nil {
				t.Fatal(err)
			}
			if err := r.WaitFor(waitCtx(t), after); err != nil {
				t.Fatal(err)
			}
			if got := c.rows(t)["$total"]; got != want {
				t.Fatalf("after %s: %d events applied, want %d", choice, got, want)
			}
		})
	}
}

// TestProjectionsReadAcrossProcesses reads through a Projections value of its own (another
// process) while a rebuild switches generations, and after a Reset: it follows the active
// generation. A projection that never ran reads as empty tables.
func TestProjectionsReadAcrossProcesses(t *testing.T) {
	s := openStore(t, nil)
	ctx := waitCtx(t)
	reader := pgstore.NewProjections(s, &pgstore.ProjectionsOptions{Setup: counterSetup})
	got, err := rows(ctx, s, reader)
	if err != nil || !cmp.Equal(got, map[string]int{"$total": 0}) {
		t.Fatalf("read of a projection that never ran: %v, %v", got, err)
	}
	c := newCounter(s)
	appendAccounts(t, s, 500, 3)
	r := c.runner(t, nil)
	if err := r.Rebuild(ctx, nil); err != nil { // generation 1, without Run
		t.Fatal(err)
	}
	got, err = rows(ctx, s, reader) // reader cached generation 0, now dropped
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(singlePass(t, s), got); diff != "" {
		t.Fatalf("read after another process's rebuild (-want +got):\n%s", diff)
	}
	if err := c.p.Reset(ctx, "counter", 1); err != nil {
		t.Fatal(err)
	}
	if cp, err := c.p.Checkpoint(ctx, "counter", 1); cp != 0 || err != nil {
		t.Fatalf("checkpoint after Reset: %d, %v", cp, err)
	}
	if got := schemas(t, s); len(got) != 0 {
		t.Fatalf("generation schemas after Reset: %q", got)
	}
	got, err = rows(ctx, s, reader)
	if err != nil || !cmp.Equal(got, map[string]int{"$total": 0}) {
		t.Fatalf("read after Reset: %v, %v", got, err)
	}
}

// TestProjectionsUpdateIsAtomic checks that an Update whose fn fails leaves neither rows nor
// checkpoint, and that a failing Setup leaves no generation behind.
func TestProjectionsUpdateIsAtomic(t *testing.T) {
	s := openStore(t, nil)
	ctx := t.Context()
	c := newCounter(s)
	boom := errors.New("boom")
	write := func(tx *pgstore.ProjectionTx) error {
		_, err := tx.Tx.Exec(ctx, "INSERT INTO "+tx.Schema()+".counts AS c VALUES ('x', 1) ON CONFLICT (stream) DO UPDATE SET n = c.n + 1")
		return err
	}
	if err := c.p.Update(ctx, "counter", 0, 0, 5, write); err != nil {
		t.Fatal(err)
	}
	err := c.p.Update(ctx, "counter", 0, 5, 9, func(tx *pgstore.ProjectionTx) error {
		if err := write(tx); err != nil {
			return err
		}
		return boom
	})
	if err != boom {
		t.Fatalf("Update with a failing fn: %v, want its error as is", err)
	}
	if cp, _ := c.p.Checkpoint(ctx, "counter", 0); cp != 5 {
		t.Fatalf("checkpoint %d after a failed Update, want 5", cp)
	}
	if got := c.rows(t); got["x"] != 1 {
		t.Fatalf("rows after a failed Update: %v", got)
	}
	bad := pgstore.NewProjections(s, &pgstore.ProjectionsOptions{Setup: func(context.Context, *pgstore.ProjectionTx) error { return boom }})
	if err := bad.Update(ctx, "other", 0, 0, 1, func(*pgstore.ProjectionTx) error { return nil }); err != boom {
		t.Fatalf("Update with a failing Setup: %v", err)
	}
	if cp, _ := bad.Checkpoint(ctx, "other", 0); cp != 0 {
		t.Fatalf("checkpoint %d after a failed Setup", cp)
	}
	if got := schemas(t, s); len(got) != 1 {
		t.Fatalf("generation schemas: %q, want only counter's", got)
	}
	if err := c.p.Update(ctx, "", 0, 0, 1, write); err == nil {
		t.Fatal("Update of an empty name: no error")
	}
}
