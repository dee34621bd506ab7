package traceprop

import (
	"context"
	"testing"

	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/noop"

	"github.com/annalsdb/annals"
	"github.com/annalsdb/annals/codec"
)

// TestOffAllocatesNothing: with no TracerProvider installed (this test binary installs none),
// what the toolkit calls on its hot paths allocates nothing.
func TestOffAllocatesNothing(t *testing.T) {
	if Enabled() {
		t.Fatal("Enabled() with the global default provider")
	}
	ctx := context.Background()
	ev := &annals.RecordedEvent{ID: annals.NewUUID(), Stream: "s-1", Type: "T",
		Metadata: []byte(`{"$correlationId":"0192f0c4-6a1e-7c3b-9f00-1b2c3d4e5f60","$traceparent":"00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"}`)}
	md := codec.Metadata{CorrelationID: "0192f0c4-6a1e-7c3b-9f00-1b2c3d4e5f60"}
	allocs := testing.AllocsPerRun(100, func() {
		c, span := StartCommand(ctx, "", "s-1", md, true)
		Inject(c, &md)
		EndCommand(span, true, 1, 2, nil)
		c, span = StartEvent(ctx, "projection", "p", ev)
		_ = c
		End(span, nil)
		_, span = StartDeadline(ctx, "m", "d", md.CorrelationID, "")
		End(span, nil)
	})
	if allocs != 0 {
		t.Errorf("off: %v allocations per command and event, want 0", allocs)
	}
	if md.TraceParent != "" {
		t.Errorf("off: Inject wrote $traceparent %q", md.TraceParent)
	}
}

func TestEnabled(t *testing.T) {
	if enabled(noop.NewTracerProvider()) {
		t.Error("enabled(noop provider)")
	}
	if enabled(nil) {
		t.Error("enabled(nil)")
	}
	var other struct{ noop.TracerProvider }
	if !enabled(&other) {
		t.Error("enabled(another provider) is false")
	}
}

func TestDerived(t *testing.T) {
	corr := "0192f0c4-6a1e-7c3b-9f00-1b2c3d4e5f60"
	cause := "11223344-5566-7788-99aa-bbccddeeff00"
	sc, ok := Derived(corr, cause)
	if !ok {
		t.Fatal("no span context derived from a UUID")
	}
	if got, want := sc.TraceID().String(), "0192f0c46a1e7c3b9f001b2c3d4e5f60"; got != want {
		t.Errorf("trace id %s, want %s", got, want)
	}
	if got, want := sc.SpanID().String(), "1122334455667788"; got != want {
		t.Errorf("span id %s, want %s", got, want)
	}
	if !sc.IsSampled() || !sc.IsRemote() {
		t.Errorf("derived span context %+v: want sampled and remote", sc)
	}
	if sc, _ := Derived(corr, "not-a-uuid"); sc.SpanID().String() != "9f001b2c3d4e5f60" {
		t.Errorf("span id without a causation UUID: %s, want the correlation's last 8 bytes", sc.SpanID())
	}
	for _, bad := range []string{"", "order-42", "00000000-0000-0000-0000-000000000000"} {
		if _, ok := Derived(bad, cause); ok {
			t.Errorf("Derived(%q) gave a span context", bad)
		}
	}
}

func TestParentPrefersTraceParent(t *testing.T) {
	md := codec.Metadata{CorrelationID: "0192f0c4-6a1e-7c3b-9f00-1b2c3d4e5f60", TraceParent: "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"}
	ctx, ok := Parent(context.Background(), md)
	if !ok {
		t.Fatal("no parent")
	}
	sc := spanContext(ctx)
	if got, want := sc.TraceID().String(), "0af7651916cd43dd8448eb211c80319c"; got != want {
		t.Errorf("trace %s, want %s", got, want)
	}
	md.TraceParent = "garbage"
	ctx, _ = Parent(context.Background(), md)
	if got, want := spanContext(ctx).TraceID().String(), "0192f0c46a1e7c3b9f001b2c3d4e5f60"; got != want {
		t.Errorf("malformed traceparent: trace %s, want the derived %s", got, want)
	}
	if _, ok := Parent(context.Background(), codec.Metadata{CorrelationID: "order-1"}); ok {
		t.Error("a parent for a correlation id that is not a UUID and no traceparent")
	}
}

func spanContext(ctx context.Context) trace.SpanContext { return trace.SpanContextFromContext(ctx) }
