package client_test

import (
	"bufio"
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/annalsdb/annals"
	"github.com/annalsdb/annals/client"
	"github.com/annalsdb/annals/filestore"
	"github.com/annalsdb/annals/internal/testwait"
	"github.com/annalsdb/annals/memstore"
	"github.com/annalsdb/annals/server"
)

// The benchmarks of the network API. Each workload runs twice in the same run: "embedded",
// the store called in process (the baseline), and "network", the same store behind the
// server, called through Clients over loopback gRPC (h2c), one connection per client.
//
//	go test -run '^$' -bench . -benchtime 3s ./client
//	go test -run '^$' -bench . ./client -args -annals.store memstore
//
// Metrics: events/s, p50-ms and p99-ms (append latency, or delivery latency for the fan-out:
// from the append's acknowledgement to the subscriber's receipt, 0 when the event arrived
// first; p99-from-send-ms counts from the start of the append instead), rss-MiB, the resident
// memory of the test process (server and clients together) after the run, from
// /proc/self/status, and cpu-us/event, the CPU time (user and system) the test process spent
// per event during the run: on a shared machine it drifts less than the throughput. The
// network fan-out also reports fallbacks, the times a subscriber fell behind the server's ring
// of recent events and read from storage (server.Stats' Hub).
var benchStore = flag.String("annals.store", "filestore", "store behind the benchmarks' server: filestore or memstore")

const benchEventSize = 200

type benchEnv struct {
	store annals.Store
	srv   *server.Server
	url   string
}

func newBenchEnv(b *testing.B) *benchEnv {
	b.Helper()
	var st annals.Store
	switch *benchStore {
	case "memstore":
		st = memstore.New(nil)
	case "filestore":
		fs, err := filestore.Open(b.TempDir(), nil)
		if err != nil {
			b.Fatal(err)
		}
		st = fs
	default:
		b.Fatalf("-annals.store %q: want filestore or memstore", *benchStore)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	srv := server.New(st, &server.Options{Logger: slog.New(slog.NewTextHandler(io.Discard, nil)), Backend: *benchStore})
	hs := &http.Server{Handler: srv.Handler(), Protocols: h2c()}
	go hs.Serve(server.BufferedListener(ln)) // as annals serve does
	b.Cleanup(func() {
		srv.Close()
		hs.Close()
		st.Close()
	})
	return &benchEnv{store: st, srv: srv, url: "http://" + ln.Addr().String()}
}

// stores returns n stores to drive a workload with: the embedded store n times, or n clients.
func (e *benchEnv) stores(b *testing.B, network bool, n int) []annals.Store {
	out := make([]annals.Store, n)
	for i := range out {
		if network {
			out[i] = dial(b, e.url, nil)
		} else {
			out[i] = e.store
		}
	}
	return out
}

func benchEvents(n int) []annals.Event {
	evs := make([]annals.Event, n)
	data := []byte(`{"payload":"` + strings.Repeat("x", benchEventSize-14) + `"}`)
	for i := range evs {
		evs[i] = annals.Event{Type: "BenchEvent", Data: data}
	}
	return evs
}

func rssMiB() float64 {
	f, err := os.Open("/proc/self/status")
	if err != nil {
		return 0
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "VmRSS:"); ok {
			kb, _ := strconv.ParseFloat(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 64)
			return kb / 1024
		}
	}
	return 0
}

// cpuTime returns the CPU time (user and system) the process has used so far.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// reportCPU reports the CPU time used since cpu0 per event.
func reportCPU(b *testing.B, cpu0 time.Duration, events int64) {
	if events > 0 {
		b.ReportMetric(float64((cpuTime()-cpu0).Microseconds())/float64(events), "cpu-us/event")
	}
}

func percentile(d []time.Duration, p float64) float64 {
	if len(d) == 0 {
		return 0
	}
	slices.Sort(d)
	return float64(d[min(len(d)-1, int(float64(len(d))*p))].Microseconds()) / 1000
}

