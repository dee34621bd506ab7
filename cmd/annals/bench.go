package main

import (
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/annalsdb/annals"
	"github.com/annalsdb/annals/filestore"
	"github.com/annalsdb/annals/internal/bench"
	"github.com/schollz/progressbar/v3"
	"github.com/spf13/cobra"
	"golang.org/x/term"
)

func newBenchCmd(m *Main) *cobra.Command {
	var (
		dir      string
		duration time.Duration
		events   int64
		growth   string
		quick    bool
		asJSON   bool
		only     []string
		shape    bench.Shape
	)
	cmd := &cobra.Command{
		Use:   "bench",
		Short: "Measure the store beside the disk's raw fsync rate, in process and through a server",
		Long: `bench measures the embedded store against the project's performance targets and, in
the same run and on the same disk, the baselines they are stated against: a 4 KiB
write + fdatasync loop (appending to a file, and over a pre-written file) and the sequential
write bandwidth. It prints one line per result: workload, figure, baseline, target, PASS or
MISS (--json prints the same as JSON).

The realistic workloads run twice in the same run, each time on a new store: in process
(embedded) and through a server in this process over loopback (network), one client and
connection per simulated client; they print side by side with the ratio, with throughput,
p50/p95/p99/p99.9 latency and the process's CPU time per event. Their events are
--event-size bytes (512) of JSON:
  zipf-conditional       --clients command handlers append one event each to a stream chosen
                         by Zipf(--zipf) over --streams streams, with the revision last seen;
                         a conflict makes them read what they missed and retry (conflict rate
                         reported)
  mixed-70-30            70% reads of a recently written stream, 30% appends
  catchup-while-writing  --subscribers subscribers of $all catch up with --prefill events
                         while the --clients write (events delivered/s, time to catch up)

With --server URL (and --token, --tls-ca; or $ANNALS_SERVER) bench runs the realistic
workloads only, against that running server: no embedded half, no disk baselines, and the
CPU time is this process's (the clients'), not the server's. They write new streams there,
which stay.

Locally it works in a new temporary directory, removed afterwards, inside --dir, or by
default inside the parent of the --data directory (for the default ./annals-data: the current
directory), so that the disk measured is the one the data lives on. It never touches the
data directory itself. The full run writes a store of --growth's larger size (10,000,000
events, about 3 GiB) and takes a few minutes; --quick takes seconds and only shows that
everything works.

Workloads (for --only): ` + strings.Join(bench.Workloads(), ", ") + `.
The baselines always run, but with --server. The exit status is 0 whether targets are met or
not.`,
		Example: `  annals bench
  annals bench --quick
  annals bench --only append-64w,read-stream --duration 10s --events 200000
  annals bench --only zipf-conditional --clients 16 --streams 100000 --zipf 1.1
  annals bench --server http://localhost:2113 --token "$T" --duration 10s
  annals bench --dir /mnt/fast --json > bench.json`,
		Args: argsBetween(0, 0, "no arguments"),
		RunE: func(cmd *cobra.Command, args []string) error {
			cfg := &bench.Config{}
			if quick {
				cfg = bench.Quick()
			}
			flags := cmd.Flags()
			if flags.Changed("duration") {
				if duration <= 0 {
					return usageErrorf(cmd, "--duration %v: want a positive duration", duration)
				}
				cfg.Duration = duration
			}
			if flags.Changed("events") {
				cfg.Events = events
			}
			if flags.Changed("growth") {
				from, to, ok := strings.Cut(growth, ",")
				var err1, err2 error
				cfg.GrowthFrom, err1 = strconv.ParseInt(strings.TrimSpace(from), 10, 64)
				cfg.GrowthTo, err2 = strconv.ParseInt(strings.TrimSpace(to), 10, 64)
				if !ok || err1 != nil || err2 != nil {
					return usageErrorf(cmd, "--growth %q: want two store sizes, e.g. 1000000,10000000", growth)
				}
			}
			if err := shapeFlags(cmd, &cfg.Shape, shape); err != nil {
				return err
			}
			for _, w := range only {
				if w = strings.TrimSpace(w); w != "" {
					cfg.Only = append(cfg.Only, w)
				}
			}
			if m.remote.server != "" {
				return m.benchRemote(cmd, cfg, asJSON)
			}
			if err := cfg.Validate(); err != nil {
				return usageErrorf(cmd, "%s", strings.TrimPrefix(err.Error(), "bench: "))
			}
			if m.postgres.url != "" {
				return usageErrorf(cmd, "bench measures the embedded store; for PostgreSQL run go test -bench . ./pgstore (leave out --postgres, and unset ANNALS_POSTGRES)")
			}
			parent := dir
			if parent == "" {
				if m.dataDir == "" {
					return usageError{msg: "empty --data directory (pass --data DIR or --dir DIR)"}
				}
				parent = filepath.Dir(filepath.Clean(m.dataDir))
			}
			tmp, err := os.MkdirTemp(parent, "annals-bench-")
			if err != nil {
				return fmt.Errorf("bench directory: %w", err)
			}
			defer os.RemoveAll(tmp)

			open := m.Open
			if open == nil {
				open = func(dir string) (annals.Store, error) { return filestore.Open(dir, nil) }
			}
			bar := m.benchBar(cfg)
			rep, err := bench.Run(cmd.Context(), tmp, open, cfg)
			bar.clear()
			return finishBench(m.Stdout, rep, err, asJSON)
		},
	}
	f := cmd.Flags()
	f.StringVar(&dir, "dir", "", "directory on the disk to measure, in which a temporary directory is made (default: the parent of --data)")
	f.DurationVar(&duration, "duration", 3*time.Second, "how long each workload and baseline is measured")
	f.Int64Var(&events, "events", 1_000_000, "events in the store that read-all and read-stream read")
	f.StringVar(&growth, "growth", "1000000,10000000", "the two store sizes, in events, that growth compares")
	f.BoolVar(&quick, "quick", false, "a run of seconds on small stores that shows everything works (other flags still apply)")
	f.BoolVar(&asJSON, "json", false, "print the results as JSON")
	f.StringSliceVar(&only, "only", nil, "run only these workloads (comma-separated; the baselines always run)")
	f.IntVar(&shape.Clients, "clients", 16, "realistic workloads: simulated clients, each with a store (over the network: a client and connection) of its own")
	f.IntVar(&shape.Streams, "streams", 100_000, "realistic workloads: streams the appends choose from")
	f.Float64Var(&shape.Zipf, "zipf", 1.1, "zipf-conditional: exponent s of the Zipf choice of stream, above 1")
	f.IntVar(&shape.EventSize, "event-size", 512, fmt.Sprintf("realistic workloads: bytes of each event's data (%d to %d)", bench.MinEventSize, bench.MaxEventSize))
	f.IntVar(&shape.Subscribers, "subscribers", 4, "catchup-while-writing: subscribers of $all")
	f.Int64Var(&shape.Prefill, "prefill", 200_000, "catchup-while-writing: events written before the subscribers start, for them to catch up with")
	return cmd
}

