package groups_test

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/annalsdb/annals"
	"github.com/annalsdb/annals/groups"
	"github.com/annalsdb/annals/memstore"
)

// BenchmarkDeliverAck measures a group on memstore delivering to 4 consumers that ack each
// event: b.N events appended beforehand, then delivered and acked.
func BenchmarkDeliverAck(b *testing.B) {
	for _, strategy := range []groups.Strategy{groups.RoundRobin, groups.PinnedByStream} {
		b.Run(string(strategy), func(b *testing.B) {
			ctx := context.Background()
			store := memstore.New(nil)
			defer store.Close()
			m, err := groups.Open(ctx, store, nil)
			if err != nil {
				b.Fatal(err)
			}
			defer m.Close()
			batch := make([]annals.Event, 0, 1000)
			for i := range b.N {
				batch = append(batch, annals.Event{Type: "E", Data: []byte(`{}`)})
				if len(batch) == cap(batch) || i == b.N-1 {
					if _, err := store.Append(ctx, fmt.Sprintf("s-%d", i%1000), annals.Any, batch...); err != nil {
						b.Fatal(err)
					}
					batch = batch[:0]
				}
			}
			if _, err := m.Create(ctx, "g", groups.Settings{Stream: annals.AllStream, Strategy: strategy}); err != nil {
				b.Fatal(err)
			}
			b.ResetTimer()
			var done atomic.Int64
			var wg sync.WaitGroup
			cctx, cancel := context.WithCancel(ctx)
			for range 4 {
				c, err := m.Join(ctx, "g", nil)
				if err != nil {
					b.Fatal(err)
				}
				wg.Add(1)
				go func() {
					defer wg.Done()
					for {
						msg, err := c.Receive(cctx)
						if err != nil {
							return
						}
						if err := c.Ack(cctx, msg.Event.ID); err != nil {
							return
						}
						if done.Add(1) == int64(b.N) {
							cancel()
						}
					}
				}()
			}
			wg.Wait()
			cancel()
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "events/s")
		})
	}
}
