package bench

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/annalsdb/annals"
	"github.com/annalsdb/annals/client"
	"github.com/annalsdb/annals/server"
)

// The paths of [Result].Path.
const (
	PathEmbedded = "embedded"
	PathNetwork  = "network"
	PathRemote   = "remote"
)

// Endpoint is how a realistic workload reaches the store.
type Endpoint struct {
	// Path names it in the results: [PathEmbedded], [PathNetwork] or [PathRemote].
	Path string
	// Dial returns the store of one more simulated client. The workload closes each store
	// it dialed when it is done.
	Dial func(ctx context.Context) (annals.Store, error)
}

// Embedded returns the endpoint of s in process: every simulated client calls s (closing what
// Dial returns leaves s open).
func Embedded(s annals.Store) Endpoint {
	return Endpoint{Path: PathEmbedded, Dial: func(context.Context) (annals.Store, error) { return keepOpen{s}, nil }}
}

type keepOpen struct{ annals.Store }

func (keepOpen) Close() error { return nil }

// Loopback is a server in this process on a loopback port; see [Serve].
type Loopback struct {
	// URL is the server's, e.g. "http://127.0.0.1:41234".
	URL    string
	srv    *server.Server
	hs     *http.Server
	served chan error
}

// Serve serves s with a [server.Server] (without auth or metrics) over unencrypted HTTP/2 on
// a loopback port, through [server.BufferedListener] as "annals serve" does. Close stops it;
// s stays open.
func Serve(s annals.Store) (*Loopback, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("bench: %w", err)
	}
	var p http.Protocols
	p.SetHTTP1(true)
	p.SetHTTP2(true)
	p.SetUnencryptedHTTP2(true)
	l := &Loopback{URL: "http://" + ln.Addr().String(), served: make(chan error, 1),
		srv: server.New(s, &server.Options{Logger: slog.New(slog.DiscardHandler), Backend: "bench"})}
	l.hs = &http.Server{Handler: l.srv.Handler(), Protocols: &p}
	go func() { l.served <- l.hs.Serve(server.BufferedListener(ln)) }()
	return l, nil
}

// Endpoint returns the server's endpoint: each Dial opens a [client.Client] with a
// connection of its own.
func (l *Loopback) Endpoint() Endpoint {
	return Endpoint{Path: PathNetwork, Dial: func(ctx context.Context) (annals.Store, error) { return client.Open(ctx, l.URL, nil) }}
}

// Close stops the server and waits for it.
func (l *Loopback) Close() error {
	err := errors.Join(l.srv.Close(), l.hs.Close())
	if serr := <-l.served; !errors.Is(serr, http.ErrServerClosed) {
		err = errors.Join(err, serr)
	}
	return err
}

// Measure runs the realistic workload w (one of [Realistic]) against ep, shaped by cfg
// (Duration, Warmup, Ops and Shape; nil means the defaults), and returns its result. The
// workload writes to streams of new names, so that it can run against a store that holds
// other data. It returns an error for a bad configuration or when the workload failed.
func Measure(ctx context.Context, w string, ep Endpoint, cfg *Config) (Result, error) {
	c, err := cfg.withDefaults()
	if err != nil {
		return Result{}, err
	}
	if !slices.Contains(Realistic(), w) {
		return Result{}, fmt.Errorf("bench: %q is not a realistic workload (want one of %v)", w, Realistic())
	}
	l, err := measure(ctx, w, ep, c)
	if err != nil {
		return Result{}, fmt.Errorf("bench: %s (%s): %w", w, ep.Path, err)
	}
	return realisticResult(w, ep.Path, l), nil
}

// measure dials the stores of w's clients, runs w's warm-up then w, measured, and closes them.
func measure(ctx context.Context, w string, ep Endpoint, c Config) (l load, err error) {
	if c.Timer != nil {
		c.Timer.StopTimer()
		defer c.Timer.StartTimer()
	}
	n := c.Clients
	if w == CatchUpWhileWriting {
		n += c.Subscribers
	}
	stores := make([]annals.Store, 0, n)
	defer func() {
		for _, s := range stores {
			err = errors.Join(err, s.Close())
		}
	}()
	for range n {
		s, err := ep.Dial(ctx)
		if err != nil {
			return l, fmt.Errorf("dial: %w", err)
		}
		stores = append(stores, s)
	}
	ev := newEvents(c.EventSize)
	kind, _, _ := strings.Cut(w, "-")
	prefix := fmt.Sprintf("bench_%s_%s", kind, strconv.FormatInt(time.Now().UnixNano(), 36))
	var run func(limit) (load, error)
	switch w {
	case ZipfConditional:
		ws := newZipfWriters(stores, c.Shape, prefix, ev, 1)
		run = func(lim limit) (load, error) { return zipfLoad(ctx, ws, lim) }
	case Mixed:
		cs := newMixedClients(stores, c.Shape, prefix, ev, 1)
		run = func(lim limit) (load, error) { return mixedLoad(ctx, cs, lim) }
	case CatchUpWhileWriting:
		sp := catchUpSpec{writers: stores[:c.Clients], subs: stores[c.Clients:], shape: c.Shape, prefix: prefix, ev: ev}
		head, err := headPosition(ctx, stores[0])
		if err != nil {
			return l, err
		}
		if err := prefill(ctx, sp); err != nil {
			return l, err
		}
		run = func(lim limit) (load, error) { return catchUpLoad(ctx, sp, head, lim) }
	}
	if c.Ops <= 0 && c.Warmup > 0 && w != CatchUpWhileWriting {
		if _, err := run(limit{dur: c.Warmup}); err != nil {
			return l, fmt.Errorf("warm-up: %w", err)
		}
	}
	if c.Timer != nil {
		c.Timer.StartTimer()
	}
	cpu0 := cpuTime()
	l, err = run(limit{ops: c.Ops, dur: c.Duration})
	if cpu0 > 0 {
		l.cpu = cpuTime() - cpu0
	}
	if c.Timer != nil {
		c.Timer.StopTimer()
	}
	return l, err
}

