package filestore

import (
	"context"
	"fmt"
	"sync"
	"testing"

	"github.com/annalsdb/annals"
)

func BenchmarkQuickReadAll(b *testing.B) {
	s, err := Open(b.TempDir(), nil)
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	ctx := context.Background()
	data := make([]byte, 200)
	var wg sync.WaitGroup
	for w := 0; w < 8; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			evs := make([]annals.Event, 100)
			for i := range evs {
				evs[i] = annals.Event{Type: "T", Data: data}
			}
			for i := 0; i < 250; i++ {
				s.Append(ctx, fmt.Sprintf("s-%d", i%1000), annals.Any, evs...)
			}
		}(w)
	}
	wg.Wait()
	b.ResetTimer()
	n := 0
	for b.Loop() {
		for _, err := range s.ReadAll(ctx, nil) {
			if err != nil {
				b.Fatal(err)
			}
			n++
		}
	}
	b.ReportMetric(float64(n)/b.Elapsed().Seconds(), "events/s")
}
