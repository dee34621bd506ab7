package filestore

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/annalsdb/annals"
)

func TestQuickRead(t *testing.T) {
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
	for w := 0; w < 8; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			evs := make([]annals.Event, 100)
			for i := range evs {
				evs[i] = annals.Event{Type: "T", Data: data}
			}
			for i := 0; i < 1250; i++ {
				if _, err := s.Append(ctx, fmt.Sprintf("s-%d", i%1000), annals.Any, evs...); err != nil {
					panic(err)
				}
			}
		}(w)
	}
	wg.Wait()
	for r := 0; r < 3; r++ {
		t0 := time.Now()
		n := 0
		for _, err := range s.ReadAll(ctx, nil) {
			if err != nil {
				t.Fatal(err)
			}
			n++
		}
		t.Logf("readall %d events: %.0f/s", n, float64(n)/time.Since(t0).Seconds())
	}
}
