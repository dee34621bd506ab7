// Package bench measures an [annals.Store] against the performance targets of Annals, and
// measures in the same run, on the same disk, the baselines those targets are stated against:
// the raw rate of 4 KiB write + fdatasync and the sequential write bandwidth. Figures on shared
// machines drift; a figure beside a baseline of the same run does not mislead as much.
//
// [Run] runs the workloads named in [Workloads] and returns a [Report]; [Report.WriteText]
// prints one aligned line per result (workload, figure, baseline, target, PASS or MISS) and the
// report marshals to JSON. The command "annals bench" and the Go benchmarks of this package
// (go test -bench . ./internal/bench) are built on it.
//
// # What is measured
//
// Every event of the workloads below is a 200-byte JSON document appended with a durable
// acknowledgement (Append has returned); the realistic workloads have their own section. Latencies are per operation (one Append, one stream read, one delivery) and their
// percentiles are exact over the samples kept (nearest rank; see [Result]).
//
//   - fsync-append, fsync-overwrite: a loop of one 4 KiB write then fdatasync on a file in the
//     benchmark directory, appending to a growing file and overwriting a pre-written file. The
//     faster of the two is the reference ("the raw fdatasync rate") of the ratio targets, and it
//     is measured again right before each workload whose target is a ratio, because the rate of
//     a disk drifts within minutes.
//   - seq-write: 1 MiB writes up to [Config.SeqWriteBytes] (or the duration), then fdatasync.
//   - append-1w: 1 writer, 1 event per append; target ≥ 0.9 × the raw fdatasync rate.
//   - append-64w: 64 writers, 1 event per append; ≥ 150,000 events/s with p99 ≤ 5 ms.
//   - batch-1w: 1 writer, 100-event appends; ≥ 0.8 × 100 × the raw fdatasync rate.
//   - batch-8w: 8 writers, 100-event appends; ≥ 600,000 events/s.
//   - subscribe: one writer appends one event at a time and waits until a live subscriber to
//     $all (in the same process) has it; the latency from the append's return to the delivery
//     (0 when the subscriber had it first), p99 ≤ 1 ms.
//   - read-all: $all read from the start, warm (after one full untimed pass), in a store holding
//     [Config.Events] events; ≥ 5,000,000 events/s.
//   - read-stream: whole 1,000-event streams (up to 100 of them, in turn) read one after another
//     in that store, p50 ≤ 0.5 ms. Each stream's events are spread evenly over the log written
//     since the previous store size measured (the whole log, at the first): about one event in
//     every thousandth of it, so that a read cannot cost one sequential run of the log.
//   - catch-up: a projection runner catches up with that whole store into a projection.Memory
//     (a count per stream), from position 0, under the default lease (the Memory's, checked in
//     every update) and, in turn, without one (compare-and-set checkpoints only); the rate
//     under the lease ≥ 0.95 × the rate without.
//   - growth: the append-64w latency and the read-stream latency, and the process's resident
//     memory, in a store holding [Config.GrowthFrom] then [Config.GrowthTo] events: the
//     append p99 and the stream read p50 must stay within 1.5× of the first; memory is reported.
//
// The writers of the append workloads append to streams of their own (100 each, in turn) with
// the exact expected revision, as a command handler would; each workload runs for
// [Config.Warmup] unmeasured, then goes on measured. Growth appends go to random existing
// streams with annals.Any, so that the store has to find their state among many.
//
// # The realistic workloads
//
// The realistic workloads ([Realistic]) model what services do with an event store, with
// events of [Shape].EventSize bytes (512 by default), one store per simulated client:
//
//   - zipf-conditional: [Shape].Clients command handlers, each appending one event per command
//     to a stream chosen by Zipf(s = [Shape].Zipf) over [Shape].Streams streams (a few hot
//     streams take most commands), with the revision it last saw of that stream as the
//     expected revision. A stream it never saw it reads first; an append refused with
//     annals.ErrWrongExpectedVersion makes it read the events it missed and retry (at most
//     100 times). The latency is the command's, retries included; the result counts the
//     appends sent and the conflicts.
//   - mixed-70-30: the clients do 70% reads of a whole stream, chosen among the 1,024 appended
//     to last (the load of an aggregate), and 30% appends of one event, with annals.Any, to a
//     stream chosen uniformly.
//   - catchup-while-writing: [Shape].Prefill events are written first (untimed); then
//     [Shape].Subscribers subscribers of $all catch up from the first of them while the clients
//     append one event at a time; the rate is of events delivered, the latency the writers',
//     and the result says when the slowest subscriber had caught up. Every subscriber must
//     receive every event of the workload.
//
// Each reports its throughput, latency percentiles (p50, p95, p99, p99.9) and the CPU time of
// the process per event (getrusage; per event appended for zipf-conditional, appended or read
// for mixed-70-30, delivered for catchup-while-writing). [Run] measures each on the embedded
// store and through a server in the same process ([Serve]), on a new store each time;
// [RunRemote] measures them against a running server; [Measure] measures one against any
// [Endpoint].
//
// # Files
//
// [Run] creates its files and stores in subdirectories of the directory it is given and
// removes each when it is done with it; the caller owns the directory itself.
package bench

