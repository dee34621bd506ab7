package pgstore_test

import (
	"fmt"
	"os"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/annalsdb/annals"
	"github.com/annalsdb/annals/pgstore"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgtype"
	"github.com/jackc/pgx/v5/pgxpool"
)

// The benchmarks measure the store beside a baseline run in the same benchmark: raw INSERTs
// into a plain table with the same columns and indexes as the store's events table, positions
// from a bigserial (the naive design, without the ordering guarantee or any check), and a raw
// scan of it. Run them with, for example:
//
//	go test -run '^$' -bench . -benchtime 20000x ./pgstore

// benchData is the body of every benchmark event: 200 bytes of JSON.
var benchData = []byte(`{"sku":"apple-0000000000","qty":2,"price":1234,"note":"` + string(slices.Repeat([]byte("x"), 139)) + `"}`)

// rawTable creates the baseline table in the store's schema and returns its quoted name.
func rawTable(b *testing.B, s *pgstore.Store) string {
	table := pgx.Identifier{s.Schema(), "raw_events"}.Sanitize()
	_, err := s.Pool().Exec(b.Context(), `CREATE TABLE `+table+` (
		position bigserial PRIMARY KEY, stream text COLLATE "C" NOT NULL, revision bigint NOT NULL, id uuid NOT NULL,
		type text COLLATE "C" NOT NULL, category text COLLATE "C" NOT NULL, content_type text NOT NULL,
		data bytea NOT NULL, metadata bytea NOT NULL, time timestamptz NOT NULL DEFAULT clock_timestamp(),
		UNIQUE (stream, revision));
		CREATE INDEX ON `+table+` (category, position); CREATE INDEX ON `+table+` (type, position)`)
	if err != nil {
		b.Fatal(err)
	}
	return table
}

// rawPool opens a pool of n connections for the baseline writers.
func rawPool(b *testing.B, n int32) *pgxpool.Pool {
	cfg, err := pgxpool.ParseConfig(testDatabase(b))
	if err != nil {
		b.Fatal(err)
	}
	cfg.MaxConns, cfg.MinConns = n, n
	p, err := pgxpool.NewWithConfig(b.Context(), cfg)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(p.Close)
	return p
}

// runWriters runs total calls of op spread over writers goroutines and returns the calls per
// second and the latencies, sorted.
func runWriters(b *testing.B, writers, total int, op func(w, i int) error) (float64, []time.Duration) {
	var next atomic.Int64
	lat := make([][]time.Duration, writers)
	var wg sync.WaitGroup
	var failed atomic.Value
	start := time.Now()
	for w := range writers {
		wg.Go(func() {
			for i := 0; ; i++ {
				if next.Add(1) > int64(total) {
					return
				}
				t0 := time.Now()
				if err := op(w, i); err != nil {
					failed.Store(err)
					return
				}
				lat[w] = append(lat[w], time.Since(t0))
			}
		})
	}
	wg.Wait()
	elapsed := time.Since(start)
	if err, ok := failed.Load().(error); ok {
		b.Fatal(err)
	}
	all := slices.Concat(lat...)
	slices.Sort(all)
	return float64(total) / elapsed.Seconds(), all
}

func quantile(sorted []time.Duration, q float64) float64 {
	if len(sorted) == 0 {
		return 0
	}
	return float64(sorted[int(q*float64(len(sorted)-1))].Microseconds()) / 1000
}

func benchEvents(n int) []annals.Event {
	evs := make([]annals.Event, n)
	for i := range evs {
		evs[i] = annals.Event{Type: "ItemAdded", Data: benchData, Metadata: []byte(`{"corr":"abc"}`)}
	}
	return evs
}

func rawRows(stream string, rev, n int) []any {
	streams, types, cats, cts := make([]string, n), make([]string, n), make([]string, n), make([]string, n)
	revs := make([]int64, n)
	ids := make([]pgtype.UUID, n)
	data, meta := make([][]byte, n), make([][]byte, n)
	for i := range n {
		streams[i], types[i], cats[i], cts[i] = stream, "ItemAdded", annals.Category(stream), annals.ContentTypeJSON
		revs[i] = int64(rev + i)
		ids[i] = pgtype.UUID{Bytes: annals.NewUUID(), Valid: true}
		data[i], meta[i] = benchData, []byte(`{"corr":"abc"}`)
	}
	return []any{streams, revs, ids, types, cats, cts, data, meta}
}

