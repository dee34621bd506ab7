package client_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/annalsdb/annals"
	"github.com/annalsdb/annals/groups"
	"github.com/annalsdb/annals/internal/testwait"
)

// BenchmarkGroups measures consumer groups: 4 consumers of one group, each with
// benchGroupWorkers goroutines that receive an event and ack it (one Ack per event), beside a
// plain subscription of $all in the same run (the baseline). "drain" appends b.N events first
// and measures how fast the group delivers and acks them all; "5000-per-s" appends at 5,000
// events/s while the consumers run and reports the latency from the append's acknowledgement
// to the delivery. Each runs embedded (a groups.Manager in process) and over the network
// (through the server's GroupService, one client per consumer).
//
//	go test -run '^$' -bench Groups -benchtime 100000x ./client
func BenchmarkGroups(b *testing.B) {
	env := newBenchEnv(b)
	mgr, err := groups.Open(b.Context(), env.store.(groups.Store), &groups.Options{Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { mgr.Close() })
	service := func(network bool) groups.Service {
		if network {
			return dial(b, env.url, nil).Groups()
		}
		return mgr
	}
	for _, load := range []struct {
		name    string
		rate    int
		streams int
	}{{"drain", 0, 1}, {"5000-per-s", 5000, 1}, {"pinned-1000-streams", 0, 1000}} {
		b.Run(load.name, func(b *testing.B) {
			for _, network := range []bool{false, true} {
				where := map[bool]string{false: "embedded", true: "network"}[network]
				b.Run("subscribe-all/"+where, func(b *testing.B) {
					runGroupBench(b, env, nil, network, load.rate, load.streams, groups.RoundRobin)
				})
				strategy := groups.RoundRobin
				if load.streams > 1 {
					strategy = groups.PinnedByStream
				}
				b.Run(string(strategy)+"-4/"+where, func(b *testing.B) {
					runGroupBench(b, env, func() groups.Service { return service(network) }, network, load.rate, load.streams, strategy)
				})
			}
		})
	}
}

// benchGroupWorkers is the number of goroutines of each consumer that receive and ack.
const benchGroupWorkers = 16

var benchGroupSeq atomic.Int64

// runGroupBench appends b.N events over streams streams (at rate events/s, 0: before the
// clock starts) and has them delivered by a group of 4 consumers (service non-nil) or by one
// plain subscription of $all (service nil), and reports events/s, the latency from the
// append's acknowledgement to the delivery when rate > 0, and CPU per event.
func runGroupBench(b *testing.B, env *benchEnv, service func() groups.Service, network bool, rate, streams int, strategy groups.Strategy) {
	ctx, cancel := context.WithCancel(b.Context())
	defer cancel()
	var head uint64
	for e, err := range env.store.ReadAll(ctx, &annals.ReadOptions{Backwards: true, From: annals.End, Limit: 1}) {
		if err != nil {
			b.Fatal(err)
		}
		head = e.Position
	}
	category := fmt.Sprintf("gb%d", benchGroupSeq.Add(1))
	n := b.N
	// By position - head: the system events of the groups (checkpoints) take positions
	// between the run's events, within a bound.
	slots := 2*n + 10_000
	acked := make([]atomic.Int64, slots) // append acknowledgement times
	got := make([]atomic.Int64, slots)   // delivery times
	settled := make([]atomic.Bool, slots)
	var settledN atomic.Int64
	done := make(chan struct{})
	// deliver records the first delivery of the event at pos; settle counts it done (a plain
	// subscription settles on delivery, a group's consumer once its ack is answered).
	deliver := func(pos uint64) bool {
		i := pos - head
		if i == 0 || i >= uint64(slots) {
			b.Errorf("delivered position %d outside the run (%d..%d)", pos, head+1, head+uint64(slots))
			return false
		}
		got[i].CompareAndSwap(0, time.Now().UnixNano())
		return true
	}
	settle := func(pos uint64) {
		if settled[pos-head].CompareAndSwap(false, true) && settledN.Add(1) == int64(n) {
			close(done)
		}
	}
	appendAll := func(start time.Time) {
		w := env.store
		if network {
			w = dial(b, env.url, nil)
		}
		var next atomic.Int64
		var wg sync.WaitGroup
		for range 16 {
			wg.Go(func() {
				for {
					i := next.Add(1)
					if i > int64(n) {
						return
					}
					if rate > 0 && !testwait.Pace(ctx, start, i-1, rate) {
						return
					}
					res, err := w.Append(ctx, fmt.Sprintf("%s-%d", category, i%int64(streams)), annals.Any, benchEvents(1)...)
					if err != nil {
						b.Error(err)
						return
					}
					acked[res.Position-head].Store(time.Now().UnixNano())
				}
			})
		}
		wg.Wait()
	}
	if rate == 0 {
		appendAll(time.Now())
	}
	filter := &annals.Filter{Categories: []string{category}}
	var consumers sync.WaitGroup
	if service == nil {
		s := env.store
		if network {
			s = dial(b, env.url, nil)
		}
		consumers.Go(func() {
			for e, err := range s.SubscribeAll(ctx, &annals.SubscribeOptions{From: head + 1, Filter: filter}) {
				if err != nil {
					if ctx.Err() == nil {
						b.Error(err)
					}
					return
				}
				if deliver(e.Position) {
					settle(e.Position)
				}
			}
		})
	} else {
		name := category
		if _, err := service().Create(ctx, name, groups.Settings{
			Stream: annals.AllStream, Filter: filter, Strategy: strategy,
			Start: groups.Start{Kind: groups.FromPosition, From: head + 1},
		}); err != nil {
			b.Fatal(err)
		}
		for range 4 {
			c, err := service().Join(ctx, name, &groups.JoinOptions{Name: "bench"})
			if err != nil {
				b.Fatal(err)
			}
			defer c.Close()
			for range benchGroupWorkers {
				consumers.Go(func() {
					for {
						m, err := c.Receive(ctx)
						if err != nil {
							if ctx.Err() == nil {
								b.Error(err)
							}
							return
						}
						if !deliver(m.Event.Position) {
							return
						}
						if err := c.Ack(ctx, m.Event.ID); err != nil {
							if ctx.Err() == nil {
								b.Error(err)
							}
							return
						}
						settle(m.Event.Position)
					}
				})
			}
		}
	}
	b.ResetTimer()
	start, cpu0 := time.Now(), cpuTime()
	if rate > 0 {
		appendAll(start)
	}
	select {
	case <-done:
	case <-ctx.Done():
	}
	elapsed := time.Since(start)
	reportCPU(b, cpu0, int64(n))
	b.StopTimer()
	cancel()
	consumers.Wait()
	b.ReportMetric(float64(n)/elapsed.Seconds(), "events/s")
	if rate > 0 {
		var lat []time.Duration
		for i := range got {
			if got[i].Load() != 0 {
				lat = append(lat, time.Duration(max(0, got[i].Load()-acked[i].Load())))
			}
		}
		b.ReportMetric(percentile(lat, 0.50), "p50-ms")
		b.ReportMetric(percentile(lat, 0.99), "p99-ms")
	}
	b.ReportMetric(0, "ns/op")
}