import (
	"context"
	"encoding/json"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"time"

	"github.com/annalsdb/annals"
)

// The workloads, by the names [Config.Only] and the command's --only flag take.
const (
	Append1W   = "append-1w"
	Append64W  = "append-64w"
	Batch1W    = "batch-1w"
	Batch8W    = "batch-8w"
	Subscribe  = "subscribe"
	ReadAll    = "read-all"
	ReadStream = "read-stream"
	CatchUp    = "catch-up"
	Growth     = "growth"

	// The realistic workloads (see realistic.go), each measured on the embedded store and
	// through a server in the same run.
	ZipfConditional     = "zipf-conditional"
	Mixed               = "mixed-70-30"
	CatchUpWhileWriting = "catchup-while-writing"
)

// The baselines, by the names their results carry. They are measured in every run.
const (
	FsyncAppend    = "fsync-append"
	FsyncOverwrite = "fsync-overwrite"
	SeqWrite       = "seq-write"
)

// Workloads returns the names of the workloads in the order [Run] runs them.
func Workloads() []string {
	return append([]string{Append1W, Append64W, Batch1W, Batch8W, Subscribe}, append(Realistic(),
		ReadAll, ReadStream, CatchUp, Growth)...)
}

// Realistic returns the names of the realistic workloads, the ones [Measure] and [RunRemote]
// run, in the order [Run] runs them.
func Realistic() []string { return []string{ZipfConditional, Mixed, CatchUpWhileWriting} }

// Opener opens (creating it if needed) a store in dir, an empty directory on the disk being
// measured. [Run] closes each store it opens.
type Opener func(dir string) (annals.Store, error)

// Config shapes a run. A nil *Config, and each zero field, means the default written beside it.
type Config struct {
	// Duration is how long each timed workload and each baseline is measured; default 3s.
	Duration time.Duration
	// Warmup is how long each write workload runs, unmeasured, before it is measured; default
	// 500ms, a negative value means none.
	Warmup time.Duration
	// Events is the number of events in the store that read-all, read-stream and catch-up read;
	// default 1,000,000, at least 2,000.
	Events int64
	// GrowthFrom and GrowthTo are the store sizes, in events, at which growth measures;
	// defaults 1,000,000 and 10,000,000. GrowthFrom is at least 2,000 and GrowthTo at least
	// GrowthFrom + 2,000.
	GrowthFrom, GrowthTo int64
	// SeqWriteBytes bounds the sequential write baseline; default 1 GiB.
	SeqWriteBytes int64
	// Only names the workloads to run (see [Workloads]); empty means all. The baselines run
	// whatever it says.
	Only []string
	// Shape shapes the realistic workloads.
	Shape
	// Ops, when > 0, ends each realistic workload after that many operations instead of after
	// Duration, with no warm-up (the Go benchmarks pass b.N): commands for zipf-conditional,
	// reads and appends for mixed-70-30, events appended for catchup-while-writing.
	Ops int64
	// Timer, when set (a *testing.B), is stopped while a realistic workload sets up (dials its
	// clients, writes its prefill) and started for its measured part only.
	Timer interface {
		StartTimer()
		StopTimer()
	}
	// Progress, when not nil, is called as the run goes, about ten times a second and at each
	// step's start and end. Calls never overlap; a slow callback slows the run's progress
	// reports, never its measurements.
	Progress func(Progress)
}

