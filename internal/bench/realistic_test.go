package bench

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"runtime"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/annalsdb/annals"
	"github.com/annalsdb/annals/memstore"
)

// memStores returns n handles of one new memstore, closed at the end of the test.
func memStores(t *testing.T, n int) (annals.Store, []annals.Store) {
	st := memstore.New(nil)
	t.Cleanup(func() { st.Close() })
	out := make([]annals.Store, n)
	for i := range out {
		out[i] = st
	}
	return st, out
}

func testShape() Shape {
	var s Shape
	if err := s.fill(); err != nil {
		panic(err)
	}
	return s
}

// The Zipf choice skews: the hottest stream takes far more than a uniform share, and most
// commands go to a small set of streams.
func TestZipfSkews(t *testing.T) {
	seed := uint64(time.Now().UnixNano())
	t.Logf("seed %d", seed)
	shape := testShape()
	st, stores := memStores(t, 4)
	ws := newZipfWriters(stores, shape, "z", newEvents(shape.EventSize), seed)
	const commands = 4000
	l, err := zipfLoad(context.Background(), ws, limit{ops: commands})
	if err != nil {
		t.Fatal(err)
	}
	if l.ops != commands || l.events != commands {
		t.Fatalf("%d commands, %d events; want %d of each", l.ops, l.events, commands)
	}
	counts := map[string]int{}
	for ev, err := range st.ReadAll(context.Background(), nil) {
		if err != nil {
			t.Fatal(err)
		}
		counts[ev.Stream]++
	}
	hottest := counts[streamName("z", 0)]
	uniform := float64(commands) / float64(shape.Streams)
	// Zipf(1.1) over 100,000 streams gives the first about 13% of the commands.
	if float64(hottest) < 1000*uniform || hottest < commands/20 {
		t.Errorf("hottest stream got %d of %d commands; uniform would give %.2f", hottest, commands, uniform)
	}
	if len(counts) > commands/2 {
		t.Errorf("%d distinct streams for %d commands: not skewed", len(counts), commands)
	}
}

// Conditional appends on a few hot streams conflict, every conflict is retried until the
// command succeeds, and the counts add up: every command wrote exactly one event, appends =
// commands + conflicts, and the streams' revisions are contiguous.
func TestZipfConflictsRetried(t *testing.T) {
	seed := uint64(time.Now().UnixNano())
	t.Logf("seed %d", seed)
	shape := testShape()
	shape.Streams = 3 // contention on every stream
	var appends, refused atomic.Int64
	st, _ := memStores(t, 0)
	counting := &countingStore{Store: st, appends: &appends, refused: &refused}
	stores := make([]annals.Store, 8)
	for i := range stores {
		stores[i] = counting
	}
	ws := newZipfWriters(stores, shape, "c", newEvents(shape.EventSize), seed)
	const commands = 2000
	l, err := zipfLoad(context.Background(), ws, limit{ops: commands})
	if err != nil {
		t.Fatal(err)
	}
	if l.conflicts == 0 {
		t.Fatalf("no conflicts among %d commands of 8 writers on 3 streams", commands)
	}
	if l.appends != appends.Load() || l.conflicts != refused.Load() || l.appends != commands+l.conflicts {
		t.Errorf("counted %d appends and %d conflicts; the store saw %d and %d; want appends = %d commands + conflicts",
			l.appends, l.conflicts, appends.Load(), refused.Load(), commands)
	}
	total := 0
	for k := range shape.Streams {
		rev := -1
		for ev, err := range st.ReadStream(context.Background(), streamName("c", uint64(k)), nil) {
			if err != nil {
				t.Fatal(err)
			}
			if int(ev.Revision) != rev+1 {
				t.Fatalf("stream %d: revision %d after %d", k, ev.Revision, rev)
			}
			rev = int(ev.Revision)
			total++
		}
	}
	if total != commands {
		t.Errorf("%d events written, want one per command: %d", total, commands)
	}
	res := realisticResult(ZipfConditional, PathEmbedded, l)
	if res.ConflictRate <= 0 || res.ConflictRate >= 1 {
		t.Errorf("conflict rate %v", res.ConflictRate)
	}
}

// countingStore counts the appends it is sent and those refused as conflicts. Before each
// append it lets the other goroutines run, so that the writers interleave even on one CPU.
type countingStore struct {
	annals.Store
	appends, refused *atomic.Int64
}

