package client_test

import (
	"context"
	"flag"
	"testing"
	"time"

	"github.com/annalsdb/annals"
	"github.com/annalsdb/annals/filestore"
	"github.com/annalsdb/annals/internal/bench"
	"github.com/annalsdb/annals/memstore"
)

// BenchmarkWorkload runs the realistic workloads of "annals bench" (internal/bench), each with
// its embedded half (the store called in process) and its network half (the same kind of
// store behind a server in this process, over loopback h2c, one client and connection per
// simulated client), each on a new store, with 512-byte events and 16 clients:
//
//	go test -run '^$' -bench Workload -benchtime 2s ./client
//	go test -run '^$' -bench Workload/zipf ./client -args -annals.store memstore
//
// An op is a command (zipf-conditional), a read or an append (mixed-70-30), an event appended
// while the subscribers catch up (catchup-while-writing); the setup (prefill included) is
// outside the timer. Metrics: events/s (ops/s for mixed-70-30; events delivered for
// catchup-while-writing), p50-ms to p999-ms (per op; the writers' appends for
// catchup-while-writing), cpu-us/event (the whole test process: clients, server and store),
// conflict-rate (zipf-conditional), caught-up-ms (catchup-while-writing), and for the network
// half x-embedded, its throughput over that of the embedded half just before.
func BenchmarkWorkload(b *testing.B) {
	for _, w := range bench.Realistic() {
		b.Run(w, func(b *testing.B) {
			var embedded float64
			for _, path := range []string{bench.PathEmbedded, bench.PathNetwork} {
				b.Run(path, func(b *testing.B) {
					st := workloadStore(b)
					ep := bench.Embedded(st)
					if path == bench.PathNetwork {
						srv, err := bench.Serve(st)
						if err != nil {
							b.Fatal(err)
						}
						b.Cleanup(func() { srv.Close() })
						ep = srv.Endpoint()
					}
					res, err := bench.Measure(context.Background(), w, ep, &bench.Config{Ops: int64(b.N), Timer: b})
					if err != nil {
						b.Fatal(err)
					}
					reportWorkload(b, res)
					if path == bench.PathEmbedded {
						embedded = res.Rate
					} else if embedded > 0 {
						b.ReportMetric(res.Rate/embedded, "x-embedded")
					}
				})
			}
		})
	}
}

// workloadStore opens a new store of the kind -annals.store names (looked up by name, so that
// this file does not depend on the variable of the other benchmarks), closed at the end.
func workloadStore(b *testing.B) annals.Store {
	kind := "filestore"
	if f := flag.Lookup("annals.store"); f != nil {
		kind = f.Value.String()
	}
	var st annals.Store = memstore.New(nil)
	if kind != "memstore" {
		fs, err := filestore.Open(b.TempDir(), nil)
		if err != nil {
			b.Fatal(err)
		}
		st = fs
	}
	b.Cleanup(func() { st.Close() })
	return st
}

func reportWorkload(b *testing.B, res bench.Result) {
	ms := func(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
	b.ReportMetric(res.Rate, res.Unit)
	b.ReportMetric(ms(res.P50), "p50-ms")
	b.ReportMetric(ms(res.P95), "p95-ms")
	b.ReportMetric(ms(res.P99), "p99-ms")
	b.ReportMetric(ms(res.P999), "p999-ms")
	if res.CPUPerEvent > 0 {
		b.ReportMetric(res.CPUPerEvent, "cpu-us/event")
	}
	if res.Appends > 0 {
		b.ReportMetric(res.ConflictRate, "conflict-rate")
	}
	if res.CaughtUp > 0 {
		b.ReportMetric(ms(res.CaughtUp), "caught-up-ms")
	}
}