// Shape is the shape of the realistic workloads. Each zero field means the default written
// beside it.
type Shape struct {
	// Clients is the number of simulated clients, each with a store of its own (over the
	// network: a client.Client and its connection): the writers of zipf-conditional and
	// catchup-while-writing, the readers and writers of mixed-70-30; default 16, at most
	// [MaxClients].
	Clients int `json:"clients"`
	// Streams is the number of streams the appends choose from; default 100,000.
	Streams int `json:"streams"`
	// Zipf is the exponent s of zipf-conditional's choice of stream, P(k-th hottest) ∝ k^-s;
	// above 1, default 1.1.
	Zipf float64 `json:"zipf"`
	// EventSize is the size in bytes of each event's data, a JSON document; default 512, from
	// [MinEventSize] to [MaxEventSize].
	EventSize int `json:"event_size"`
	// Subscribers is the number of catch-up subscribers of catchup-while-writing; default 4,
	// at most [MaxClients].
	Subscribers int `json:"subscribers"`
	// Prefill is the number of events in the log, written before they start, that
	// catchup-while-writing's subscribers catch up with; default 200,000.
	Prefill int64 `json:"prefill"`
}

// Bounds of a [Shape].
const (
	MaxClients   = 1024
	MinEventSize = 128
	MaxEventSize = annals.DefaultMaxEventSize - 4096 // room for the type and metadata
)

// Quick returns a configuration for tests and smoke runs: every workload, each measured
// for 100ms, on stores of a few thousand events. Its figures say that the harness and the
// store work, not how fast the store is.
func Quick() *Config {
	return &Config{
		Duration:      100 * time.Millisecond,
		Warmup:        -1,
		Events:        5_000,
		GrowthFrom:    5_000,
		GrowthTo:      12_000,
		SeqWriteBytes: 8 << 20,
		Shape:         Shape{Prefill: 5_000},
	}
}

// Validate returns an error for a value out of range or a workload [Workloads] does not name.
// A nil *Config is valid.
func (c *Config) Validate() error {
	_, err := c.withDefaults()
	return err
}

// withDefaults returns a copy of c with the defaults filled in, or an error for a value out of
// range or an unknown workload.
func (c *Config) withDefaults() (Config, error) {
	var cfg Config
	if c != nil {
		cfg = *c
	}
	if cfg.Duration <= 0 {
		cfg.Duration = 3 * time.Second
	}
	switch {
	case cfg.Warmup == 0:
		cfg.Warmup = 500 * time.Millisecond
	case cfg.Warmup < 0:
		cfg.Warmup = 0
	}
	if cfg.Events == 0 {
		cfg.Events = 1_000_000
	}
	if cfg.GrowthFrom == 0 {
		cfg.GrowthFrom = 1_000_000
	}
	if cfg.GrowthTo == 0 {
		cfg.GrowthTo = 10_000_000
	}
	if cfg.SeqWriteBytes <= 0 {
		cfg.SeqWriteBytes = 1 << 30
	}
	if cfg.Events < minStoreEvents {
		return cfg, fmt.Errorf("bench: %d events: the read workloads need a store of at least %d", cfg.Events, minStoreEvents)
	}
	if cfg.GrowthFrom < minStoreEvents || cfg.GrowthTo < cfg.GrowthFrom+minStoreEvents {
		return cfg, fmt.Errorf("bench: growth from %d to %d events: want at least %d, then at least %d more", cfg.GrowthFrom, cfg.GrowthTo, minStoreEvents, minStoreEvents)
	}
	for _, w := range cfg.Only {
		if !slices.Contains(Workloads(), w) {
			return cfg, fmt.Errorf("bench: unknown workload %q (want one of %s)", w, strings.Join(Workloads(), ", "))
		}
	}
	return cfg, cfg.Shape.fill()
}

// fill sets the defaults of s's zero fields and returns an error for a value out of range.
func (s *Shape) fill() error {
	def := func(v *int, d int) {
		if *v == 0 {
			*v = d
		}
	}
	def(&s.Clients, 16)
	def(&s.Streams, 100_000)
	def(&s.EventSize, 512)
	def(&s.Subscribers, 4)
	if s.Zipf == 0 {
		s.Zipf = 1.1
	}
	if s.Prefill == 0 {
		s.Prefill = 200_000
	}
	switch {
	case s.Clients < 1 || s.Clients > MaxClients:
		return fmt.Errorf("bench: %d clients: want 1 to %d", s.Clients, MaxClients)
	case s.Subscribers < 1 || s.Subscribers > MaxClients:
		return fmt.Errorf("bench: %d subscribers: want 1 to %d", s.Subscribers, MaxClients)
	case s.Streams < 1:
		return fmt.Errorf("bench: %d streams: want at least 1", s.Streams)
	case !(s.Zipf > 1) || math.IsInf(s.Zipf, 0):
		return fmt.Errorf("bench: Zipf exponent %v: want a number above 1", s.Zipf)
	case s.EventSize < MinEventSize || s.EventSize > MaxEventSize:
		return fmt.Errorf("bench: event size %d: want %d to %d bytes", s.EventSize, MinEventSize, MaxEventSize)
	case s.Prefill < 0:
		return fmt.Errorf("bench: prefill of %d events: want 0 or more", s.Prefill)
	}
	return nil
}

