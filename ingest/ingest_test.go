package ingest

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/annalsdb/annals"
	"github.com/annalsdb/annals/bridge"
	"github.com/annalsdb/annals/filestore"
	"github.com/annalsdb/annals/internal/replicatest"
	"github.com/annalsdb/annals/internal/testwait"
	"github.com/annalsdb/annals/memstore"
	"github.com/annalsdb/annals/supervisor"
)

func jsonUnmarshal(b []byte, v any) error { return json.Unmarshal(b, v) }

// eachStore runs fn on a memstore and on a filestore.
func eachStore(t *testing.T, fn func(t *testing.T, s annals.Store)) {
	t.Run("memstore", func(t *testing.T) {
		s := memstore.New(nil)
		t.Cleanup(func() { s.Close() })
		fn(t, s)
	})
	t.Run("filestore", func(t *testing.T) {
		s, err := filestore.Open(t.TempDir(), nil)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { s.Close() })
		fn(t, s)
	})
}

func decoder(t testing.TB) bridge.Decoder {
	tmpl, err := bridge.ParseTemplate("{stream}")
	if err != nil {
		t.Fatal(err)
	}
	return bridge.Decoder{Stream: tmpl}
}

// message returns a message for an event of stream with id.
func message(stream string, id annals.UUID, n int) bridge.Message {
	return bridge.Message{
		Subject: "orders",
		Key:     []byte(stream),
		Headers: []bridge.Header{
			{Key: bridge.HeaderID, Value: []byte(id.String())},
			{Key: bridge.HeaderType, Value: []byte("OrderPlaced")},
			{Key: bridge.HeaderStream, Value: []byte(stream)},
		},
		Value: fmt.Appendf(nil, `{"n":%d}`, n),
		ID:    id,
	}
}

// workload is messages put on a testBus and the events each stream must end with.
type workload struct {
	want  map[string][]annals.UUID
	last  map[string]uint64 // source → last offset
	total int               // messages on the bus, copies included
}

// fill puts n messages on bus over parts partitions, each partition feeding its own streams
// (as a Kafka key does), and after some of them copies of the last few messages of the
// partition under their ids (a relay that published its tail again).
func fill(bus *testBus, rng *rand.Rand, w *workload, parts, n int, copies float64) {
	if w.want == nil {
		w.want, w.last = map[string][]annals.UUID{}, map[string]uint64{}
	}
	type sent struct {
		stream string
		id     annals.UUID
		n      int
	}
	recent := map[string][]sent{}
	for i := range n {
		p := rng.IntN(parts)
		source := fmt.Sprintf("test:orders/%d", p)
		stream := fmt.Sprintf("order-%d.%d", p, rng.IntN(4))
		id := annals.NewUUID()
		w.last[source] = bus.add(source, message(stream, id, i))
		w.total++
		w.want[stream] = append(w.want[stream], id)
		recent[source] = append(recent[source], sent{stream, id, i})
		if rng.Float64() < copies {
			r := recent[source]
			for _, c := range r[max(0, len(r)-1-rng.IntN(3)):] {
				w.last[source] = bus.add(source, message(c.stream, c.id, c.n))
				w.total++
			}
		}
	}
}

// check fails t unless every stream of w holds exactly its events, in order.
func (w *workload) check(t *testing.T, s annals.Store) {
	t.Helper()
	ctx := context.Background()
	for stream, want := range w.want {
		var got []annals.UUID
		for ev, err := range s.ReadStream(ctx, stream, nil) {
			if err != nil {
				t.Fatalf("read %s: %v", stream, err)
			}
			got = append(got, ev.ID)
		}
		if len(got) != len(want) {
			t.Errorf("%s: %d events, want %d", stream, len(got), len(want))
		}
		for i := range min(len(got), len(want)) {
			if got[i] != want[i] {
				t.Errorf("%s revision %d: event %s, want %s", stream, i, got[i], want[i])
				break
			}
		}
	}
	n := 0
	for info, err := range s.ListStreams(ctx, &annals.ListOptions{Prefix: "order-"}) {
		if err != nil {
			t.Fatal(err)
		}
		if _, ok := w.want[info.Stream]; !ok {
			t.Errorf("unexpected stream %s", info.Stream)
		}
		n++
	}
	if n != len(w.want) {
		t.Errorf("%d streams, want %d", n, len(w.want))
	}
}

// caughtUp reports whether in has appended up to the last offset of every source of w.
func (w *workload) caughtUp(in *Ingest) bool {
	st := in.Status()
	for source, last := range w.last {
		if off, ok := st.Offsets[source]; !ok || off != last {
			return false
		}
	}
	return true
}