const rawInsertSQL = `INSERT INTO %s (stream, revision, id, type, category, content_type, data, metadata)
	SELECT * FROM unnest($1::text[], $2::int8[], $3::uuid[], $4::text[], $5::text[], $6::text[], $7::bytea[], $8::bytea[])`

// BenchmarkAppend64Writers: 64 goroutines append one event each, to a stream of their own;
// the baseline is 64 connections doing single-row INSERTs (autocommit) into the plain table.
// b.N is the number of appends of each run.
func BenchmarkAppend64Writers(b *testing.B) {
	const writers = 64
	s := openStore(b, &pgstore.Options{MaxConns: 8})
	table := rawTable(b, s)
	raw := rawPool(b, writers)
	ctx := b.Context()
	insert := fmt.Sprintf(rawInsertSQL, table)
	b.ResetTimer()
	rawRate, rawLat := runWriters(b, writers, b.N, func(w, i int) error {
		_, err := raw.Exec(ctx, insert, rawRows(fmt.Sprintf("w-%d", w), i, 1)...)
		return err
	})
	rate, lat := runWriters(b, writers, b.N, func(w, i int) error {
		_, err := s.Append(ctx, fmt.Sprintf("w-%d", w), annals.Any, benchEvents(1)...)
		return err
	})
	b.StopTimer()
	b.ReportMetric(rate, "events/s")
	b.ReportMetric(quantile(lat, 0.5), "p50-ms")
	b.ReportMetric(quantile(lat, 0.99), "p99-ms")
	b.ReportMetric(rawRate, "raw-rows/s")
	b.ReportMetric(quantile(rawLat, 0.5), "raw-p50-ms")
	b.ReportMetric(rate/rawRate, "x-raw")
}

// BenchmarkAppend100Events: one writer appends 100 events at a time to one stream; the
// baseline inserts 100 rows per statement (autocommit). b.N is the number of appends.
func BenchmarkAppend100Events(b *testing.B) {
	s := openStore(b, nil)
	table := rawTable(b, s)
	raw := rawPool(b, 1)
	ctx := b.Context()
	insert := fmt.Sprintf(rawInsertSQL, table)
	b.ResetTimer()
	rawRate, rawLat := runWriters(b, 1, b.N, func(_, i int) error {
		_, err := raw.Exec(ctx, insert, rawRows("batch-1", 100*i, 100)...)
		return err
	})
	rate, lat := runWriters(b, 1, b.N, func(_, i int) error {
		_, err := s.Append(ctx, "batch-1", annals.Any, benchEvents(100)...)
		return err
	})
	b.StopTimer()
	b.ReportMetric(100*rate, "events/s")
	b.ReportMetric(quantile(lat, 0.5), "p50-ms")
	b.ReportMetric(100*rawRate, "raw-rows/s")
	b.ReportMetric(quantile(rawLat, 0.5), "raw-p50-ms")
	b.ReportMetric(rate/rawRate, "x-raw")
}