// runAppends appends b.N events in appends of batch events, from one goroutine per store,
// to len(stores) distinct streams, and reports throughput and latency.
func runAppends(b *testing.B, stores []annals.Store, batch int) {
	appends := int64((b.N + batch - 1) / batch)
	var next atomic.Int64
	lat := make([][]time.Duration, len(stores))
	var wg sync.WaitGroup
	b.ResetTimer()
	start, cpu0 := time.Now(), cpuTime()
	for w, s := range stores {
		wg.Go(func() {
			stream := fmt.Sprintf("bench-%d-%d", w, time.Now().UnixNano())
			for next.Add(1) <= appends {
				evs := benchEvents(batch)
				t0 := time.Now()
				if _, err := s.Append(context.Background(), stream, annals.Any, evs...); err != nil {
					b.Error(err)
					return
				}
				lat[w] = append(lat[w], time.Since(t0))
			}
		})
	}
	wg.Wait()
	elapsed := time.Since(start)
	reportCPU(b, cpu0, appends*int64(batch))
	b.StopTimer()
	all := slices.Concat(lat...)
	b.ReportMetric(float64(appends)*float64(batch)/elapsed.Seconds(), "events/s")
	b.ReportMetric(percentile(all, 0.50), "p50-ms")
	b.ReportMetric(percentile(all, 0.99), "p99-ms")
	b.ReportMetric(rssMiB(), "rss-MiB")
	b.ReportMetric(0, "ns/op")
}

// BenchmarkAppend: 64 clients appending single events (target ≥ 50,000 events/s, p99 ≤ 10
// ms over the network), 16 clients sending 100-event appends (target ≥ 400,000 events/s), and
// 64 goroutines appending single events through one client (target ≥ 0.7× embedded, p99 ≤ 5
// ms). Each runs embedded, then over the network through the clients' BatchAppend streams
// (network), then with one unary call per append (network-unary).
func BenchmarkAppend(b *testing.B) {
	for _, w := range []struct {
		name                         string
		clients, goroutines, perCall int
	}{
		{"1-event-64-clients", 64, 64, 1},
		{"100-events-16-clients", 16, 16, 100},
		{"1-event-64-goroutines-1-client", 1, 64, 1},
	} {
		b.Run(w.name, func(b *testing.B) {
			env := newBenchEnv(b)
			b.Run("embedded", func(b *testing.B) {
				runAppends(b, env.stores(b, false, w.goroutines), w.perCall)
			})
			for _, half := range []struct {
				name string
				opts *client.Options
			}{{"network", nil}, {"network-unary", &client.Options{UnaryAppends: true}}} {
				b.Run(half.name, func(b *testing.B) {
					clients := make([]annals.Store, w.clients)
					for i := range clients {
						clients[i] = dial(b, env.url, half.opts)
					}
					stores := make([]annals.Store, w.goroutines)
					for i := range stores {
						stores[i] = clients[i%w.clients]
					}
					runAppends(b, stores, w.perCall)
				})
			}
		})
	}
}

// BenchmarkFanout: 100 subscribers of $all, each of which must see every event (target p99
// append → delivery ≤ 5 ms over the network). In "embedded" and "network" 4 writers append b.N
// single events as fast as they can, through the store or through a client. In "5000-per-s"
// 32 writers append them at 5,000 events/s in total (each event due at its own time) to the
// store in process in both halves, so that the figures are those of the fan-out under a
// steady load, not of a saturated process or of the network appends (BenchmarkAppend).
func BenchmarkFanout(b *testing.B) {
	env := newBenchEnv(b)
	for _, network := range []bool{false, true} {
		b.Run(map[bool]string{false: "embedded", true: "network"}[network], func(b *testing.B) {
			runFanout(b, env, network, 4, 0)
		})
	}
	b.Run("5000-per-s", func(b *testing.B) {
		for _, network := range []bool{false, true} {
			b.Run(map[bool]string{false: "embedded", true: "network"}[network], func(b *testing.B) {
				runFanout(b, env, network, 32, 5000)
			})
		}
	})
}