// crashStore fails appends at random: before writing (the write is lost) or after it (the
// write is durable, the caller does not know).
type crashStore struct {
	annals.Store
	mu   sync.Mutex
	rng  *rand.Rand
	rate float64
}

func (c *crashStore) Append(ctx context.Context, stream string, expected annals.ExpectedRevision, events ...annals.Event) (annals.AppendResult, error) {
	c.mu.Lock()
	fail, after := c.rng.Float64() < c.rate, c.rng.IntN(2) == 0
	c.mu.Unlock()
	if !fail {
		return c.Store.Append(ctx, stream, expected, events...)
	}
	if !after {
		return annals.AppendResult{}, fmt.Errorf("append before writing: %w", errInjected)
	}
	if _, err := c.Store.Append(ctx, stream, expected, events...); err != nil {
		return annals.AppendResult{}, err
	}
	return annals.AppendResult{}, fmt.Errorf("append after writing: %w", errInjected)
}

// fastRetries is a policy that retries at once, without a lease.
var fastRetries = supervisor.Policy{NoLease: true, MinBackoff: time.Millisecond, MaxBackoff: 5 * time.Millisecond}

// run runs in until the returned stop is called, which returns Run's error.
func run(t *testing.T, in *Ingest) (stop func() error) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- in.Run(ctx) }()
	var once sync.Once
	var err error
	stop = func() error {
		once.Do(func() {
			cancel()
			err = <-done
		})
		return err
	}
	t.Cleanup(func() { stop() })
	return stop
}

func newIngest(t *testing.T, store Store, src Source, opts Options) *Ingest {
	t.Helper()
	if opts.Name == "" {
		opts.Name = "orders"
	}
	if opts.Decoder.Stream.IsZero() {
		opts.Decoder = decoder(t)
	}
	in, err := New(store, src, &opts)
	if err != nil {
		t.Fatal(err)
	}
	in.idle = 20 * time.Millisecond
	return in
}

// TestRandomCrashes ingests a bus that redelivers and carries copies, through appends,
// fetches and commits that fail at random, on both kinds of source: every message is
// appended once, in offset order per stream; then a new ingest reading the whole bus again
// appends nothing.
func TestRandomCrashes(t *testing.T) {
	for _, kafka := range []bool{true, false} {
		t.Run(fmt.Sprintf("kafka=%v", kafka), func(t *testing.T) {
			eachStore(t, func(t *testing.T, store annals.Store) {
				rng := replicatest.Seed(t)
				seed := rng.Uint64()
				bus := newTestBus()
				var w workload
				fill(bus, rng, &w, 3, 600, 0.05)
				crashing := &crashStore{Store: store, rng: rand.New(rand.NewPCG(seed, 2)), rate: 0.03}
				src := &testSource{bus: bus, kafka: kafka, store: store, name: "orders", rng: rand.New(rand.NewPCG(seed, 3)),
					redeliver: 0.05, failFetch: 0.02, failCommit: 0.05}
				in := newIngest(t, crashing, src, Options{Batch: 1 + rng.IntN(60), Policy: fastRetries})
				stop := run(t, in)
				testwait.Until(t, "the ingest appends every message", func() bool { return w.caughtUp(in) })
				// More messages while it runs.
				fill(bus, rng, &w, 4, 200, 0.05)
				testwait.Until(t, "the ingest appends the new messages", func() bool { return w.caughtUp(in) })
				if err := stop(); err != nil {
					t.Fatalf("Run: %v", err)
				}
				w.check(t, store)
				for _, err := range src.errs() {
					t.Error(err)
				}
				st := in.Status()
				t.Logf("appended %d, duplicates %d, errors %d, starts %d", st.Appended, st.Duplicates, st.Errors, src.mu.starts)
				if st.Errors == 0 {
					t.Error("no failure was injected")
				}

				// Again from the start of the bus, without failures: all already appended.
				bus.resetCommits()
				again := &testSource{bus: bus, kafka: true, store: store, name: "orders", rng: rand.New(rand.NewPCG(seed, 4))}
				in2 := newIngest(t, store, again, Options{Policy: fastRetries})
				stop = run(t, in2)
				testwait.Until(t, "the second ingest reads the whole bus", func() bool {
					return in2.Status().Duplicates >= uint64(w.total)
				})
				if err := stop(); err != nil {
					t.Fatalf("Run: %v", err)
				}
				if st := in2.Status(); st.Appended != 0 {
					t.Errorf("the second ingest appended %d events", st.Appended)
				}
				w.check(t, store)
				for _, err := range again.errs() {
					t.Error(err)
				}
			})
		})
	}
}