// realisticResult is the result of the load l of workload w on path.
func realisticResult(w, path string, l load) Result {
	res := Result{Workload: w, Description: descriptions[w], Path: path, Rate: l.rate(), Unit: "events/s",
		Ops: l.ops, Events: l.events, Elapsed: l.elapsed, P50: l.p50(), P95: percentile(l.lat, 95),
		P99: l.p99(), P999: percentile(l.lat, 99.9), CaughtUp: l.caughtUp, Note: l.note}
	if w == Mixed {
		res.Rate, res.Unit = l.opsRate(), "ops/s"
	}
	if l.cpu > 0 && l.events > 0 {
		res.CPUPerEvent = float64(l.cpu) / float64(time.Microsecond) / float64(l.events)
	}
	if l.appends > 0 {
		res.Appends, res.Conflicts = l.appends, l.conflicts
		res.ConflictRate = float64(l.conflicts) / float64(l.appends)
	}
	return res
}

// realisticWorkload runs w on a new store in process, then through a server in process on
// another new store, and adds both results, the second beside the first.
func (r *runner) realisticWorkload(ctx context.Context, w string) error {
	defer r.timed(2 * (r.cfg.Warmup + r.cfg.Duration))()
	var res [2]Result
	for i, path := range []string{PathEmbedded, PathNetwork} {
		var err error
		if res[i], err = r.realisticOn(ctx, w, path); err != nil {
			return r.failed(ctx, w, descriptions[w], fmt.Errorf("%s: %w", path, err))
		}
	}
	emb, nw := res[0], res[1]
	nw.Baseline = &Figure{Label: "embedded, same run", Value: emb.Rate, Unit: emb.Unit}
	if emb.Rate > 0 {
		nw.Ratio = nw.Rate / emb.Rate
	}
	r.add(emb)
	r.add(nw)
	return nil
}

// realisticOn measures w on a new store, in process or through a server.
func (r *runner) realisticOn(ctx context.Context, w, path string) (res Result, err error) {
	s, err := r.storeIn(w + "-" + path)
	if err != nil {
		return res, err
	}
	defer func() { err = errors.Join(err, closeStore(s)) }()
	ep := Embedded(s)
	if path == PathNetwork {
		var srv *Loopback
		if srv, err = Serve(s); err != nil {
			return res, err
		}
		defer func() { err = errors.Join(err, srv.Close()) }()
		ep = srv.Endpoint()
	}
	l, err := measure(ctx, w, ep, r.cfg)
	if err != nil {
		return res, err
	}
	return realisticResult(w, path, l), nil
}

// RunRemote measures the realistic workloads cfg selects (all of them when cfg.Only is empty)
// against the running server at url, with a store from dial for each simulated client (a
// client of that server, each with a connection of its own). There is no embedded half, and
// no baseline: the figures are the server's, and the CPU time is this process's only, the
// clients'. The workloads write new streams on that server and leave them there.
//
// It returns an error for a configuration [Config.ValidateRemote] refuses, or when ctx is
// done (the report then holds the results so far); a workload that fails has a result with
// Verdict [Failed], and the run goes on.
func RunRemote(ctx context.Context, url string, dial func(context.Context) (annals.Store, error), cfg *Config) (*Report, error) {
	if err := cfg.ValidateRemote(); err != nil {
		return nil, err
	}
	c, _ := cfg.withDefaults()
	r := &runner{cfg: c, report: &Report{Start: time.Now().UTC(), Server: url, Duration: c.Duration, Machine: machine(), Shape: &c.Shape}}
	var ws []string
	for _, w := range Realistic() {
		if c.runs(w) {
			ws = append(ws, w)
		}
	}
	ep := Endpoint{Path: PathRemote, Dial: dial}
	for i, w := range ws {
		r.step, r.steps, r.name = i+1, len(ws), w
		stop := r.timed(c.Warmup + c.Duration)
		l, err := measure(ctx, w, ep, c)
		stop()
		switch {
		case ctx.Err() != nil:
			return r.finish(), ctx.Err()
		case err != nil:
			r.add(Result{Workload: w, Description: descriptions[w], Path: PathRemote, Verdict: Failed, Error: err.Error()})
		default:
			r.add(realisticResult(w, PathRemote, l))
		}
	}
	return r.finish(), nil
}