// runFanout runs 100 subscribers of $all while writers append b.N single events, at rate
// events/s in total (0: unthrottled), and reports the throughput and the delivery latencies.
func runFanout(b *testing.B, env *benchEnv, network bool, writers, rate int) {
	const subscribers = 100
	var head uint64
	for e, err := range env.store.ReadAll(b.Context(), &annals.ReadOptions{Backwards: true, From: annals.End, Limit: 1}) {
		if err != nil {
			b.Fatal(err)
		}
		head = e.Position
	}
	st, err := env.srv.Stats(b.Context())
	if err != nil {
		b.Fatal(err)
	}
	fallbacks0 := st.Hub.Fallbacks
	n := b.N
	acks := make([]atomic.Int64, n+writers)
	sent := make([]atomic.Int64, n+writers) // when the append that wrote each event began
	ctx, cancel := context.WithCancel(b.Context())
	defer cancel()
	recv := make([][]int64, subscribers)
	var ready, done sync.WaitGroup
	for i, s := range env.stores(b, network, subscribers) {
		ready.Add(1)
		done.Go(func() {
			first := true
			recv[i] = make([]int64, 0, n)
			for e, err := range s.SubscribeAll(ctx, &annals.SubscribeOptions{From: head + 1}) {
				if first {
					ready.Done()
					first = false
				}
				if err != nil {
					b.Error(err)
					return
				}
				recv[i] = append(recv[i], time.Now().UnixNano())
				if e.Position != head+uint64(len(recv[i])) {
					b.Errorf("subscriber %d: got position %d, want %d", i, e.Position, head+uint64(len(recv[i])))
					return
				}
				if len(recv[i]) == n {
					return
				}
			}
		})
	}
	// The subscriptions are running once each has delivered the first event; the first
	// append is sent before that, and left out of the latencies.
	w := env.store
	if network && rate == 0 {
		w = dial(b, env.url, nil)
	}
	res, err := w.Append(ctx, "fan-0", annals.Any, benchEvents(1)...)
	if err != nil {
		b.Fatal(err)
	}
	acks[res.Position-head-1].Store(time.Now().UnixNano())
	ready.Wait()
	b.ResetTimer()
	start, cpu0 := time.Now(), cpuTime()
	var next atomic.Int64
	next.Store(1)
	var wg sync.WaitGroup
	for range writers {
		wg.Go(func() {
			for {
				i := next.Add(1)
				if i > int64(n) {
					return
				}
				if rate > 0 && !testwait.Pace(ctx, start, i-2, rate) {
					return
				}
				t0 := time.Now().UnixNano()
				res, err := w.Append(ctx, "fan-1", annals.Any, benchEvents(1)...)
				if err != nil {
					b.Error(err)
					return
				}
				acks[res.Position-head-1].Store(time.Now().UnixNano())
				sent[res.Position-head-1].Store(t0)
			}
		})
	}
	wg.Wait()
	done.Wait()
	elapsed := time.Since(start)
	reportCPU(b, cpu0, int64(n))
	b.StopTimer()
	var lat, fromSend []time.Duration
	for i := range recv {
		if len(recv[i]) != n {
			b.Fatalf("subscriber %d saw %d of %d events", i, len(recv[i]), n)
		}
		for j, t := range recv[i][1:] {
			// An event may reach a subscriber before its writer has the answer: 0.
			lat = append(lat, time.Duration(max(0, t-acks[j+1].Load())))
			fromSend = append(fromSend, time.Duration(t-sent[j+1].Load()))
		}
	}
	b.ReportMetric(percentile(fromSend, 0.99), "p99-from-send-ms")
	b.ReportMetric(float64(n)/elapsed.Seconds(), "events/s")
	b.ReportMetric(float64(n*subscribers)/elapsed.Seconds(), "deliveries/s")
	b.ReportMetric(percentile(lat, 0.50), "p50-ms")
	b.ReportMetric(percentile(lat, 0.99), "p99-ms")
	b.ReportMetric(rssMiB(), "rss-MiB")
	b.ReportMetric(0, "ns/op")
	if network {
		st, err := env.srv.Stats(b.Context())
		if err != nil {
			b.Fatal(err)
		}
		b.ReportMetric(float64(st.Hub.Fallbacks-fallbacks0), "fallbacks")
	}
}

// benchReadEvents is the size of the log BenchmarkReadAll reads.
const benchReadEvents = 500_000

// BenchmarkReadAll reads the whole $all of benchReadEvents events per iteration (target over
// the network: ≥ 0.6× the embedded store and ≥ 2,000,000 events/s).
func BenchmarkReadAll(b *testing.B) {
	env := newBenchEnv(b)
	evs := benchEvents(1000)
	for i := range benchReadEvents / len(evs) {
		if _, err := env.store.Append(b.Context(), fmt.Sprintf("read-%d", i%100), annals.Any, evs...); err != nil {
			b.Fatal(err)
		}
	}
	for _, network := range []bool{false, true} {
		b.Run(map[bool]string{false: "embedded", true: "network"}[network], func(b *testing.B) {
			s := env.stores(b, network, 1)[0]
			b.ResetTimer()
			start, cpu0 := time.Now(), cpuTime()
			total := 0
			for range b.N {
				n := 0
				for _, err := range s.ReadAll(b.Context(), nil) {
					if err != nil {
						b.Fatal(err)
					}
					n++
				}
				if n != benchReadEvents {
					b.Fatalf("read %d events, want %d", n, benchReadEvents)
				}
				total += n
			}
			elapsed := time.Since(start)
			reportCPU(b, cpu0, int64(total))
			b.StopTimer()
			b.ReportMetric(float64(total)/elapsed.Seconds(), "events/s")
			b.ReportMetric(rssMiB(), "rss-MiB")
		})
	}
}
