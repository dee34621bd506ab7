package filestore

import (
	"context"
	"fmt"
	"sort"
	"sync"
	"testing"
	"time"

	"github.com/annalsdb/annals"
)

func TestQuickPerf(t *testing.T) {
	if testing.Short() {
		t.Skip()
	}
	dir := t.TempDir()
	s, err := Open(dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	ctx := context.Background()
	data := make([]byte, 200)
	for i := range data {
		data[i] = 'a'
	}
	for _, writers := range []int{1, 64, 256} {
		for _, per := range []int{1, 100} {
			var wg sync.WaitGroup
			var mu sync.Mutex
			var lat []time.Duration
			dur := 2 * time.Second
			start := time.Now()
			for w := 0; w < writers; w++ {
				wg.Add(1)
				go func(w int) {
					defer wg.Done()
					evs := make([]annals.Event, per)
					for i := range evs {
						evs[i] = annals.Event{Type: "T", Data: data}
					}
					var l []time.Duration
					for time.Since(start) < dur {
						t0 := time.Now()
						if _, err := s.Append(ctx, fmt.Sprintf("s-%d", w), annals.Any, evs...); err != nil {
							panic(err)
						}
						l = append(l, time.Since(t0))
					}
					mu.Lock()
					lat = append(lat, l...)
					mu.Unlock()
				}(w)
			}
			wg.Wait()
			el := time.Since(start)
			sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
			t.Logf("writers=%d per=%d: %.0f events/s p50=%v p99=%v", writers, per, float64(len(lat)*per)/el.Seconds(), lat[len(lat)/2], lat[len(lat)*99/100])
		}
	}
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