// TestCopiesAtOtherOffsets: a message sent again under its id at a later offset is appended
// once.
func TestCopiesAtOtherOffsets(t *testing.T) {
	store := memstore.New(nil)
	defer store.Close()
	bus := newTestBus()
	a, b := annals.NewUUID(), annals.NewUUID()
	for _, m := range []bridge.Message{message("order-1", a, 0), message("order-1", b, 1), message("order-1", a, 0), message("order-1", b, 1)} {
		bus.add("test:orders/0", m)
	}
	src := &testSource{bus: bus, kafka: true, store: store, name: "orders", rng: rand.New(rand.NewPCG(1, 1))}
	in := newIngest(t, store, src, Options{Batch: 3, Policy: fastRetries})
	stop := run(t, in)
	w := workload{want: map[string][]annals.UUID{"order-1": {a, b}}, last: map[string]uint64{"test:orders/0": 3}}
	testwait.Until(t, "the ingest reaches offset 3", func() bool { return w.caughtUp(in) })
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	w.check(t, store)
	if st := in.Status(); st.Appended != 2 || st.Duplicates != 2 {
		t.Errorf("appended %d, duplicates %d; want 2 and 2", st.Appended, st.Duplicates)
	}
}

// TestDecodeError: a message that cannot be an event stops Run with an error naming it,
// after the messages before it are appended.
func TestDecodeError(t *testing.T) {
	store := memstore.New(nil)
	defer store.Close()
	bus := newTestBus()
	good := annals.NewUUID()
	bus.add("test:orders/0", message("order-1", good, 0))
	bad := message("order-1", annals.NewUUID(), 1)
	bad.Headers = bad.Headers[:1] // no type
	bus.add("test:orders/0", bad)
	src := &testSource{bus: bus, kafka: true, store: store, name: "orders", rng: rand.New(rand.NewPCG(1, 1))}
	in := newIngest(t, store, src, Options{Batch: 1, Policy: fastRetries})
	err := in.Run(context.Background())
	if !errors.Is(err, annals.ErrInvalidArgument) || !strings.Contains(err.Error(), "test:orders/0") || !strings.Contains(err.Error(), "offset 1") {
		t.Fatalf("Run: %v; want an invalid argument naming test:orders/0 offset 1", err)
	}
	w := workload{want: map[string][]annals.UUID{"order-1": {good}}}
	w.check(t, store)
	if st := in.Status(); st.State != "failed" {
		t.Errorf("state %q, want failed", st.State)
	}
}

// TestStatus: the counters, the offsets and the rate.
func TestStatus(t *testing.T) {
	store := memstore.New(nil)
	defer store.Close()
	bus := newTestBus()
	rng := rand.New(rand.NewPCG(1, 1))
	var w workload
	fill(bus, rng, &w, 2, 100, 0)
	src := &testSource{bus: bus, kafka: true, store: store, name: "orders", rng: rng}
	in := newIngest(t, store, src, Options{Batch: 10, Policy: fastRetries})
	if st := in.Status(); st.Name != "orders" || st.State != "stopped" {
		t.Errorf("before Run: %+v", st)
	}
	stop := run(t, in)
	testwait.Until(t, "the ingest appends every message", func() bool { return w.caughtUp(in) })
	st := in.Status()
	if st.State != "running" || st.Appended != 100 || st.Rate <= 0 || len(st.Offsets) != 2 {
		t.Errorf("running: %+v", st)
	}
	if err := stop(); err != nil {
		t.Fatal(err)
	}
}

func TestNew(t *testing.T) {
	store := memstore.New(nil)
	defer store.Close()
	src := &testSource{}
	for _, tc := range []struct {
		name string
		opts *Options
	}{
		{"nil options", nil},
		{"empty name", &Options{Decoder: decoder(t)}},
		{"control character", &Options{Name: "a\x01", Decoder: decoder(t)}},
		{"too long", &Options{Name: strings.Repeat("a", 300), Decoder: decoder(t)}},
		{"no stream template", &Options{Name: "orders"}},
		{"negative batch", &Options{Name: "orders", Decoder: decoder(t), Batch: -1}},
		{"negative dedup", &Options{Name: "orders", Decoder: decoder(t), DedupSize: -1}},
	} {
		if _, err := New(store, src, tc.opts); !errors.Is(err, annals.ErrInvalidArgument) {
			t.Errorf("%s: %v, want an invalid argument", tc.name, err)
		}
	}
	in, err := New(store, src, &Options{Name: "kafka/orders", Decoder: decoder(t)})
	if err != nil || in.Name() != "kafka/orders" {
		t.Errorf("New: %v, %v", in, err)
	}
}
