// Package traceprop carries OpenTelemetry trace context through the log, for the toolkit's
// packages (decider, projection, process, groups): the one place that says where a span's
// parent comes from, what is written into an event's metadata, and which attributes a span
// carries. It uses the OpenTelemetry API only; the SDK is configured by package tracing (or by
// the application).
//
// Tracing is on when the process has installed a TracerProvider (otel.SetTracerProvider)
// other than a no-op one. When it is off, every function here returns at once, without
// allocating: the toolkit's hot paths cost nothing more.
//
// The rules:
//
//   - a command handled starts a producer span; its parent is the span of the context, or,
//     when the context has none, the trace derived from the command's correlation id (see
//     below), or none (a new trace). Its W3C trace context goes into the metadata of the events
//     it appends ($traceparent, $tracestate);
//   - an event handled (by a projection, a process manager, a consumer of a group) starts a
//     consumer span whose parent is the trace context the event records; an event without one
//     but with a correlation id that is a UUID gets the trace derived from it; any other event
//     starts a new trace;
//   - the derived trace: trace id = the 16 bytes of the correlation id, parent span id = the
//     first 8 bytes of the causation id when it is a UUID (else the last 8 bytes of the
//     correlation id), sampled. Events of one conversation written without trace context (old
//     events, other writers) so share a trace, under a parent span no exporter holds.
package traceprop

import (
	"context"
	"reflect"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/noop"

	"github.com/annalsdb/annals"
	"github.com/annalsdb/annals/codec"
)

// ScopeName is the instrumentation scope of the toolkit's spans.
const ScopeName = "github.com/annalsdb/annals"

// The attributes of the toolkit's spans.
const (
	AttrCorrelationID = attribute.Key("annals.correlation_id")
	AttrCausationID   = attribute.Key("annals.causation_id")
	AttrStream        = attribute.Key("annals.stream")
	AttrPosition      = attribute.Key("annals.position")
	AttrRevision      = attribute.Key("annals.revision")
	AttrCommandType   = attribute.Key("annals.command.type")
	AttrEventID       = attribute.Key("annals.event.id")
	AttrEventType     = attribute.Key("annals.event.type")
	// AttrConsumer names what handled an event: a projection, a process manager, a group.
	AttrConsumer = attribute.Key("annals.consumer")
)

// noopSpan is returned when tracing is off: an interface value made once, so that returning
// it costs nothing.
var noopSpan trace.Span = noop.Span{}

// Enabled reports whether tracing is on: a TracerProvider other than the global default and
// a no-op one has been installed with otel.SetTracerProvider.
func Enabled() bool { return enabled(otel.GetTracerProvider()) }

func enabled(tp trace.TracerProvider) bool {
	switch tp.(type) {
	case noop.TracerProvider, *noop.TracerProvider, nil:
		return false
	}
	t := reflect.TypeOf(tp)
	if t.Kind() != reflect.Pointer {
		return true
	}
	// The global default (no provider installed) is the delegating provider of the API's
	// internal/global package; otel.SetTracerProvider replaces it.
	e := t.Elem()
	return e.Name() != "tracerProvider" || e.PkgPath() != "go.opentelemetry.io/otel/internal/global"
}

func tracer() trace.Tracer { return otel.GetTracerProvider().Tracer(ScopeName) }

// carrier is the propagation carrier over a Metadata's trace context fields.
type carrier struct{ md *codec.Metadata }

func (c carrier) Get(key string) string {
	switch key {
	case "traceparent":
		return c.md.TraceParent
	case "tracestate":
		return c.md.TraceState
	}
	return ""
}

func (c carrier) Set(key, value string) {
	switch key {
	case "traceparent":
		c.md.TraceParent = value
	case "tracestate":
		c.md.TraceState = value
	}
}

func (c carrier) Keys() []string { return []string{"traceparent", "tracestate"} }

// Inject records the trace context of ctx's span in md (TraceParent, TraceState); it leaves md
// alone when ctx has no valid span context.
func Inject(ctx context.Context, md *codec.Metadata) {
	if !trace.SpanContextFromContext(ctx).IsValid() {
		return
	}
	// Through a copy: md itself does not escape, so that a caller's Metadata stays on its
	// stack when tracing is off.
	var tc codec.Metadata
	propagation.TraceContext{}.Inject(ctx, carrier{&tc})
	md.TraceParent, md.TraceState = tc.TraceParent, tc.TraceState
}

// Parent returns ctx with the remote span context md records (its traceparent, or the trace
// derived from its correlation id), and whether md gave one.
func Parent(ctx context.Context, md codec.Metadata) (context.Context, bool) {
	if md.TraceParent != "" {
		c := propagation.TraceContext{}.Extract(ctx, carrier{&md})
		if sc := trace.SpanContextFromContext(c); sc.IsValid() && sc.IsRemote() {
			return c, true
		}
	}
	if sc, ok := Derived(md.CorrelationID, md.CausationID); ok {
		return trace.ContextWithRemoteSpanContext(ctx, sc), true
	}
	return ctx, false
}