func (c *countingStore) Append(ctx context.Context, stream string, expected annals.ExpectedRevision, events ...annals.Event) (annals.AppendResult, error) {
	runtime.Gosched()
	c.appends.Add(1)
	res, err := c.Store.Append(ctx, stream, expected, events...)
	if errors.Is(err, annals.ErrWrongExpectedVersion) {
		c.refused.Add(1)
	}
	return res, err
}

// mixed-70-30 reads about 70% of the time, and its reads find what was written.
func TestMixedRatio(t *testing.T) {
	seed := uint64(time.Now().UnixNano())
	t.Logf("seed %d", seed)
	shape := testShape()
	_, stores := memStores(t, 4)
	cs := newMixedClients(stores, shape, "m", newEvents(shape.EventSize), seed)
	const ops = 5000
	l, err := mixedLoad(context.Background(), cs, limit{ops: ops})
	if err != nil {
		t.Fatal(err)
	}
	reads, appends := l.reads, l.ops-l.reads
	if l.ops != ops {
		t.Fatalf("%d ops, want %d", l.ops, ops)
	}
	// 5,000 draws with p = 0.7: the standard deviation of the share is 0.65%.
	if share := float64(reads) / ops; share < 0.66 || share > 0.74 {
		t.Errorf("read share %.3f, want 0.70 ± 0.04", share)
	}
	if readEvents := l.events - appends; readEvents < reads {
		t.Errorf("%d reads returned %d events: a read found an empty stream", reads, readEvents)
	}
	if !strings.Contains(l.note, "reads (") {
		t.Errorf("note %q lacks the reads", l.note)
	}
}

// The catch-up subscribers each receive every event, prefill and writers', and catch up.
func TestCatchUpWhileWriting(t *testing.T) {
	shape := testShape()
	shape.Prefill = 3000
	shape.Subscribers = 3
	st, stores := memStores(t, 4+shape.Subscribers)
	// Something else in the log before the workload, which the subscribers skip.
	if _, err := st.Append(context.Background(), "other", annals.Any, annals.Event{Type: "X"}); err != nil {
		t.Fatal(err)
	}
	sp := catchUpSpec{writers: stores[:4], subs: stores[4:], shape: shape, prefix: "cu", ev: newEvents(shape.EventSize)}
	head, err := headPosition(context.Background(), st)
	if err != nil {
		t.Fatal(err)
	}
	if err := prefill(context.Background(), sp); err != nil {
		t.Fatal(err)
	}
	const written = 500
	l, err := catchUpLoad(context.Background(), sp, head, limit{ops: written})
	if err != nil {
		t.Fatal(err)
	}
	if want := int64(shape.Subscribers) * (shape.Prefill + written); l.ops != want || l.events != want {
		t.Errorf("delivered %d events (%d counted), want %d", l.ops, l.events, want)
	}
	if l.caughtUp <= 0 || l.caughtUp > l.elapsed {
		t.Errorf("caught up after %v of %v", l.caughtUp, l.elapsed)
	}
	if len(l.lat) != written {
		t.Errorf("%d write latencies, want %d", len(l.lat), written)
	}
}

// A Zipf writer that finds a stream written by another catches up with what it missed.
func TestLoadRevision(t *testing.T) {
	st := memstore.New(nil)
	defer st.Close()
	ctx := context.Background()
	if r, err := loadRevision(ctx, st, "s-1", annals.NoStream); err != nil || r != annals.NoStream {
		t.Errorf("missing stream: %v, %v; want no-stream", r, err)
	}
	for range 3 {
		if _, err := st.Append(ctx, "s-1", annals.Any, annals.Event{Type: "X"}); err != nil {
			t.Fatal(err)
		}
	}
	for _, tt := range []struct{ known, want annals.ExpectedRevision }{
		{annals.NoStream, annals.Exact(2)},
		{annals.Exact(0), annals.Exact(2)},
		{annals.Exact(2), annals.Exact(2)},
	} {
		if r, err := loadRevision(ctx, st, "s-1", tt.known); err != nil || r != tt.want {
			t.Errorf("loadRevision(known %s) = %s, %v; want %s", tt.known, r, err, tt.want)
		}
	}
}

