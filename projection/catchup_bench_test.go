package projection_test

import (
	"context"
	"fmt"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/annalsdb/annals"
	"github.com/annalsdb/annals/memstore"
	"github.com/annalsdb/annals/projection"
	"github.com/annalsdb/annals/supervisor"
)

// BenchmarkCatchUp: a runner catches up with a memstore log of catchUpEvents small events
// (appends of 100 over 1,000 streams) into a projection.Memory that counts events per
// stream, with the default batch (projection.DefaultMaxBatch). Each iteration reads the log
// raw (ReadAll, the baseline) and runs one catch-up of each of catchUpModes, in an order that
// rotates between iterations: "lease" runs under the default supervision (the lease of
// projection.Memory, checked in every Update, and compare-and-set checkpoints), "no-lease"
// with Supervision.NoLease (compare-and-set checkpoints only). Each catch-up is into a new
// Memory, from position 0. It reports each mode's rate and the process's CPU per event, and
// lease/no-lease, the ratio of their rates.
//
//	go test -run '^$' -bench 'BenchmarkCatchUp$' -benchtime 5x ./projection
//
// docs/BENCHMARKS.md compares it with the runner before leases and compare-and-set.
func BenchmarkCatchUp(b *testing.B) {
	s := catchUpLog(b)
	once := func(b *testing.B, opts *projection.RunnerOptions) (time.Duration, time.Duration, projection.Status) {
		mem := projection.NewMemory(func() map[string]int { return map[string]int{} })
		r, err := projection.NewRunner(s, mem, projection.Projection[map[string]int]{
			Name: "catch-up",
			Handle: func(_ context.Context, counts map[string]int, ev annals.RecordedEvent) error {
				counts[ev.Stream]++
				return nil
			},
		}, opts)
		if err != nil {
			b.Fatal(err)
		}
		d, cpu, st := catchUp(b, r, catchUpEvents)
		mem.Read("catch-up", func(c map[string]int, cp uint64) {
			if len(c) != 1000 || c["acct-0"] != catchUpEvents/1000 || cp != catchUpEvents {
				b.Fatalf("%d streams counted, acct-0 %d, checkpoint %d", len(c), c["acct-0"], cp)
			}
		})
		return d, cpu, st
	}
	b.Run("memstore", func(b *testing.B) {
		measureCatchUps(b, catchUpEvents, func(b *testing.B) time.Duration { return readAllOf(b, s, catchUpEvents) }, once)
	})
}

// catchUpMode is a configuration of the runner that BenchmarkCatchUp compares; check tells
// whether a Status taken at the end of a catch-up shows the configuration in force.
type catchUpMode struct {
	name  string
	opts  *projection.RunnerOptions
	check func(projection.Status) error
}

var catchUpModes = []catchUpMode{
	{"lease", nil, func(st projection.Status) error {
		if st.Supervisor.Lease.Token == 0 {
			return fmt.Errorf("ran without a lease: %+v", st.Supervisor)
		}
		return nil
	}},
	{"no-lease", &projection.RunnerOptions{Supervision: supervisor.Policy{NoLease: true}}, func(st projection.Status) error {
		if st.Supervisor.Lease.Token != 0 {
			return fmt.Errorf("ran under a lease: %+v", st.Supervisor)
		}
		return nil
	}},
}

// measureCatchUps warms up (a raw read and a catch-up of the last mode), then runs, in every
// iteration, a raw read (readAll) and one catch-up of each of catchUpModes (once), the first
// mode rotating between iterations, so that none is always first; each catch-up is of events
// events. It reports each mode's rate and CPU per event, the raw read's rate and, with two
// modes, the ratio of the first mode's rate to the second's.
func measureCatchUps(b *testing.B, events int, readAll func(*testing.B) time.Duration, once func(*testing.B, *projection.RunnerOptions) (time.Duration, time.Duration, projection.Status)) {
	readAll(b)
	once(b, catchUpModes[len(catchUpModes)-1].opts)
	took := make([]time.Duration, len(catchUpModes))
	cpu := make([]time.Duration, len(catchUpModes))
	var raw time.Duration
	n := 0
	for b.Loop() {
		raw += readAll(b)
		for k := range catchUpModes {
			i := (n + k) % len(catchUpModes)
			d, used, st := once(b, catchUpModes[i].opts)
			if err := catchUpModes[i].check(st); err != nil {
				b.Fatalf("%s: %v", catchUpModes[i].name, err)
			}
			took[i], cpu[i] = took[i]+d, cpu[i]+used
		}
		n++
	}
	total := float64(n * events)
	for i, m := range catchUpModes {
		b.ReportMetric(total/took[i].Seconds(), m.name+"-events/s")
		b.ReportMetric(float64(cpu[i].Microseconds())/total, m.name+"-cpu-µs/event")
	}
	b.ReportMetric(total/raw.Seconds(), "raw-read-events/s")
	if len(catchUpModes) == 2 {
		b.ReportMetric(took[1].Seconds()/took[0].Seconds(), catchUpModes[0].name+"/"+catchUpModes[1].name)
	}
	b.ReportMetric(0, "ns/op")
}

const catchUpEvents = 1_000_000

var catchUpStore struct {
	once sync.Once
	s    annals.Store
	err  error
}

// catchUpLog returns a memstore holding catchUpEvents events (built once per process), in
// appends of 100 events over 1,000 streams of category acct.
func catchUpLog(b *testing.B) annals.Store {
	catchUpStore.once.Do(func() {
		s := memstore.New(nil)
		evs := make([]annals.Event, 100)
		for i := range catchUpEvents / 100 {
			for j := range evs {
				evs[j] = annals.Event{Type: "Deposited", Data: []byte(`{"amount":10}`)}
			}
			if _, err := s.Append(context.Background(), "acct-"+strconv.Itoa(i%1000), annals.Any, evs...); err != nil {
				catchUpStore.err = err
				return
			}
		}
		catchUpStore.s = s
	})
	if catchUpStore.err != nil {
		b.Fatal(catchUpStore.err)
	}
	return catchUpStore.s
}

// readAllOf reads the whole log of s, which must hold want events, and returns how long it
// took.
func readAllOf(b *testing.B, s annals.Store, want int) time.Duration {
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

// catchUp runs r until it has applied the log up to position last and returns how long that
// took (from the call of Run), the CPU time the process used meanwhile, and r's status at that
// moment.
func catchUp[Tx any](b *testing.B, r *projection.Runner[Tx], last uint64) (time.Duration, time.Duration, projection.Status) {
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
