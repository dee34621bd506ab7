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
	)
	cmd := &cobra.Command{
		Use:   "bench",
		Short: "Measure the store beside the disk's raw fsync rate and write bandwidth",
		Long: `bench measures the embedded store against the project's performance targets and, in
the same run and on the same disk, the baselines they are stated against: a 4 KiB
write + fdatasync loop (appending to a file, and over a pre-written file) and the sequential
write bandwidth. It prints one line per result: workload, figure, baseline, target, PASS or
MISS (--json prints the same as JSON).

It works in a new temporary directory, removed afterwards, inside --dir, or by default inside
the parent of the --data directory (for the default ./annals-data: the current directory), so
that the disk measured is the one the data lives on. It never touches the data directory
itself. The full run writes a store of --growth's larger size (10,000,000 events, about 3 GiB)
and takes a few minutes; --quick takes seconds and only shows that everything works.

Workloads (for --only): ` + strings.Join(bench.Workloads(), ", ") + `.
The baselines always run. The exit status is 0 whether targets are met or not.`,
		Example: `  annals bench
  annals bench --quick
  annals bench --only append-64w,read-stream --duration 10s --events 200000
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
			for _, w := range only {
				if w = strings.TrimSpace(w); w != "" {
					cfg.Only = append(cfg.Only, w)
				}
			}
			if err := cfg.Validate(); err != nil {
				return usageErrorf(cmd, "%s", strings.TrimPrefix(err.Error(), "bench: "))
			}

			if err := m.localOnly(cmd); err != nil {
				return err
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
			var bar benchBar
			if f, ok := m.Stderr.(*os.File); ok && term.IsTerminal(int(f.Fd())) {
				bar.w = m.Stderr
				cfg.Progress = bar.update
			}
			rep, err := bench.Run(cmd.Context(), tmp, open, cfg)
			bar.clear()
			if rep != nil && (err == nil || len(rep.Results) > 0) {
				// On an interrupted run, what was measured is still shown.
				if werr := writeBenchReport(m.Stdout, rep, asJSON); werr != nil && err == nil {
					err = werr
				}
			}
			if err != nil {
				return fmt.Errorf("bench: %w", err)
			}
			return nil
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
	return cmd
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
