package tracing_test

import (
	"context"
	"errors"
	"strconv"
	"strings"
	"sync"
	"testing"

	"go.opentelemetry.io/otel"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	"github.com/annalsdb/annals"
	"github.com/annalsdb/annals/codec"
	"github.com/annalsdb/annals/decider"
	"github.com/annalsdb/annals/groups"
	"github.com/annalsdb/annals/internal/testwait"
	"github.com/annalsdb/annals/internal/traceprop"
	"github.com/annalsdb/annals/memstore"
	"github.com/annalsdb/annals/process"
	"github.com/annalsdb/annals/projection"
)

type (
	PlaceOrder    struct{ SKU string }
	OrderPlaced   struct{ SKU string }
	ReserveStock  struct{ Order string }
	StockReserved struct{ Order string }
)

// installExporter installs an SDK TracerProvider that records spans in memory, as the
// process's global provider (the toolkit's packages use the global one), for the rest of the
// test binary: tests of this package that trace do not run in parallel.
func installExporter(t *testing.T) *tracetest.InMemoryExporter {
	t.Helper()
	exp := tracetest.NewInMemoryExporter()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSyncer(exp))
	otel.SetTracerProvider(tp)
	t.Cleanup(func() { exp.Reset() })
	if !traceprop.Enabled() {
		t.Fatal("traceprop.Enabled() is false with an SDK TracerProvider installed")
	}
	return exp
}

// spanNamed returns the one span whose name is name, failing the test when there is not
// exactly one.
func spanNamed(t *testing.T, spans tracetest.SpanStubs, name string) tracetest.SpanStub {
	t.Helper()
	var found []tracetest.SpanStub
	for _, s := range spans {
		if s.Name == name {
			found = append(found, s)
		}
	}
	if len(found) != 1 {
		var names []string
		for _, s := range spans {
			names = append(names, s.Name)
		}
		t.Fatalf("%d spans named %q, want 1; spans: %s", len(found), name, strings.Join(names, ", "))
	}
	return found[0]
}

func checkChild(t *testing.T, child, parent tracetest.SpanStub) {
	t.Helper()
	if child.SpanContext.TraceID() != parent.SpanContext.TraceID() {
		t.Errorf("span %q: trace %s, want %s (that of %q)", child.Name, child.SpanContext.TraceID(), parent.SpanContext.TraceID(), parent.Name)
	}
	if child.Parent.SpanID() != parent.SpanContext.SpanID() {
		t.Errorf("span %q: parent span %s, want %s (%q)", child.Name, child.Parent.SpanID(), parent.SpanContext.SpanID(), parent.Name)
	}
}

func attr(s tracetest.SpanStub, key string) string {
	for _, kv := range s.Attributes {
		if string(kv.Key) == key {
			return kv.Value.String()
		}
	}
	return ""
}

