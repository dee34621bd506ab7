package main

import (
	"context"
	"strings"
	"testing"

	"github.com/annalsdb/annals"
	"github.com/annalsdb/annals/internal/bench"
	"github.com/annalsdb/annals/memstore"
)

// bench --server runs the realistic workloads against a running server, and says that its
// figures have no embedded half and count only the clients' CPU time.
func TestBenchServer(t *testing.T) {
	st := memstore.New(nil)
	defer st.Close()
	srv, err := bench.Serve(st)
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	e := newEnv(t)
	out := e.ok("", "--server", srv.URL, "bench", "--quick", "--only", "zipf-conditional,mixed-70-30", "--clients", "2", "--streams", "50")
	for _, want := range []string{"server " + srv.URL, "not the server's", "conflicts "} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	for _, w := range []string{bench.ZipfConditional, bench.Mixed} {
		if !hasRow(out, w, "remote") {
			t.Errorf("output lacks the row of %s, remote:\n%s", w, out)
		}
	}
	if strings.Contains(out, "fsync") || strings.Contains(out, "  embedded  ") || strings.Contains(out, "EMBEDDED") {
		t.Errorf("a remote run measured local baselines or an embedded half:\n%s", out)
	}
	n := 0
	for ev, err := range st.ReadAll(context.Background(), nil) {
		if err != nil {
			t.Fatal(err)
		}
		if !strings.HasPrefix(ev.Stream, "bench_") {
			t.Fatalf("the workloads wrote to %q", ev.Stream)
		}
		n++
	}
	if n == 0 {
		t.Error("the workloads wrote nothing to the server")
	}
}

// bench runs each realistic workload embedded and through a server, side by side.
func TestBenchRealistic(t *testing.T) {
	e := newEnv(t)
	e.open = func(string) (annals.Store, error) { return memstore.New(nil), nil }
	out := e.ok("", "bench", "--quick", "--only", "catchup-while-writing", "--clients", "2", "--subscribers", "2", "--prefill", "1000", "--event-size", "256")
	for _, want := range []string{"256-byte JSON events", "caught up after", "fsync-append"} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	for _, path := range []string{"embedded", "network"} {
		if !hasRow(out, bench.CatchUpWhileWriting, path) {
			t.Errorf("output lacks the row of %s, %s:\n%s", bench.CatchUpWhileWriting, path, out)
		}
	}
}

// hasRow reports whether out has a line of the realistic workloads' table for workload on
// path.
func hasRow(out, workload, path string) bool {
	for line := range strings.Lines(out) {
		if f := strings.Fields(line); len(f) > 2 && f[0] == workload && f[1] == path {
			return true
		}
	}
	return false
}

// Bad flags are one line and exit status 2; an unreachable server is a failure (1).
func TestBenchFlags(t *testing.T) {
	e := newEnv(t)
	const url = "http://127.0.0.1:1"
	for _, tt := range []struct {
		args []string
		code int
		want string
	}{
		{[]string{"bench", "--only", "zipf"}, 2, `unknown workload "zipf"`},
		{[]string{"bench", "--event-size", "10"}, 2, "event size 10: want 128 to"},
		{[]string{"bench", "--zipf", "1"}, 2, "Zipf exponent 1: want a number above 1"},
		{[]string{"bench", "--clients", "0"}, 2, "--clients 0: want a positive value"},
		{[]string{"bench", "--clients", "5000"}, 2, "5000 clients: want 1 to 1024"},
		{[]string{"bench", "--subscribers", "-1"}, 2, "-1 subscribers"},
		{[]string{"bench", "--streams", "x"}, 2, `invalid argument "x" for "--streams"`},
		{[]string{"--server", url, "bench", "--dir", "/tmp"}, 2, "--dir: with --server"},
		{[]string{"--server", url, "bench", "--only", "append-64w"}, 2, `workload "append-64w" measures the store in process`},
		{[]string{"--server", url, "bench", "--quick"}, 1, "127.0.0.1:1"},
	} {
		r := e.run(context.Background(), "", tt.args...)
		if r.code != tt.code || !strings.Contains(r.line, tt.want) || strings.Contains(r.line, "\n") {
			t.Errorf("annals %s: exit %d, %q; want exit %d with %q", strings.Join(tt.args, " "), r.code, r.line, tt.code, tt.want)
		}
	}
}
