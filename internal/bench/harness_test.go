package bench

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/annalsdb/annals"
	"github.com/annalsdb/annals/memstore"
)

func TestPercentile(t *testing.T) {
	ms := func(v ...int) []time.Duration {
		out := make([]time.Duration, len(v))
		for i, x := range v {
			out[i] = time.Duration(x) * time.Millisecond
		}
		return out
	}
	hundred := make([]int, 100)
	for i := range hundred {
		hundred[i] = i + 1
	}
	thousand := make([]int, 1000)
	for i := range thousand {
		thousand[i] = i + 1
	}
	tests := []struct {
		samples []time.Duration
		p       float64
		want    time.Duration
	}{
		{nil, 50, 0},
		{ms(7), 50, 7 * time.Millisecond},
		{ms(7), 99, 7 * time.Millisecond},
		{ms(1, 2, 3), 50, 2 * time.Millisecond},
		{ms(1, 2, 3, 4), 50, 2 * time.Millisecond},
		{ms(1, 2, 3, 4), 51, 3 * time.Millisecond},
		{ms(1, 2, 3, 4), 100, 4 * time.Millisecond},
		{ms(hundred...), 50, 50 * time.Millisecond},
		{ms(hundred...), 99, 99 * time.Millisecond},
		{ms(hundred...), 99.5, 100 * time.Millisecond},
		{ms(thousand...), 99, 990 * time.Millisecond},
		{ms(thousand...), 0.01, 1 * time.Millisecond},
	}
	for _, tt := range tests {
		if got := percentile(tt.samples, tt.p); got != tt.want {
			t.Errorf("percentile(%d samples, %v) = %v, want %v", len(tt.samples), tt.p, got, tt.want)
		}
	}
}

func TestSamples(t *testing.T) {
	// Unsorted input from several collectors comes out merged and sorted.
	a, b := newSamples(10, 1), newSamples(10, 2)
	for _, d := range []time.Duration{5, 1, 9} {
		a.add(d)
	}
	for _, d := range []time.Duration{3, 7} {
		b.add(d)
	}
	got := sortedSamples(a, b)
	want := []time.Duration{1, 3, 5, 7, 9}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("sortedSamples = %v, want %v", got, want)
	}
	if p := percentile(got, 50); p != 5 {
		t.Errorf("p50 = %v, want 5", p)
	}

	// Past its capacity a collector keeps a uniform sample: bounded, and its median stays
	// near the true one (1..100,000 → 50,000).
	s := newSamples(1000, 3)
	for i := 1; i <= 100_000; i++ {
		s.add(time.Duration(i))
	}
	if len(s.d) != 1000 {
		t.Fatalf("kept %d samples, want 1000", len(s.d))
	}
	if p := percentile(sortedSamples(s), 50); p < 45_000 || p > 55_000 {
		t.Errorf("sampled p50 = %v, want about 50,000", int64(p))
	}
}

func TestPayloads(t *testing.T) {
	seen := map[string]bool{}
	for i, p := range payloads() {
		if len(p) != payloadSize {
			t.Fatalf("payload %d is %d bytes, want %d", i, len(p), payloadSize)
		}
		if !json.Valid(p) {
			t.Fatalf("payload %d is not JSON: %s", i, p)
		}
		seen[string(p)] = true
	}
	if len(seen) != len(payloads()) {
		t.Errorf("%d distinct payloads of %d", len(seen), len(payloads()))
	}
}

func TestGroup(t *testing.T) {
	for n, want := range map[int64]string{0: "0", 999: "999", 1000: "1,000", 1234567: "1,234,567", -1500: "-1,500"} {
		if got := group(n); got != want {
			t.Errorf("group(%d) = %q, want %q", n, got, want)
		}
	}
}

func openMem(string) (annals.Store, error) { return memstore.New(nil), nil }

