// Package catchuptest holds what the catch-up benchmarks of projection, tables and pgstore
// (BenchmarkCatchUp) share: the modes they compare (Modes), the measuring loop and its
// metrics (Measure), a raw read of the log (ReadAll) and a timed catch-up of a runner (Run).
// Each benchmark keeps what is specific to its store: the log, the target, the handler and
// the check of the read model.
package catchuptest

import (
	"context"
	"syscall"
	"testing"
	"time"

	"github.com/annalsdb/annals"
	"github.com/annalsdb/annals/projection"
)

// Once is one catch-up of a benchmark with the runner options opts, into a new target, from
// position 0: how long it took, the CPU time the process used meanwhile, and the runner's
// status at the end. It fails b if the catch-up or the read model is wrong.
type Once func(b *testing.B, opts *projection.RunnerOptions) (time.Duration, time.Duration, projection.Status)

// Measure warms up (a raw read and a catch-up of the last mode), then runs, in every
// iteration, a raw read (readAll) and one catch-up of each of Modes (once), the first mode
// rotating between iterations, so that none is always first; each catch-up is of events
// events. It fails b if a Status does not show its mode in force. It reports each mode's rate
// (<mode>-events/s) and CPU per event (<mode>-cpu-µs/event), the raw read's rate
// (raw-read-events/s) and, with two modes, the ratio of the first mode's rate to the
// second's (lease/no-lease).
func Measure(b *testing.B, events int, readAll func(*testing.B) time.Duration, once Once) {
	readAll(b)
	once(b, Modes[len(Modes)-1].Opts)
	took := make([]time.Duration, len(Modes))
	cpu := make([]time.Duration, len(Modes))
	var raw time.Duration
	n := 0
	for b.Loop() {
		raw += readAll(b)
		for k := range Modes {
			i := (n + k) % len(Modes)
			d, used, st := once(b, Modes[i].Opts)
			if err := Modes[i].Check(st); err != nil {
				b.Fatalf("%s: %v", Modes[i].Name, err)
			}
			took[i], cpu[i] = took[i]+d, cpu[i]+used
		}
		n++
	}
	total := float64(n * events)
	for i, m := range Modes {
		b.ReportMetric(total/took[i].Seconds(), m.Name+"-events/s")
		b.ReportMetric(float64(cpu[i].Microseconds())/total, m.Name+"-cpu-µs/event")
	}
	b.ReportMetric(total/raw.Seconds(), "raw-read-events/s")
	if len(Modes) == 2 {
		b.ReportMetric(took[1].Seconds()/took[0].Seconds(), Modes[0].Name+"/"+Modes[1].Name)
	}
	b.ReportMetric(0, "ns/op")
}

// ReadAll reads the whole log of s, which must hold want events, and returns how long it
// took. It fails b on an error or another count.
func ReadAll(b *testing.B, s annals.Store, want int) time.Duration {
	t0 := time.Now()
	n := 0
	for _, err := range s.ReadAll(context.Background(), nil) {
		if err != nil {
			b.Fatal(err)
		}
		n++
	}
	d := time.Since(t0)
	if n != want {
		b.Fatalf("ReadAll: %d events, want %d", n, want)
	}
	return d
}

// Run runs r until it has applied the log up to position last and returns how long that
// took (from the call of Run), the CPU time the process used meanwhile, and r's status at
// that moment. It stops r before it returns and fails b if r fails or its status cannot be
// read.
func Run[Tx any](b *testing.B, r *projection.Runner[Tx], last uint64) (time.Duration, time.Duration, projection.Status) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	cpu0 := cpuTime(b)
	t0 := time.Now()
	go func() { done <- r.Run(ctx) }()
	err := r.WaitFor(context.Background(), last)
	d, cpu := time.Since(t0), cpuTime(b)-cpu0
	st, serr := r.Status(context.Background())
	cancel()
	<-done
	if err != nil {
		b.Fatal(err)
	}
	if serr != nil {
		b.Fatal(serr)
	}
	return d, cpu, st
}

// cpuTime returns the CPU time (user and system) the process has used.
func cpuTime(b *testing.B) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