// ValidateRemote is [Config.Validate] for [RunRemote]: Only may name the realistic workloads
// only.
func (c *Config) ValidateRemote() error {
	cfg, err := c.withDefaults()
	if err != nil {
		return err
	}
	for _, w := range cfg.Only {
		if !slices.Contains(Realistic(), w) {
			return fmt.Errorf("bench: workload %q measures the store in process; against a server, run %s", w, strings.Join(Realistic(), ", "))
		}
	}
	return nil
}

func (c *Config) runs(workload string) bool {
	return len(c.Only) == 0 || slices.Contains(c.Only, workload)
}

// Progress says how far a run is.
type Progress struct {
	// Step is the step running (from 1), of Steps planned; each workload, baseline and store
	// population is a step.
	Step, Steps int
	// Name names the step, e.g. "append-64w" or "populate 1,000,000".
	Name string
	// Done and Total say how far the step is, in Unit: "ms" for timed steps, "events" for
	// populating a store.
	Done, Total int64
	Unit        string
}

// Verdict is how a result compares with its target.
type Verdict string

const (
	// Pass: the figure meets the target.
	Pass Verdict = "PASS"
	// Miss: the figure does not meet the target.
	Miss Verdict = "MISS"
	// Failed: the workload stopped on an error (see [Result].Error).
	Failed Verdict = "ERROR"
	// NoTarget: a baseline, or a figure reported without a target.
	NoTarget Verdict = ""
)

// Result is the measurement of one workload or baseline. Zero fields do not apply to it.
type Result struct {
	// Workload names it: one of [Workloads], a baseline, or "growth-append", "growth-read",
	// "growth-rss" for the comparisons of the growth workload.
	Workload    string `json:"workload"`
	Description string `json:"description"`
	// Rate is the throughput: events/s for the store's workloads, ops/s for fsync-*, MiB/s for
	// seq-write, as Unit says.
	Rate float64 `json:"rate,omitempty"`
	Unit string  `json:"unit,omitempty"`
	// Ops is how many operations (appends, reads, deliveries, writes) were measured, and
	// Events how many events they carried, in Elapsed.
	Ops     int64         `json:"ops,omitempty"`
	Events  int64         `json:"events,omitempty"`
	Elapsed time.Duration `json:"elapsed_ns,omitempty"`
	// P50, P95, P99 and P999 (99.9th) are latency percentiles per operation, exact over the
	// samples kept (all of them unless a workload does more than 4 million operations). The
	// workloads that are not realistic report P50 and P99 only.
	P50  time.Duration `json:"p50_ns,omitempty"`
	P95  time.Duration `json:"p95_ns,omitempty"`
	P99  time.Duration `json:"p99_ns,omitempty"`
	P999 time.Duration `json:"p999_ns,omitempty"`
	// Path is where a realistic workload reached the store: "embedded" (in process),
	// "network" (through a server in this process, over loopback) or "remote" (the server of
	// [RunRemote]); "" for the other workloads.
	Path string `json:"path,omitempty"`
	// CPUPerEvent is the CPU time (user and system) of this process per event of Events, in µs, over
	// the measured time; 0 where it cannot be read. Embedded it is the store's (and the load's)
	// cost; through the in-process server, the clients', the server's and the store's; against
	// a remote server, the clients' only.
	CPUPerEvent float64 `json:"cpu_us_per_event,omitempty"`
	// Appends and Conflicts count the appends zipf-conditional sent and those refused with
	// annals.ErrWrongExpectedVersion (each then retried); ConflictRate is their ratio.
	Appends      int64   `json:"appends,omitempty"`
	Conflicts    int64   `json:"conflicts,omitempty"`
	ConflictRate float64 `json:"conflict_rate,omitempty"`
	// CaughtUp is how long the slowest subscriber of catchup-while-writing took to catch up:
	// to receive an event at or past the last one the writers had had acknowledged.
	CaughtUp time.Duration `json:"caught_up_ns,omitempty"`
	// Note says more, in words: the latencies of each kind of operation, the rate of writes.
	Note string `json:"note,omitempty"`
	// Stored is the number of events in the store when it was measured (positions used).
	Stored int64 `json:"stored_events,omitempty"`
	// RSS is the resident memory of the process, in bytes, when it was measured, and RSSAnon
	// the part of it that is anonymous memory (heap, stacks), as opposed to pages of files
	// mapped into memory, which the kernel may drop.
	RSS     int64 `json:"rss_bytes,omitempty"`
	RSSAnon int64 `json:"rss_anon_bytes,omitempty"`
	// Baseline is the figure of the same run the result is set beside.
	Baseline *Figure `json:"baseline,omitempty"`
	// Target says what the result must reach; Ratio is the measured figure over the baseline
	// where the target is a ratio.
	Target  string  `json:"target,omitempty"`
	Ratio   float64 `json:"ratio,omitempty"`
	Verdict Verdict `json:"verdict,omitempty"`
	Error   string  `json:"error,omitempty"`
}

