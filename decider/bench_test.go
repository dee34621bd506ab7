package decider_test

import (
	"context"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/annalsdb/annals"
	"github.com/annalsdb/annals/codec"
	"github.com/annalsdb/annals/decider"
	"github.com/annalsdb/annals/filestore"
)

// The benchmarks run on filestore (durable appends) in b.TempDir(), i.e. the package's temp
// disk. Each reports beside its figure the ratio to a bare durable append of one event
// measured in the same run:
//
//	go test -run '^$' -bench . -benchtime 2000x ./decider

func openBenchStore(b *testing.B) *filestore.Store {
	b.Helper()
	s, err := filestore.Open(b.TempDir(), nil)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { s.Close() })
	return s
}

// baselineAppend measures one bare durable append of an encoded ItemAdded to its own stream
// with an exact expected revision, and returns ns/op.
func baselineAppend(b *testing.B, s annals.Store) float64 {
	ctx := context.Background()
	ev, err := newRegistry(b).Encode(ItemAdded{SKU: "apple", Qty: 1}, codecMD())
	if err != nil {
		b.Fatal(err)
	}
	var rev annals.ExpectedRevision = annals.NoStream
	stream := fmt.Sprintf("base-%d", time.Now().UnixNano())
	b.ResetTimer()
	for b.Loop() {
		res, err := s.Append(ctx, stream, rev, ev)
		if err != nil {
			b.Fatal(err)
		}
		rev = annals.Exact(res.Revision)
	}
	return float64(b.Elapsed().Nanoseconds()) / float64(b.N)
}

// BenchmarkRoundTrip: Handle (load + decide + append) of one AddItem on streams of 100 events
// (100 streams used in turn, so each grows by b.N/100 during the run), beside
// BaselineAppend, a bare durable append of one event in the same run.
func BenchmarkRoundTrip(b *testing.B) {
	s := openBenchStore(b)
	var baseline float64
	b.Run("BaselineAppend", func(b *testing.B) { baseline = baselineAppend(b, s) })
	cases := []struct {
		name string
		opts *decider.Options[cartCmd]
	}{
		{"NoSnapshots", &decider.Options[cartCmd]{}},
		{"Snapshots", &decider.Options[cartCmd]{Snapshots: &decider.SnapshotPolicy{Every: 10, Version: "v1"}}},
		{"SnapshotsAndCache", &decider.Options[cartCmd]{Snapshots: &decider.SnapshotPolicy{Every: 10, Version: "v1"}, CacheSize: 1000}},
	}
	ctx := context.Background()
	for ci, c := range cases {
		b.Run(c.name, func(b *testing.B) {
			h := newHandler(b, s, c.opts)
			const streams = 100
			names := make([]string, streams)
			for i := range names {
				names[i] = fmt.Sprintf("rt%d-%d-%d", ci, b.N, i)
				if _, err := h.Handle(ctx, names[i], AddMany{N: 100}, nil); err != nil {
					b.Fatal(err)
				}
				// Warm up: the snapshot (if any) is saved and the cache (if any) filled.
				if _, err := h.Handle(ctx, names[i], AddItem{"apple", 1}, nil); err != nil {
					b.Fatal(err)
				}
			}
			i := 0
			b.ResetTimer()
			for b.Loop() {
				if _, err := h.Handle(ctx, names[i%streams], AddItem{"apple", 1}, nil); err != nil {
					b.Fatal(err)
				}
				i++
			}
			if baseline > 0 {
				b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/baseline, "x-baseline")
			}
		})
	}
}

// BenchmarkLoad10k: Handler.Load of a 10,000-event stream with a snapshot every 100 events
// (the last at revision 9999) and a tail of 50 events after it; reports the median (p50-µs)
// beside a bare durable append measured in the same run.
func BenchmarkLoad10k(b *testing.B) {
	s := openBenchStore(b)
	ctx := context.Background()
	var baseline float64
	b.Run("BaselineAppend", func(b *testing.B) { baseline = baselineAppend(b, s) })
	opts := func() *decider.Options[cartCmd] {
		return &decider.Options[cartCmd]{Snapshots: &decider.SnapshotPolicy{Every: 100, Version: "v1"}}
	}
	w := newHandler(b, s, opts())
	for range 100 {
		if _, err := w.Handle(ctx, "big-1", AddMany{N: 100}, nil); err != nil {
			b.Fatal(err)
		}
	}
	if _, err := w.Handle(ctx, "big-1", AddMany{N: 50}, nil); err != nil {
		b.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		opts *decider.Options[cartCmd]
	}{{"SnapshotEvery100", opts()}} {
		b.Run(tc.name, func(b *testing.B) {
			h := newHandler(b, s, tc.opts)
			durs := make([]time.Duration, 0, b.N)
			b.ResetTimer()
			for b.Loop() {
				start := time.Now()
				st, err := h.Load(ctx, "big-1", nil)
				durs = append(durs, time.Since(start))
				if err != nil || st.Revision != 10049 || st.Value.Events != 10050 {
					b.Fatalf("Load: %+v %v", st.Revision, err)
				}
			}
			slices.Sort(durs)
			b.ReportMetric(float64(durs[len(durs)/2].Nanoseconds())/1e3, "p50-µs")
			b.ReportMetric(float64(durs[len(durs)*99/100].Nanoseconds())/1e3, "p99-µs")
			if baseline > 0 {
				b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/baseline, "x-baseline")
			}
		})
	}
}

// codecMD is the metadata a handler writes for a command without options.
func codecMD() codec.Metadata {
	return codec.Metadata{CorrelationID: annals.NewUUID().String()}
}
