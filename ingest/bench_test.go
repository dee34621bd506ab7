package ingest

import (
	"context"
	"fmt"
	"math/rand/v2"
	"testing"

	"github.com/annalsdb/annals"
	"github.com/annalsdb/annals/bridge"
	"github.com/annalsdb/annals/filestore"
	"github.com/annalsdb/annals/internal/testwait"
	"github.com/annalsdb/annals/memstore"
)

func benchStores(b *testing.B, fn func(b *testing.B, store annals.Store)) {
	b.Run("memstore", func(b *testing.B) {
		s := memstore.New(nil)
		defer s.Close()
		fn(b, s)
	})
	b.Run("filestore", func(b *testing.B) {
		s, err := filestore.Open(b.TempDir(), nil)
		if err != nil {
			b.Fatal(err)
		}
		defer s.Close()
		fn(b, s)
	})
}

// BenchmarkIngest ingests b.N messages from 4 partitions into 16 streams, in batches of
// DefaultBatch.
func BenchmarkIngest(b *testing.B) {
	benchStores(b, func(b *testing.B, store annals.Store) {
		rng := rand.New(rand.NewPCG(1, 1))
		bus := newTestBus()
		var w workload
		msgs := generate(rng, &w, 4, b.N, 0)
		for _, m := range msgs {
			source := fmt.Sprintf("test:orders/%d", m.part)
			w.last[source] = bus.add(source, m.msg)
		}
		src := &testSource{bus: bus, kafka: true, store: store, name: "orders", rng: rng, full: true}
		in, err := New(store, src, &Options{Name: "orders", Decoder: decoder(b), Policy: fastRetries})
		if err != nil {
			b.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		b.ResetTimer()
		go func() { done <- in.Run(ctx) }()
		testwait.Until(b, "every message appended", func() bool { return w.caughtUp(in) })
		b.StopTimer()
		cancel()
		if err := <-done; err != nil {
			b.Fatal(err)
		}
		b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "events/s")
	})
}

// BenchmarkAppendBaseline appends the events BenchmarkIngest appends, as it groups them
// (DefaultBatch messages, one append per stream), without an ingest: the store's own rate.
func BenchmarkAppendBaseline(b *testing.B) {
	benchStores(b, func(b *testing.B, store annals.Store) {
		rng := rand.New(rand.NewPCG(1, 1))
		var w workload
		msgs := generate(rng, &w, 4, b.N, 0)
		dec := decoder(b)
		ctx := context.Background()
		b.ResetTimer()
		for len(msgs) > 0 {
			n := min(len(msgs), DefaultBatch)
			var streams []string
			byStream := map[string][]annals.Event{}
			for _, m := range msgs[:n] {
				stream, ev, err := dec.Decode(&bridge.Incoming{Message: m.msg, Source: "test:orders/0"})
				if err != nil {
					b.Fatal(err)
				}
				if _, ok := byStream[stream]; !ok {
					streams = append(streams, stream)
				}
				byStream[stream] = append(byStream[stream], ev)
			}
			err := parallel(ctx, len(streams), func(ctx context.Context, i int) error {
				_, err := store.Append(ctx, streams[i], annals.Any, byStream[streams[i]]...)
				return err
			})
			if err != nil {
				b.Fatal(err)
			}
			msgs = msgs[n:]
		}
		b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "events/s")
	})
}