func TestConfig(t *testing.T) {
	for _, c := range []*Config{
		{Only: []string{"append-2w"}},
		{Events: 10},
		{GrowthFrom: 5000, GrowthTo: 6000},
	} {
		if _, err := Run(context.Background(), t.TempDir(), openMem, c); err == nil {
			t.Errorf("Run with %+v: no error", *c)
		}
	}
	c, err := (*Config)(nil).withDefaults()
	if err != nil {
		t.Fatal(err)
	}
	if c.Duration != 3*time.Second || c.Warmup != 500*time.Millisecond || c.Events != 1_000_000 ||
		c.GrowthFrom != 1_000_000 || c.GrowthTo != 10_000_000 || c.SeqWriteBytes != 1<<30 {
		t.Errorf("defaults = %+v", c)
	}
}

// TestQuickRun runs every workload, briefly, against memstore and checks that each result is
// there with figures.
func TestQuickRun(t *testing.T) {
	cfg := Quick()
	cfg.Warmup = 20 * time.Millisecond // the measured loads go on from their warm-up
	var mu sync.Mutex
	var progress []Progress
	calls := 0
	cfg.Progress = func(p Progress) {
		mu.Lock()
		defer mu.Unlock()
		if calls > 0 && p.Step < progress[len(progress)-1].Step {
			t.Errorf("progress went back from step %d to %d", progress[len(progress)-1].Step, p.Step)
		}
		calls++
		progress = append(progress, p)
	}
	rep, err := Run(context.Background(), t.TempDir(), openMem, cfg)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{FsyncAppend, FsyncOverwrite, SeqWrite, Append1W, Append64W, Batch1W, Batch8W, Subscribe,
		ZipfConditional, ZipfConditional, Mixed, Mixed, CatchUpWhileWriting, CatchUpWhileWriting,
		ReadAll, ReadStream, CatchUp, "growth-append", "growth-read", "growth-rss"}
	var got []string
	for _, r := range rep.Results {
		got = append(got, r.Workload)
		if r.Error != "" {
			t.Errorf("%s: %s", r.Workload, r.Error)
		}
		if r.Elapsed <= 0 && r.Workload != "growth-rss" {
			t.Errorf("%s: elapsed %v", r.Workload, r.Elapsed)
		}
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("results %v, want %v", got, want)
	}
	check := func(name string, fields ...string) {
		r := rep.Result(name)
		for _, f := range fields {
			var zero bool
			switch f {
			case "rate":
				zero = r.Rate <= 0
			case "p50":
				zero = r.P50 <= 0
			case "p99":
				zero = r.P99 <= 0 || r.P99 < r.P50
			case "baseline":
				zero = r.Baseline == nil || r.Baseline.Value <= 0
			case "ratio":
				zero = r.Ratio <= 0
			case "stored":
				zero = r.Stored <= 0
			case "verdict":
				zero = r.Verdict != Pass && r.Verdict != Miss
			}
			if zero {
				t.Errorf("%s: no %s in %+v", name, f, *r)
			}
		}
	}
	check(FsyncAppend, "rate", "p50", "p99")
	check(FsyncOverwrite, "rate", "p50", "p99")
	check(SeqWrite, "rate")
	check(Append1W, "rate", "p50", "p99", "baseline", "ratio", "verdict")
	check(Append64W, "rate", "p50", "p99", "baseline", "verdict")
	check(Batch1W, "rate", "p50", "p99", "baseline", "ratio", "verdict")
	check(Batch8W, "rate", "p50", "p99", "baseline", "verdict")
	check(Subscribe, "p99", "verdict")
	check(ReadAll, "rate", "stored", "baseline", "verdict")
	check(ReadStream, "rate", "p50", "p99", "stored", "verdict")
	check(CatchUp, "rate", "baseline", "ratio", "stored", "verdict")
	check("growth-append", "p99", "baseline", "ratio", "stored", "verdict")
	check("growth-read", "p50", "baseline", "ratio", "stored", "verdict")
	if r := rep.Result("growth-rss"); runtime.GOOS == "linux" && (r.RSS <= 0 || r.RSSAnon <= 0 || r.RSSAnon > r.RSS) {
		t.Errorf("growth-rss: no RSS")
	}
	if s := rep.Result(ReadAll).Stored; s < cfg.Events {
		t.Errorf("read-all measured a store of %d events, want at least %d", s, cfg.Events)
	}
	if s := rep.Result("growth-read").Stored; s < cfg.GrowthTo {
		t.Errorf("growth measured a store of %d events, want at least %d", s, cfg.GrowthTo)
	}

	// Progress covered every step, ending each at its total.
	last := progress[len(progress)-1]
	if last.Step != last.Steps || last.Done != last.Total {
		t.Errorf("last progress %+v, want the last step done", last)
	}

	var buf bytes.Buffer
	if err := rep.WriteText(&buf); err != nil {
		t.Fatal(err)
	}
	text := buf.String()
	for _, w := range want {
		if !strings.Contains(text, "\n"+w+" ") {
			t.Errorf("text report has no line for %s:\n%s", w, text)
		}
	}
	t.Logf("\n%s", text)

	js, err := rep.JSON()
	if err != nil {
		t.Fatal(err)
	}
	var back Report
	if err := json.Unmarshal(js, &back); err != nil {
		t.Fatal(err)
	}
	if len(back.Results) != len(rep.Results) || back.Results[3].Rate != rep.Results[3].Rate {
		t.Errorf("JSON round trip lost results")
	}
}