// shapeFlags copies into dst the shape flags the command line set, refusing a value that is
// out of range (zero included, which the configuration would read as the default).
func shapeFlags(cmd *cobra.Command, dst *bench.Shape, set bench.Shape) error {
	changed := cmd.Flags().Changed
	if changed("clients") {
		dst.Clients = set.Clients
	}
	if changed("streams") {
		dst.Streams = set.Streams
	}
	if changed("zipf") {
		dst.Zipf = set.Zipf
	}
	if changed("event-size") {
		dst.EventSize = set.EventSize
	}
	if changed("subscribers") {
		dst.Subscribers = set.Subscribers
	}
	if changed("prefill") {
		dst.Prefill = set.Prefill
	}
	for _, name := range []string{"clients", "streams", "zipf", "event-size", "subscribers", "prefill"} {
		if changed(name) && cmd.Flags().Lookup(name).Value.String() == "0" {
			return usageErrorf(cmd, "--%s 0: want a positive value", name)
		}
	}
	return nil
}

// benchRemote runs the realistic workloads against the --server.
func (m *Main) benchRemote(cmd *cobra.Command, cfg *bench.Config, asJSON bool) error {
	for _, name := range []string{"dir", "events", "growth"} {
		if cmd.Flags().Changed(name) {
			return usageErrorf(cmd, "--%s: with --server, bench runs the realistic workloads against the server and measures no local store", name)
		}
	}
	if m.postgres.url != "" {
		return usageError{msg: "--server and --postgres both name the store: pass one of them (and check ANNALS_SERVER and ANNALS_POSTGRES)"}
	}
	if err := cfg.ValidateRemote(); err != nil {
		return usageErrorf(cmd, "%s", strings.TrimPrefix(err.Error(), "bench: "))
	}
	// The server must answer (and accept the token) before anything is measured.
	c, err := m.openRemote(cmd.Context())
	if err != nil {
		return err
	}
	c.Close()
	bar := m.benchBar(cfg)
	rep, err := bench.RunRemote(cmd.Context(), m.remote.server, m.openRemote, cfg)
	bar.clear()
	return finishBench(m.Stdout, rep, err, asJSON)
}

