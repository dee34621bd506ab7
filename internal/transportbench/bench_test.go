package transportbench

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/annalsdb/annals"
	"github.com/annalsdb/annals/filestore"
	"github.com/annalsdb/annals/memstore"
)

// BenchmarkBatchAppend runs each workload through each transport and, first, against the
// store in process ("embedded", the baseline), on a memstore (the transport's cost alone) and
// on a filestore (the default store, bound by fdatasync):
//
//	go test -run '^$' -bench . -benchtime 2s ./internal/transportbench
//	go test -run '^$' -bench 'BatchAppend/memstore' -benchtime 2s ./internal/transportbench
//
// Metrics: events/s, p50-ms and p99-ms of the appends, and cpu-us/event, the CPU time (user
// and system) of the whole process (clients, server and store) per event appended.
func BenchmarkBatchAppend(b *testing.B) {
	workloads := []struct {
		name                    string
		conns, perConn, perCall int
	}{
		{"1-event-64-goroutines-1-conn", 1, 64, 1},
		{"1-event-64-conns", 64, 1, 1},
		{"100-events-16-conns", 16, 1, 100},
	}
	for _, store := range []string{"memstore", "filestore"} {
		b.Run(store, func(b *testing.B) {
			st := openStore(b, store)
			srv := startServers(b, st)
			for _, w := range workloads {
				b.Run(w.name, func(b *testing.B) {
					b.Run("embedded", func(b *testing.B) {
						runAppends(b, slices.Repeat([]appender{st}, w.conns), w.perConn, w.perCall)
					})
					for _, tr := range transports {
						b.Run(tr.name, func(b *testing.B) {
							cs := make([]appender, w.conns)
							for i := range cs {
								c, err := tr.dial(srv)
								if err != nil {
									b.Fatal(err)
								}
								defer c.Close()
								cs[i] = c
							}
							runAppends(b, cs, w.perConn, w.perCall)
						})
					}
				})
			}
		})
	}
}

func openStore(b *testing.B, name string) annals.Store {
	var st annals.Store = memstore.New(nil)
	if name == "filestore" {
		fs, err := filestore.Open(b.TempDir(), nil)
		if err != nil {
			b.Fatal(err)
		}
		st = fs
	}
	b.Cleanup(func() { st.Close() })
	return st
}

type appender interface {
	Append(ctx context.Context, stream string, expected annals.ExpectedRevision, events ...annals.Event) (annals.AppendResult, error)
}

// runAppends appends b.N events in appends of perCall events, from perConn goroutines on each
// appender, each goroutine to a stream of its own, and reports throughput, latency and CPU.
func runAppends(b *testing.B, as []appender, perConn, perCall int) {
	appends := int64((b.N + perCall - 1) / perCall)
	var next atomic.Int64
	lat := make([][]time.Duration, len(as)*perConn)
	evs := benchEvents(perCall)
	run := fmt.Sprint(time.Now().UnixNano())
	var wg sync.WaitGroup
	b.ResetTimer()
	start, cpu0 := time.Now(), cpuTime()
	for g := range lat {
		wg.Go(func() {
			a, stream := as[g/perConn], fmt.Sprintf("bench-%s-%d", run, g)
			for next.Add(1) <= appends {
				t0 := time.Now()
				if _, err := a.Append(context.Background(), stream, annals.Any, evs...); err != nil {
					b.Error(err)
					return
				}
				lat[g] = append(lat[g], time.Since(t0))
			}
		})
	}
	wg.Wait()
	elapsed, cpu := time.Since(start), cpuTime()-cpu0
	b.StopTimer()
	events := float64(appends) * float64(perCall)
	all := slices.Concat(lat...)
	b.ReportMetric(events/elapsed.Seconds(), "events/s")
	b.ReportMetric(percentile(all, 0.50), "p50-ms")
	b.ReportMetric(percentile(all, 0.99), "p99-ms")
	b.ReportMetric(float64(cpu.Microseconds())/events, "cpu-us/event")
	b.ReportMetric(0, "ns/op")
}

// benchEvents returns n events of 200 bytes of JSON, as client/bench_test.go's.
func benchEvents(n int) []annals.Event {
	evs := make([]annals.Event, n)
	data := []byte(`{"payload":"` + strings.Repeat("x", 200-14) + `"}`)
	for i := range evs {
		evs[i] = annals.Event{Type: "BenchEvent", Data: data}
	}
	return evs
}

// cpuTime returns the CPU time (user and system) the process has used so far.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func percentile(d []time.Duration, p float64) float64 {
	if len(d) == 0 {
		return 0
	}
	slices.Sort(d)
	return float64(d[min(len(d)-1, int(float64(len(d))*p))].Microseconds()) / 1000
}