// TestOneTrace: a command, its events, a projection and a process manager that react, the
// process manager's command, its events and a consumer of a group that handles them form one
// trace with the right parents, and each event records the span of the command that wrote it.
func TestOneTrace(t *testing.T) {
	exp := installExporter(t)
	ctx := t.Context()
	store := memstore.New(nil)
	t.Cleanup(func() { store.Close() })
	reg := codec.New(nil)
	if err := errors.Join(codec.Register[OrderPlaced](reg, "OrderPlaced", nil), codec.Register[StockReserved](reg, "StockReserved", nil)); err != nil {
		t.Fatal(err)
	}
	carts, err := decider.NewHandler(store, reg, decider.Decider[int, PlaceOrder, OrderPlaced]{
		Initial: func() int { return 0 },
		Decide:  func(int, PlaceOrder) ([]OrderPlaced, error) { return []OrderPlaced{{SKU: "x"}}, nil },
		Evolve:  func(n int, _ OrderPlaced) int { return n + 1 },
	}, nil)
	if err != nil {
		t.Fatal(err)
	}
	stock, err := decider.NewHandler(store, reg, decider.Decider[int, ReserveStock, StockReserved]{
		Initial: func() int { return 0 },
		Decide:  func(_ int, c ReserveStock) ([]StockReserved, error) { return []StockReserved{{Order: c.Order}}, nil },
		Evolve:  func(n int, _ StockReserved) int { return n + 1 },
	}, nil)
	if err != nil {
		t.Fatal(err)
	}
	send, err := process.HandlerSender(process.To("stock", stock))
	if err != nil {
		t.Fatal(err)
	}
	manager := process.Manager[int, OrderPlaced]{
		Name:   "fulfil",
		Filter: &annals.Filter{EventTypes: []string{"OrderPlaced"}},
		Decode: process.Decoder[OrderPlaced](reg),
		Instance: func(_ OrderPlaced, rec annals.RecordedEvent) (string, bool) {
			return strings.CutPrefix(rec.Stream, "cart-")
		},
		Initial: func() int { return 0 },
		React: func(id string, _ int, in process.Input[OrderPlaced]) []process.Action {
			return []process.Action{process.Send{Stream: "stock-" + id, Command: ReserveStock{Order: id}}}
		},
		Evolve: func(n int, _ process.Input[OrderPlaced]) int { return n + 1 },
	}
	pm, err := process.NewRunner(store, manager, send, nil)
	if err != nil {
		t.Fatal(err)
	}
	model := projection.NewMemory(func() *sync.Map { return new(sync.Map) })
	proj, err := projection.NewRunner(store, model, projection.Projection[*sync.Map]{
		Name:   "orders",
		Filter: &annals.Filter{EventTypes: []string{"OrderPlaced", "StockReserved"}},
		Handle: func(ctx context.Context, m *sync.Map, ev annals.RecordedEvent) error {
			m.Store(ev.ID, trace.SpanContextFromContext(ctx).SpanID())
			return nil
		},
	}, nil)
	if err != nil {
		t.Fatal(err)
	}
	// A consumer of a group on stock-1 (a service that reacts to the reservations).
	gm, err := groups.Open(ctx, store, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { gm.Close() })
	if _, err := gm.Create(ctx, "mailer", groups.Settings{Stream: "stock-1"}); err != nil {
		t.Fatal(err)
	}
	consumer, err := gm.Join(ctx, "mailer", nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { consumer.Close() })
	var handledIn sync.Map // event id → the span id of the group consumer's handler context
	runCtx, stop := context.WithCancel(ctx)
	var wg sync.WaitGroup
	wg.Go(func() { _ = pm.Run(runCtx) })
	wg.Go(func() { _ = proj.Run(runCtx) })
	wg.Go(func() {
		_ = groups.Run(runCtx, consumer, func(ctx context.Context, m groups.Message) error {
			handledIn.Store(m.Event.ID, trace.SpanContextFromContext(ctx).SpanID())
			return nil
		}, nil)
	})
	t.Cleanup(func() { stop(); wg.Wait() })

	res, err := carts.Handle(ctx, "cart-1", PlaceOrder{SKU: "x"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := pm.WaitFor(ctx, res.Position); err != nil {
		t.Fatal(err)
	}
	var reserved annals.RecordedEvent
	testwait.Until(t, "StockReserved in stock-1", func() bool {
		for ev, err := range store.ReadStream(ctx, "stock-1", nil) {
			if err == nil {
				reserved = ev
				return true
			}
		}
		return false
	})
	if err := proj.WaitFor(ctx, reserved.Position); err != nil {
		t.Fatal(err)
	}
	var spans tracetest.SpanStubs
	testwait.Until(t, "the spans of the projection and the group consumer to end", func() bool {
		spans = exp.GetSpans()
		n := 0
		for _, s := range spans {
			if strings.HasPrefix(s.Name, "projection orders ") || s.Name == "group StockReserved" {
				n++
			}
		}
		return n == 3
	})

	place := spanNamed(t, spans, "handle tracing_test.PlaceOrder")
	placed := spanNamed(t, spans, "projection orders OrderPlaced")
	react := spanNamed(t, spans, "process fulfil OrderPlaced")
	reserve := spanNamed(t, spans, "handle tracing_test.ReserveStock")
	projReserved := spanNamed(t, spans, "projection orders StockReserved")
	consumed := spanNamed(t, spans, "group StockReserved")

	if place.Parent.IsValid() {
		t.Errorf("span %q has parent %s, want a root", place.Name, place.Parent.SpanID())
	}
	checkChild(t, placed, place)
	checkChild(t, react, place)
	checkChild(t, reserve, react)
	checkChild(t, projReserved, reserve)
	checkChild(t, consumed, reserve)
	if got, want := place.SpanKind, trace.SpanKindProducer; got != want {
		t.Errorf("%q: kind %v, want %v", place.Name, got, want)
	}
	if got, want := react.SpanKind, trace.SpanKindConsumer; got != want {
		t.Errorf("%q: kind %v, want %v", react.Name, got, want)
	}

	// The handlers run in their spans' contexts.
	if got, _ := handledIn.Load(reserved.ID); got != consumed.SpanContext.SpanID() {
		t.Errorf("the group consumer's handler ran in span %v, want %s", got, consumed.SpanContext.SpanID())
	}
	model.Read("orders", func(m *sync.Map, _ uint64) {
		if got, _ := m.Load(reserved.ID); got != projReserved.SpanContext.SpanID() {
			t.Errorf("the projection's handler ran in span %v, want %s", got, projReserved.SpanContext.SpanID())
		}
	})

	// The events record their command's span; the attributes name the conversation.
	var first annals.RecordedEvent
	for ev, err := range store.ReadStream(ctx, "cart-1", nil) {
		if err != nil {
			t.Fatal(err)
		}
		first = ev
	}
	for _, c := range []struct {
		ev   annals.RecordedEvent
		span tracetest.SpanStub
	}{{first, place}, {reserved, reserve}} {
		md, err := codec.ParseMetadata(c.ev.Metadata)
		if err != nil {
			t.Fatal(err)
		}
		want := "00-" + c.span.SpanContext.TraceID().String() + "-" + c.span.SpanContext.SpanID().String() + "-01"
		if md.TraceParent != want {
			t.Errorf("%s: $traceparent %q, want %q", c.ev.Type, md.TraceParent, want)
		}
	}
	firstMD, _ := codec.ParseMetadata(first.Metadata)
	for _, c := range []struct {
		span      tracetest.SpanStub
		key, want string
	}{
		{place, "annals.stream", "cart-1"},
		{place, "annals.correlation_id", firstMD.CorrelationID},
		{place, "annals.position", strconv.FormatUint(first.Position, 10)},
		{reserve, "annals.causation_id", first.ID.String()},
		{reserve, "annals.correlation_id", firstMD.CorrelationID},
		{placed, "annals.event.id", first.ID.String()},
	} {
		if got := attr(c.span, c.key); got != c.want {
			t.Errorf("%q: %s = %q, want %q", c.span.Name, c.key, got, c.want)
		}
	}
}

// TestDerivedTrace: events written without trace context (old events, other writers) but with
// a correlation id that is a UUID are handled in the trace derived from it, so a conversation
// still groups; an event with neither starts a trace of its own.
func TestDerivedTrace(t *testing.T) {
	exp := installExporter(t)
	ctx := t.Context()
	store := memstore.New(nil)
	t.Cleanup(func() { store.Close() })
	cid, cause := annals.NewUUID(), annals.NewUUID()
	md, err := codec.Metadata{CorrelationID: cid.String(), CausationID: cause.String()}.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	md2, _ := codec.Metadata{CorrelationID: cid.String()}.Marshal()
	res, err := store.Append(ctx, "legacy-1", annals.Any,
		annals.Event{Type: "Old", Metadata: md}, annals.Event{Type: "Older", Metadata: md2}, annals.Event{Type: "Bare"})
	if err != nil {
		t.Fatal(err)
	}
	model := projection.NewMemory(func() *sync.Map { return new(sync.Map) })
	proj, err := projection.NewRunner(store, model, projection.Projection[*sync.Map]{
		Name:   "legacy",
		Filter: &annals.Filter{Categories: []string{"legacy"}},
		Handle: func(context.Context, *sync.Map, annals.RecordedEvent) error { return nil },
	}, nil)
	if err != nil {
		t.Fatal(err)
	}
	runCtx, stop := context.WithCancel(ctx)
	var wg sync.WaitGroup
	wg.Go(func() { _ = proj.Run(runCtx) })
	t.Cleanup(func() { stop(); wg.Wait() })
	if err := proj.WaitFor(ctx, res.Position); err != nil {
		t.Fatal(err)
	}
	var spans tracetest.SpanStubs
	testwait.Until(t, "three projection spans", func() bool {
		spans = exp.GetSpans()
		return len(spans) >= 3
	})
	old, older, bare := spanNamed(t, spans, "projection legacy Old"), spanNamed(t, spans, "projection legacy Older"), spanNamed(t, spans, "projection legacy Bare")
	want := trace.TraceID(cid)
	for _, s := range []tracetest.SpanStub{old, older} {
		if s.SpanContext.TraceID() != want {
			t.Errorf("%q: trace %s, want the correlation id's %s", s.Name, s.SpanContext.TraceID(), want)
		}
	}
	if got := old.Parent.SpanID(); got != trace.SpanID(cause[:8]) {
		t.Errorf("%q: parent span %s, want the causation id's first 8 bytes", old.Name, got)
	}
	if bare.SpanContext.TraceID() == want || bare.Parent.IsValid() {
		t.Errorf("%q: trace %s parent %s, want a trace of its own", bare.Name, bare.SpanContext.TraceID(), bare.Parent.SpanID())
	}
}