// benchBar returns the progress bar of a run, drawn on Stderr when it is a terminal, and sets
// it as cfg's progress callback.
func (m *Main) benchBar(cfg *bench.Config) *benchBar {
	bar := &benchBar{}
	if f, ok := m.Stderr.(*os.File); ok && term.IsTerminal(int(f.Fd())) {
		bar.w = m.Stderr
		cfg.Progress = bar.update
	}
	return bar
}

// finishBench prints the report of a run that ended with err, and returns err.
func finishBench(w io.Writer, rep *bench.Report, err error, asJSON bool) error {
	if rep != nil && (err == nil || len(rep.Results) > 0) {
		// On an interrupted run, what was measured is still shown.
		if werr := writeBenchReport(w, rep, asJSON); werr != nil && err == nil {
			err = werr
		}
	}
	if err != nil {
		return fmt.Errorf("bench: %w", err)
	}
	return nil
}

func writeBenchReport(w io.Writer, rep *bench.Report, asJSON bool) error {
	if !asJSON {
		return rep.WriteText(w)
	}
	b, err := rep.JSON()
	if err != nil {
		return err
	}
	_, err = w.Write(append(b, '\n'))
	return err
}

// benchBar draws a progress bar for each step of a bench run on a terminal. Its update
// method is the run's progress callback, which is never called concurrently.
type benchBar struct {
	w    io.Writer
	bar  *progressbar.ProgressBar
	step int
}

func (b *benchBar) update(p bench.Progress) {
	if b.bar == nil || p.Step != b.step {
		b.clear()
		b.step = p.Step
		b.bar = progressbar.NewOptions64(p.Total,
			progressbar.OptionSetWriter(b.w),
			progressbar.OptionSetDescription(fmt.Sprintf("bench [%d/%d] %s", p.Step, p.Steps, p.Name)),
			progressbar.OptionThrottle(100*time.Millisecond),
			progressbar.OptionSetSpinnerChangeInterval(0), // no goroutine of its own
			progressbar.OptionSetPredictTime(false),
			progressbar.OptionClearOnFinish(),
			progressbar.OptionSetWidth(40),
		)
	}
	b.bar.Set64(min(p.Done, p.Total-1)) // the bar is finished (and cleared) by clear
}

// clear removes the bar from the terminal.
func (b *benchBar) clear() {
	if b.bar != nil {
		b.bar.Finish()
		b.bar.Clear()
		b.bar = nil
	}
}