// Derived returns the span context derived from a correlation id that is a UUID (see the
// package doc), and false for any other correlation id.
func Derived(correlationID, causationID string) (trace.SpanContext, bool) {
	corr, err := annals.ParseUUID(correlationID)
	if err != nil || corr.IsZero() {
		return trace.SpanContext{}, false
	}
	var sid trace.SpanID
	if cause, err := annals.ParseUUID(causationID); err == nil && [8]byte(cause[:8]) != [8]byte{} {
		copy(sid[:], cause[:8])
	} else {
		copy(sid[:], corr[8:])
	}
	if !sid.IsValid() {
		sid[7] = 1
	}
	return trace.NewSpanContext(trace.SpanContextConfig{
		TraceID: trace.TraceID(corr), SpanID: sid, TraceFlags: trace.FlagsSampled, Remote: true,
	}), true
}

// StartCommand starts the span of a command of type cmdType handled on stream, with the
// metadata md its events will carry (correlation and causation ids). derive says that md's
// correlation id came with the command (rather than being made for it): a ctx without a span
// then continues the trace derived from it. The caller records the
// span's context in md with [Inject] and ends the span with [EndCommand]. With tracing off it
// returns ctx and a no-op span.
func StartCommand(ctx context.Context, cmdType, stream string, md codec.Metadata, derive bool) (context.Context, trace.Span) {
	if !Enabled() {
		return ctx, noopSpan
	}
	if derive && !trace.SpanContextFromContext(ctx).IsValid() {
		if sc, ok := Derived(md.CorrelationID, md.CausationID); ok {
			ctx = trace.ContextWithRemoteSpanContext(ctx, sc)
		}
	}
	return tracer().Start(ctx, "handle "+cmdType,
		trace.WithSpanKind(trace.SpanKindProducer),
		trace.WithAttributes(
			AttrCommandType.String(cmdType), AttrStream.String(stream),
			AttrCorrelationID.String(md.CorrelationID), AttrCausationID.String(md.CausationID),
		))
}

// EndCommand ends a span of [StartCommand]: written tells that the command appended events,
// at revision and position (the last event's); err, when not nil, is recorded as the span's
// error.
func EndCommand(span trace.Span, written bool, revision, position uint64, err error) {
	if !span.IsRecording() {
		span.End()
		return
	}
	if written {
		span.SetAttributes(AttrRevision.Int64(int64(revision)), AttrPosition.Int64(int64(position)))
	}
	End(span, err)
}

// StartEvent starts the consumer span "<kind> <consumer> <event type>" of consumer (a
// projection's or a process manager's name, or "" when unknown; kind says which:
// "projection", "process", "group") handling ev. Its parent is
// the trace context ev records (see the package doc), or a new trace. End it with [End]. With
// tracing off it returns ctx and a no-op span.
func StartEvent(ctx context.Context, kind, consumer string, ev *annals.RecordedEvent) (context.Context, trace.Span) {
	if !Enabled() {
		return ctx, noopSpan
	}
	md, err := codec.ParseMetadata(ev.Metadata)
	opts := []trace.SpanStartOption{
		trace.WithSpanKind(trace.SpanKindConsumer),
		trace.WithAttributes(
			AttrConsumer.String(consumer), AttrEventID.String(ev.ID.String()), AttrEventType.String(ev.Type),
			AttrStream.String(ev.Stream), AttrRevision.Int64(int64(ev.Revision)), AttrPosition.Int64(int64(ev.Position)),
			AttrCorrelationID.String(md.CorrelationID), AttrCausationID.String(md.CausationID),
		),
	}
	parented := false
	if err == nil {
		ctx, parented = Parent(ctx, md)
	}
	if !parented {
		opts = append(opts, trace.WithNewRoot())
	}
	name := kind + " " + ev.Type
	if consumer != "" {
		name = kind + " " + consumer + " " + ev.Type
	}
	return tracer().Start(ctx, name, opts...)
}

// StartDeadline starts the span of the deadline name of the process manager consumer coming
// due; its parent is the trace derived from the correlation and causation ids of the event
// that set it (a deadline records no trace context), or a new trace. End it with [End].
func StartDeadline(ctx context.Context, consumer, name, correlationID, causationID string) (context.Context, trace.Span) {
	if !Enabled() {
		return ctx, noopSpan
	}
	opts := []trace.SpanStartOption{
		trace.WithSpanKind(trace.SpanKindConsumer),
		trace.WithAttributes(AttrConsumer.String(consumer), attribute.String("annals.deadline", name),
			AttrCorrelationID.String(correlationID), AttrCausationID.String(causationID)),
	}
	if sc, ok := Derived(correlationID, causationID); ok {
		ctx = trace.ContextWithRemoteSpanContext(ctx, sc)
	} else {
		opts = append(opts, trace.WithNewRoot())
	}
	return tracer().Start(ctx, "deadline "+consumer+" "+name, opts...)
}

// End ends span, recording err as its error when not nil.
func End(span trace.Span, err error) {
	if err != nil && span.IsRecording() {
		span.RecordError(err)
		span.SetStatus(codes.Error, err.Error())
	}
	span.End()
}
