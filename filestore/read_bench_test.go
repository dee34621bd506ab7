package filestore

import (
	"context"
	"fmt"
	"os"
	"syscall"
	"testing"
	"time"

	"github.com/annalsdb/annals"
)

// The read benchmarks read a store of benchRounds rounds, each of which appends one event to
// each of benchStreams streams of category "read" (so that every event of theirs is an index
// run of its own, spread over the whole log) and benchFills appends of benchFillBatch events
// to new streams of category "fill":
//
//	go test -run '^$' -bench 'Read(All|Stream)' ./filestore
const (
	benchRounds    = 1000
	benchStreams   = 8
	benchFills     = 2
	benchFillBatch = 20
	benchEvents    = benchRounds * (benchStreams + benchFills*benchFillBatch)
)

// benchReadStore fills a store for the read benchmarks, on /dev/shm where there is one (the
// benchmarks measure reading, not the disk).
func benchReadStore(b *testing.B) *Store {
	b.Helper()
	dir := b.TempDir()
	if st, err := os.Stat("/dev/shm"); err == nil && st.IsDir() {
		if dir, err = os.MkdirTemp("/dev/shm", "annals-bench-"); err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { os.RemoveAll(dir) })
	}
	s, err := Open(dir, &Options{SegmentSize: 8 << 20, Limits: annals.Limits{MaxAppendSize: 1 << 20}})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { s.Close() })
	ctx := context.Background()
	event := func(typ string, i int) annals.Event {
		return annals.Event{Type: typ, Data: fmt.Appendf(nil, `{"i":%d,"note":"an event of about a hundred and twenty bytes, as events often are"}`, i)}
	}
	fill := make([]annals.Event, benchFillBatch)
	for round := range benchRounds {
		for k := range benchStreams {
			if _, err := s.Append(ctx, fmt.Sprintf("read-%d", k), annals.Any, event("Read", round)); err != nil {
				b.Fatal(err)
			}
		}
		for j := range benchFills {
			for i := range fill {
				fill[i] = event("Filled", i)
			}
			if _, err := s.Append(ctx, fmt.Sprintf("fill-%d.%d", round, j), annals.NoStream, fill...); err != nil {
				b.Fatal(err)
			}
		}
	}
	return s
}

// benchRead runs read b.N times, checking that each returns want events. Beside the time it
// reports the CPU time (user and system, of all threads) per read, which other processes
// on the machine disturb less.
func benchRead(b *testing.B, want int, read func(i int) func(func(annals.RecordedEvent, error) bool)) {
	b.Helper()
	b.ReportAllocs()
	b.ResetTimer()
	cpu0 := cpuTime()
	for i := range b.N {
		n := 0
		for _, err := range read(i) {
			if err != nil {
				b.Fatal(err)
			}
			n++
		}
		if n != want {
			b.Fatalf("read %d events, want %d", n, want)
		}
	}
	b.ReportMetric(float64(cpuTime()-cpu0)/float64(b.N), "cpu-ns/op")
	b.ReportMetric(float64(want), "events/op")
}

// cpuTime returns the CPU time (user and system) the process has used so far.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// BenchmarkReadAll reads the whole of $all (or the events of one category, which the
// category index serves), forwards and backwards, and the last ten events; an op is one read.
func BenchmarkReadAll(b *testing.B) {
	s := benchReadStore(b)
	ctx := context.Background()
	read := []struct {
		name string
		want int
		opts annals.ReadOptions
	}{
		{"forwards", benchEvents, annals.ReadOptions{}},
		{"backwards", benchEvents, annals.ReadOptions{Backwards: true, From: annals.End}},
		{"forwards-category", benchRounds * benchStreams, annals.ReadOptions{Filter: &annals.Filter{Categories: []string{"read"}}}},
		{"backwards-category", benchRounds * benchStreams, annals.ReadOptions{Backwards: true, From: annals.End, Filter: &annals.Filter{Categories: []string{"read"}}}},
		{"backwards-last10", 10, annals.ReadOptions{Backwards: true, From: annals.End, Limit: 10}},
	}
	for _, r := range read {
		b.Run(r.name, func(b *testing.B) {
			benchRead(b, r.want, func(int) func(func(annals.RecordedEvent, error) bool) {
				return s.ReadAll(ctx, &r.opts)
			})
		})
	}
}

// BenchmarkReadStream reads whole streams whose events are spread over the log, forwards and
// backwards, and the last ten events of one; an op is one read.
func BenchmarkReadStream(b *testing.B) {
	s := benchReadStore(b)
	ctx := context.Background()
	read := []struct {
		name string
		want int
		opts annals.ReadOptions
	}{
		{"forwards", benchRounds, annals.ReadOptions{}},
		{"backwards", benchRounds, annals.ReadOptions{Backwards: true, From: annals.End}},
		{"backwards-last10", 10, annals.ReadOptions{Backwards: true, From: annals.End, Limit: 10}},
	}
	for _, r := range read {
		b.Run(r.name, func(b *testing.B) {
			benchRead(b, r.want, func(i int) func(func(annals.RecordedEvent, error) bool) {
				return s.ReadStream(ctx, fmt.Sprintf("read-%d", i%benchStreams), &r.opts)
			})
		})
	}
}