// Figure is a baseline figure: Value in Unit, measured as Label says.
type Figure struct {
	Label string  `json:"label"`
	Value float64 `json:"value"`
	Unit  string  `json:"unit"`
}

// Report is the outcome of a run.
type Report struct {
	Start    time.Time     `json:"start"`
	Elapsed  time.Duration `json:"elapsed_ns"`
	Dir      string        `json:"dir"`
	Machine  Machine       `json:"machine"`
	Duration time.Duration `json:"duration_ns"`
	// Shape is the shape of the realistic workloads, when the report has any.
	Shape *Shape `json:"realistic,omitempty"`
	// Server is the URL of the server [RunRemote] measured; "" for [Run].
	Server  string   `json:"server,omitempty"`
	Results []Result `json:"results"`
}

// Machine describes where a report was measured.
type Machine struct {
	OS         string `json:"os"`
	Arch       string `json:"arch"`
	CPU        string `json:"cpu,omitempty"`
	CPUs       int    `json:"cpus"`
	GOMAXPROCS int    `json:"gomaxprocs"`
	Go         string `json:"go"`
}

// Result returns the result of the named workload or baseline, or nil.
func (r *Report) Result(workload string) *Result {
	for i := range r.Results {
		if r.Results[i].Workload == workload {
			return &r.Results[i]
		}
	}
	return nil
}

// JSON returns the report as indented JSON.
func (r *Report) JSON() ([]byte, error) { return json.MarshalIndent(r, "", "  ") }

// Run measures the baselines and the workloads cfg selects in dir, which must exist and should
// be on the disk to be measured, opening the stores with open. It returns the report, and an
// error when it could not go on: a bad configuration, a baseline or a store that failed to
// open, or ctx done (the report then holds the results so far). A workload that fails has a
// result with Verdict [Failed], and the run goes on. It removes what it created in dir.
func Run(ctx context.Context, dir string, open Opener, cfg *Config) (*Report, error) {
	c, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	if fi, err := os.Stat(dir); err != nil {
		return nil, fmt.Errorf("bench: %w", err)
	} else if !fi.IsDir() {
		return nil, fmt.Errorf("bench: %s is not a directory", dir)
	}
	abs, err := filepath.Abs(dir)
	if err != nil {
		abs = dir
	}
	r := &runner{cfg: c, dir: dir, open: open, report: &Report{Start: time.Now().UTC(), Dir: abs, Duration: c.Duration, Machine: machine()}}
	if slices.ContainsFunc(Realistic(), c.runs) {
		r.report.Shape = &c.Shape
	}
	defer r.closeStores()
	steps := r.plan()
	for i, s := range steps {
		if err := ctx.Err(); err != nil {
			return r.finish(), err
		}
		r.step, r.steps = i+1, len(steps)
		r.name = s.name
		if err := s.run(ctx); err != nil {
			if ctx.Err() != nil {
				err = ctx.Err()
			}
			return r.finish(), err
		}
	}
	return r.finish(), nil
}

func machine() Machine {
	return Machine{OS: kernel(), Arch: runtime.GOARCH, CPU: cpuModel(), CPUs: runtime.NumCPU(),
		GOMAXPROCS: runtime.GOMAXPROCS(0), Go: runtime.Version()}
}

func (r *runner) finish() *Report {
	r.report.Elapsed = time.Since(r.report.Start)
	return r.report
}