// Each realistic workload runs on the embedded store and through a server in the same run,
// the network result beside the embedded one, with every figure filled in.
func TestRealisticRun(t *testing.T) {
	cfg := Quick()
	cfg.Only = Realistic()
	cfg.Clients = 4
	cfg.Streams = 1000
	cfg.Prefill = 2000
	rep, err := Run(context.Background(), t.TempDir(), openMem, cfg)
	if err != nil {
		t.Fatal(err)
	}
	for _, w := range Realistic() {
		var paths []string
		for _, res := range rep.Results {
			if res.Workload != w {
				continue
			}
			paths = append(paths, res.Path)
			if res.Error != "" {
				t.Fatalf("%s (%s): %s", w, res.Path, res.Error)
			}
			if res.Rate <= 0 || res.P50 <= 0 || res.P95 < res.P50 || res.P99 < res.P95 || res.P999 < res.P99 || res.CPUPerEvent <= 0 {
				t.Errorf("%s (%s): figures missing: %+v", w, res.Path, res)
			}
			if res.Path == PathNetwork && (res.Baseline == nil || res.Ratio <= 0) {
				t.Errorf("%s (network): no embedded baseline: %+v", w, res)
			}
			if w == ZipfConditional && res.Appends < res.Ops {
				t.Errorf("%s (%s): %d appends for %d commands", w, res.Path, res.Appends, res.Ops)
			}
			if w == CatchUpWhileWriting && res.CaughtUp <= 0 {
				t.Errorf("%s (%s): no catch-up time", w, res.Path)
			}
		}
		if strings.Join(paths, ",") != "embedded,network" {
			t.Errorf("%s: paths %v, want embedded then network", w, paths)
		}
	}
	var buf bytes.Buffer
	if err := rep.WriteText(&buf); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"P99.9", "CPU/EVENT", "VS EMBEDDED", "conflicts ", "caught up after"} {
		if !strings.Contains(buf.String(), want) {
			t.Errorf("text report lacks %q:\n%s", want, buf.String())
		}
	}
	t.Logf("\n%s", buf.String())
	js, err := rep.JSON()
	if err != nil {
		t.Fatal(err)
	}
	var back Report
	if err := json.Unmarshal(js, &back); err != nil || back.Shape == nil || back.Shape.EventSize != 512 {
		t.Errorf("JSON round trip: %v, shape %+v", err, back.Shape)
	}
}

// RunRemote runs the network workloads only, against the endpoint it is given.
func TestRunRemote(t *testing.T) {
	st := memstore.New(nil)
	defer st.Close()
	srv, err := Serve(st)
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	ep := srv.Endpoint()
	cfg := Quick()
	cfg.Only = []string{Mixed}
	cfg.Clients = 2
	rep, err := RunRemote(context.Background(), "http://test", ep.Dial, cfg)
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Results) != 1 || rep.Results[0].Path != PathRemote || rep.Results[0].Rate <= 0 || rep.Results[0].Error != "" {
		t.Fatalf("results %+v, want one remote mixed-70-30", rep.Results)
	}
	var buf bytes.Buffer
	rep.WriteText(&buf)
	if !strings.Contains(buf.String(), "not the server's") || strings.Contains(buf.String(), "BASELINE") {
		t.Errorf("remote report:\n%s", buf.String())
	}
	cfg.Only = []string{Append64W}
	if _, err := RunRemote(context.Background(), "http://test", ep.Dial, cfg); err == nil || !strings.Contains(err.Error(), "in process") {
		t.Errorf("RunRemote of append-64w: %v, want an error", err)
	}
}

func TestShapeValidate(t *testing.T) {
	for _, s := range []Shape{
		{Clients: -1}, {Clients: MaxClients + 1}, {Subscribers: -2}, {Streams: -5},
		{Zipf: 1}, {Zipf: 0.5}, {EventSize: 10}, {EventSize: MaxEventSize + 1}, {Prefill: -1},
	} {
		if err := (&Config{Shape: s}).Validate(); err == nil {
			t.Errorf("shape %+v: no error", s)
		}
	}
	if err := (&Config{Shape: Shape{EventSize: MinEventSize, Zipf: 2, Clients: 1}}).Validate(); err != nil {
		t.Errorf("valid shape: %v", err)
	}
	for _, size := range []int{MinEventSize, 512} {
		for i, p := range newEvents(size) {
			if len(p) != size || !json.Valid(p) {
				t.Fatalf("payload %d of size %d: %d bytes, valid JSON %v", i, size, len(p), json.Valid(p))
			}
		}
	}
}
