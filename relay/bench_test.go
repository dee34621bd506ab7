package relay

import (
	"context"
	"testing"

	"github.com/annalsdb/annals"
	"github.com/annalsdb/annals/bridge"
	"github.com/annalsdb/annals/memstore"
)

// instantPub acknowledges each message at once, on the publishing goroutine, and closes all
// when it has acknowledged want messages.
type instantPub struct {
	n, want int
	all     chan struct{}
}

func (p *instantPub) Publish(ctx context.Context, msg *bridge.Message, done func(error)) error {
	done(nil)
	if p.n++; p.n == p.want {
		close(p.all)
	}
	return nil
}

func (p *instantPub) Permanent(error) bool { return false }

// BenchmarkRelay measures the relay's own cost per event: b.N events stored in a memstore,
// published to a broker that acknowledges at once.
func BenchmarkRelay(b *testing.B) {
	b.ReportAllocs()
	s := memstore.New(nil)
	b.Cleanup(func() { s.Close() })
	ctx := context.Background()
	batch := make([]annals.Event, 0, 100)
	for i := 0; i < b.N; i += len(batch) {
		batch = batch[:0]
		for j := 0; j < 100 && i+j < b.N; j++ {
			batch = append(batch, annals.Event{Type: "ItemAdded", Data: []byte(`{"sku":"abc-123","qty":2}`)})
		}
		if _, err := s.Append(ctx, "cart-1", annals.Any, batch...); err != nil {
			b.Fatal(err)
		}
	}
	p := &instantPub{want: b.N, all: make(chan struct{})}
	opts := &Options{Name: "bench", Encoder: testEncoder(b)}
	r := newRelay(b, s, p, opts)
	runCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	done := make(chan error, 1)
	b.ResetTimer()
	go func() { done <- r.Run(runCtx) }()
	select {
	case <-p.all:
	case err := <-done:
		b.Fatalf("Run: %v", err)
	}
	b.StopTimer()
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "events/s")
	cancel()
	if err := <-done; err != nil {
		b.Fatal(err)
	}
}