func TestOnly(t *testing.T) {
	cfg := Quick()
	cfg.Only = []string{ReadStream}
	rep, err := Run(context.Background(), t.TempDir(), openMem, cfg)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, r := range rep.Results {
		got = append(got, r.Workload)
	}
	if want := []string{FsyncAppend, FsyncOverwrite, SeqWrite, ReadStream}; fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("results %v, want %v", got, want)
	}
}

// A cancelled run stops soon and says why.
func TestCancel(t *testing.T) {
	cfg := Quick()
	cfg.Duration = time.Hour
	ctx, cancel := context.WithCancel(context.Background())
	cfg.Progress = func(p Progress) {
		if p.Done > 0 {
			cancel()
		}
	}
	start := time.Now()
	_, err := Run(ctx, t.TempDir(), openMem, cfg)
	if err != context.Canceled {
		t.Errorf("Run = %v, want context.Canceled", err)
	}
	if d := time.Since(start); d > time.Minute {
		t.Errorf("Run took %v, want it to stop soon after the cancel", d)
	}
}

// failingStore fails every append after the first few.
type failingStore struct {
	annals.Store
	mu sync.Mutex
	n  int
}

func (f *failingStore) Append(ctx context.Context, stream string, expected annals.ExpectedRevision, events ...annals.Event) (annals.AppendResult, error) {
	f.mu.Lock()
	f.n++
	n := f.n
	f.mu.Unlock()
	if n > 5 {
		return annals.AppendResult{}, fmt.Errorf("disk on fire")
	}
	return f.Store.Append(ctx, stream, expected, events...)
}

// A workload that fails is reported as failed and the run goes on.
func TestFailure(t *testing.T) {
	cfg := Quick()
	cfg.Only = []string{Append64W, Batch1W}
	open := func(string) (annals.Store, error) { return &failingStore{Store: memstore.New(nil)}, nil }
	rep, err := Run(context.Background(), t.TempDir(), open, cfg)
	if err != nil {
		t.Fatal(err)
	}
	for _, w := range cfg.Only {
		r := rep.Result(w)
		if r == nil || r.Verdict != Failed || !strings.Contains(r.Error, "disk on fire") {
			t.Errorf("%s: %+v, want a failure", w, r)
		}
	}
	var buf bytes.Buffer
	rep.WriteText(&buf)
	if !strings.Contains(buf.String(), "2 ERROR") {
		t.Errorf("report does not count the errors:\n%s", buf.String())
	}
}
