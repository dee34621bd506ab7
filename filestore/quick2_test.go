package filestore

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/annalsdb/annals"
)

func TestQuick64(t *testing.T) {
	if testing.Short() {
		t.Skip()
	}
	s, err := Open(t.TempDir(), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	ctx := context.Background()
	data := make([]byte, 200)
	var wg sync.WaitGroup
	var n atomic.Int64
	start := time.Now()
	for w := 0; w < 64; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			for time.Since(start) < 3*time.Second {
				if _, err := s.Append(ctx, fmt.Sprintf("s-%d", w), annals.Any, annals.Event{Type: "T", Data: data}); err != nil {
					panic(err)
				}
				n.Add(1)
			}
		}(w)
	}
	wg.Wait()
	t.Logf("%.0f events/s", float64(n.Load())/time.Since(start).Seconds())
}