// populate writes events events to s (100 per append, over 100 streams, and one stream
// "big-1" of 1,000 events written 100 at a time among them) and as many rows to the baseline
// table.
func populate(b *testing.B, s *pgstore.Store, table string, events int) {
	ctx := b.Context()
	insert := fmt.Sprintf(rawInsertSQL, table)
	revs := map[string]int{}
	for i := range events / 100 {
		stream := fmt.Sprintf("pop-%d", i%100)
		if i%(events/100/10+1) == 0 && revs["big-1"] < 1000 {
			stream = "big-1"
		}
		if _, err := s.Append(ctx, stream, annals.Any, benchEvents(100)...); err != nil {
			b.Fatal(err)
		}
		if _, err := s.Pool().Exec(ctx, insert, rawRows(stream, revs[stream], 100)...); err != nil {
			b.Fatal(err)
		}
		revs[stream] += 100
	}
	for revs["big-1"] < 1000 {
		if _, err := s.Append(ctx, "big-1", annals.Any, benchEvents(100)...); err != nil {
			b.Fatal(err)
		}
		revs["big-1"] += 100
	}
	if _, err := s.Pool().Exec(ctx, "VACUUM ANALYZE "+table); err != nil {
		b.Fatal(err)
	}
	if _, err := s.Pool().Exec(ctx, "VACUUM ANALYZE "+pgx.Identifier{s.Schema(), "events"}.Sanitize()); err != nil {
		b.Fatal(err)
	}
}

// BenchmarkReadAll: read the whole log of 200,000 events from the start, against a raw
// ORDER BY position scan of the baseline table into the same Go values. b.N is the number of
// full reads of each.
func BenchmarkReadAll(b *testing.B) {
	const events = 200_000
	s := openStore(b, &pgstore.Options{ReadBatch: benchReadBatch()})
	table := rawTable(b, s)
	populate(b, s, table, events)
	ctx := b.Context()
	var rawTime, storeTime time.Duration
	b.ResetTimer()
	for range b.N {
		t0 := time.Now()
		rows, err := s.Pool().Query(ctx, "SELECT position, stream, revision, id, type, content_type, data, metadata, time FROM "+table+" ORDER BY position")
		if err != nil {
			b.Fatal(err)
		}
		n := 0
		for rows.Next() {
			var e annals.RecordedEvent
			var pos, rev int64
			var id pgtype.UUID
			if err := rows.Scan(&pos, &e.Stream, &rev, &id, &e.Type, &e.ContentType, &e.Data, &e.Metadata, &e.Time); err != nil {
				b.Fatal(err)
			}
			e.Position, e.Revision, e.ID = uint64(pos), uint64(rev), id.Bytes
			n++
		}
		if err := rows.Err(); err != nil || n < events {
			b.Fatalf("raw scan: %d rows, %v", n, err)
		}
		rawTime += time.Since(t0)

		t0 = time.Now()
		n = 0
		for _, err := range s.ReadAll(ctx, nil) {
			if err != nil {
				b.Fatal(err)
			}
			n++
		}
		if n < events {
			b.Fatalf("ReadAll: %d events", n)
		}
		storeTime += time.Since(t0)
	}
	b.StopTimer()
	total := float64(b.N * events)
	b.ReportMetric(total/storeTime.Seconds(), "events/s")
	b.ReportMetric(total/rawTime.Seconds(), "raw-rows/s")
	b.ReportMetric(rawTime.Seconds()/storeTime.Seconds(), "x-raw")
}

// BenchmarkReadStream1000: read a 1,000-event stream whole, in a store of 100,000 events.
// b.N is the number of reads.
func BenchmarkReadStream1000(b *testing.B) {
	s := openStore(b, &pgstore.Options{ReadBatch: benchReadBatch()})
	populate(b, s, rawTable(b, s), 100_000)
	ctx := b.Context()
	lat := make([]time.Duration, 0, b.N)
	b.ResetTimer()
	for range b.N {
		t0 := time.Now()
		n := 0
		for _, err := range s.ReadStream(ctx, "big-1", nil) {
			if err != nil {
				b.Fatal(err)
			}
			n++
		}
		lat = append(lat, time.Since(t0))
		if n != 1000 {
			b.Fatalf("ReadStream: %d events, want 1000", n)
		}
	}
	b.StopTimer()
	slices.Sort(lat)
	b.ReportMetric(quantile(lat, 0.5), "p50-ms")
	b.ReportMetric(quantile(lat, 0.99), "p99-ms")
}

// benchReadBatch is Options.ReadBatch for the read benchmarks: ANNALS_READ_BATCH, or the
// default.
func benchReadBatch() int {
	n, _ := strconv.Atoi(os.Getenv("ANNALS_READ_BATCH"))
	return n
}
