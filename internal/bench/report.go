package bench

import (
	"fmt"
	"io"
	"math"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"
)

// WriteText writes the report for a person: a header (machine, directory, duration), one
// aligned line per result — workload, figure, baseline of the same run, target (and the
// ratio to the baseline where the target is one), PASS or MISS — then what each workload does
// and a count of the verdicts.
func (r *Report) WriteText(w io.Writer) error {
	var b strings.Builder
	m := r.Machine
	cpu := m.CPU
	if cpu != "" {
		cpu += ", "
	}
	fmt.Fprintf(&b, "annals bench, %s: %s/%s, %s%d CPUs (GOMAXPROCS %d), %s\n", r.Start.Format(time.DateTime+" MST"), m.OS, m.Arch, cpu, m.CPUs, m.GOMAXPROCS, m.Go)
	where := "directory " + r.Dir
	if r.Server != "" {
		where = "server " + r.Server
	}
	fmt.Fprintf(&b, "%s; each figure measured for %v; durable acks\n\n", where, r.Duration)
	counts := map[Verdict]int{}
	for _, res := range r.Results {
		counts[res.Verdict]++
	}
	if slices.ContainsFunc(r.Results, func(res Result) bool { return res.Path == "" }) {
		b.WriteString("200-byte JSON events\n")
		tw := tabwriter.NewWriter(&b, 0, 0, 2, ' ', 0)
		fmt.Fprintln(tw, "WORKLOAD\tFIGURE\tBASELINE (same run)\tTARGET\tRESULT")
		for _, res := range r.Results {
			switch {
			case res.Path != "":
			case res.Verdict == Failed:
				fmt.Fprintf(tw, "%s\t(error below)\t—\t%s\t%s\n", res.Workload, orDash(res.Target), res.Verdict)
			default:
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", res.Workload, res.figure(), res.baseline(), res.target(), orDash(string(res.Verdict)))
			}
		}
		if err := tw.Flush(); err != nil {
			return err
		}
		b.WriteString("\n")
	}
	if err := r.writeRealistic(&b); err != nil {
		return err
	}
	for _, res := range r.Results {
		if res.Verdict == Failed {
			name := res.Workload
			if res.Path != "" {
				name += " (" + res.Path + ")"
			}
			fmt.Fprintf(&b, "%s: error: %s\n", name, oneLine(res.Error))
		}
	}
	if counts[Failed] > 0 {
		b.WriteString("\n")
	}
	tw := tabwriter.NewWriter(&b, 0, 0, 2, ' ', 0)
	seen := map[string]bool{}
	for _, res := range r.Results {
		if !seen[res.Workload] && res.Description != "" {
			seen[res.Workload] = true
			fmt.Fprintf(tw, "  %s\t%s\n", res.Workload, res.Description)
		}
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	fmt.Fprintf(&b, "\n%d PASS, %d MISS", counts[Pass], counts[Miss])
	if counts[Failed] > 0 {
		fmt.Fprintf(&b, ", %d ERROR", counts[Failed])
	}
	fmt.Fprintf(&b, " (run took %v)\n", r.Elapsed.Round(time.Second))
	_, err := io.WriteString(w, b.String())
	return err
}

// writeRealistic writes the table of the realistic workloads' results, if any, with what
// their paths mean.
func (r *Report) writeRealistic(b *strings.Builder) error {
	if !slices.ContainsFunc(r.Results, func(res Result) bool { return res.Path != "" }) {
		return nil
	}
	if sh := r.Shape; sh != nil {
		fmt.Fprintf(b, "Realistic workloads: %d-byte JSON events, %d clients, %s streams", sh.EventSize, sh.Clients, group(int64(sh.Streams)))
		if r.Result(ZipfConditional) != nil {
			fmt.Fprintf(b, ", Zipf s=%g", sh.Zipf)
		}
		if r.Result(CatchUpWhileWriting) != nil {
			fmt.Fprintf(b, "; %d catch-up subscribers, %s events to catch up with", sh.Subscribers, group(sh.Prefill))
		}
		b.WriteString(".\n")
	}
	if r.Server != "" {
		fmt.Fprintf(b, "remote: against the server at %s, with a client (and a connection) per simulated client; no embedded\n"+
			"half in this run. CPU/EVENT is this process's only (the clients'), not the server's.\n", r.Server)
	} else {
		b.WriteString("embedded: the store in process; network: through a server in this process over loopback h2c, with a client\n" +
			"(and a connection) per simulated client, on a new store each. CPU/EVENT is the whole process's (getrusage): the\n" +
			"store's embedded; the clients', the server's and the store's through the network.\n")
	}
	// Against a remote server there is no embedded figure to compare with.
	ratioColumn := "\tVS EMBEDDED"
	if r.Server != "" {
		ratioColumn = ""
	}
	tw := tabwriter.NewWriter(b, 0, 0, 2, ' ', 0)
	fmt.Fprintf(tw, "WORKLOAD\tPATH\tTHROUGHPUT\tP50\tP95\tP99\tP99.9\tCPU/EVENT%s\tNOTES\n", ratioColumn)
	for _, res := range r.Results {
		switch {
		case res.Path == "":
		case res.Verdict == Failed:
			fmt.Fprintf(tw, "%s\t%s\t(error below)\n", res.Workload, res.Path)
		default:
			cpu, ratio := "—", ""
			if res.CPUPerEvent > 0 {
				cpu = fmtRate(res.CPUPerEvent) + " µs"
			}
			if r.Server == "" {
				ratio = "\t—"
				if res.Ratio > 0 {
					ratio = fmt.Sprintf("\t%.2f×", res.Ratio)
				}
			}
			fmt.Fprintf(tw, "%s\t%s\t%s %s\t%s\t%s\t%s\t%s\t%s%s\t%s\n", res.Workload, res.Path, fmtRate(res.Rate), res.Unit,
				fmtDuration(res.P50), fmtDuration(res.P95), fmtDuration(res.P99), fmtDuration(res.P999), cpu, ratio, res.notes())
		}
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	b.WriteString("\n")
	return nil
}

// notes returns the workload-specific figures of a realistic result.
func (res *Result) notes() string {
	var parts []string
	if res.Appends > 0 {
		parts = append(parts, fmt.Sprintf("conflicts %.2f%% of %s appends (%s, each retried)", 100*res.ConflictRate, group(res.Appends), group(res.Conflicts)))
	}
	if res.CaughtUp > 0 {
		parts = append(parts, "caught up after "+fmtDuration(res.CaughtUp))
	}
	if res.Note != "" {
		parts = append(parts, res.Note)
	}
	return orDash(strings.Join(parts, "; "))
}

func (res *Result) figure() string {
	var parts []string
	if res.Rate > 0 {
		parts = append(parts, fmtRate(res.Rate)+" "+res.Unit)
	}
	if res.P50 > 0 || (res.P99 > 0 && res.Workload != "growth-append") {
		parts = append(parts, "p50 "+fmtDuration(res.P50))
	}
	if res.P99 > 0 {
		parts = append(parts, "p99 "+fmtDuration(res.P99))
	}
	if res.RSS > 0 {
		parts = append(parts, "RSS "+fmtRate(float64(res.RSS)/(1<<20))+" MiB (anon "+fmtRate(float64(res.RSSAnon)/(1<<20))+" MiB)")
	}
	if res.Stored > 0 {
		parts = append(parts, "("+group(res.Stored)+" stored)")
	}
	return orDash(strings.Join(parts, "  "))
}

func (res *Result) baseline() string {
	f := res.Baseline
	if f == nil {
		return "—"
	}
	v := fmtRate(f.Value)
	if f.Unit == "ms" {
		v = fmtMs(f.Value)
	}
	return fmt.Sprintf("%s %s (%s)", v, f.Unit, f.Label)
}

func (res *Result) target() string {
	t := orDash(res.Target)
	if res.Ratio > 0 {
		t += fmt.Sprintf(": %.2f×", res.Ratio)
	}
	return t
}

func orDash(s string) string {
	if s == "" {
		return "—"
	}
	return s
}

func oneLine(s string) string { return strings.Join(strings.Fields(s), " ") }

// group formats n with thousands separators: 1234567 → "1,234,567".
func group(n int64) string {
	s := strconv.FormatInt(n, 10)
	neg := strings.HasPrefix(s, "-")
	s = strings.TrimPrefix(s, "-")
	var b strings.Builder
	for i, c := range s {
		if i > 0 && (len(s)-i)%3 == 0 {
			b.WriteByte(',')
		}
		b.WriteRune(c)
	}
	if neg {
		return "-" + b.String()
	}
	return b.String()
}

// fmtRate formats a rate: whole and grouped from 100 up, with decimals below.
func fmtRate(v float64) string {
	switch {
	case math.IsInf(v, 0) || math.IsNaN(v):
		return fmt.Sprint(v)
	case v >= 100:
		return group(int64(math.Round(v)))
	case v >= 10:
		return strconv.FormatFloat(v, 'f', 1, 64)
	}
	return strconv.FormatFloat(v, 'f', 2, 64)
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// fmtDuration formats a latency in milliseconds with two or three significant digits.
func fmtDuration(d time.Duration) string { return fmtMs(ms(d)) + " ms" }

func fmtMs(v float64) string {
	prec := 3
	switch {
	case v >= 100:
		prec = 0
	case v >= 10:
		prec = 1
	case v >= 1:
		prec = 2
	}
	s := strconv.FormatFloat(v, 'f', prec, 64)
	if strings.Contains(s, ".") {
		s = strings.TrimRight(strings.TrimRight(s, "0"), ".")
	}
	return s
}
