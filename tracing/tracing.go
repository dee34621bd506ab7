// Package tracing configures OpenTelemetry tracing for a program that uses Annals, from the
// standard OTEL_* environment variables. It is the only package of the module that imports
// the OpenTelemetry SDK and the OTLP exporters; the toolkit's packages (decider, projection,
// process, groups) use the OpenTelemetry API only, so that a program that does not call
// [Setup] (or whose environment leaves tracing off) pays nothing for it.
//
// See docs/tracing.md for what the spans are and how they form one trace across services.
package tracing

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracegrpc"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"

	"github.com/annalsdb/annals"
)

// The environment variables [Setup] reads itself; the exporter, the sampler, the batch
// processor and the resource read the other standard ones (OTEL_EXPORTER_OTLP_HEADERS,
// OTEL_TRACES_SAMPLER, OTEL_TRACES_SAMPLER_ARG, OTEL_BSP_*, OTEL_SERVICE_NAME,
// OTEL_RESOURCE_ATTRIBUTES, …).
const (
	EnvSDKDisabled       = "OTEL_SDK_DISABLED"
	EnvTracesExporter    = "OTEL_TRACES_EXPORTER"
	EnvEndpoint          = "OTEL_EXPORTER_OTLP_ENDPOINT"
	EnvTracesEndpoint    = "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"
	EnvProtocol          = "OTEL_EXPORTER_OTLP_PROTOCOL"
	EnvTracesProtocol    = "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL"
	protocolHTTPProtobuf = "http/protobuf"
	protocolGRPC         = "grpc"
	exporterOTLP         = "otlp"
	exporterNone         = "none"
)

// Config is what [Setup] decided from the environment.
type Config struct {
	// On: tracing is on.
	On bool
	// Protocol is the OTLP protocol: "http/protobuf" or "grpc" (when On).
	Protocol string
}

// FromEnv decides from the environment (getenv; nil means os.Getenv) whether tracing is on,
// and with which OTLP protocol. The rule:
//
//   - OTEL_SDK_DISABLED=true: off, whatever else is set;
//   - OTEL_TRACES_EXPORTER=none: off; =otlp: on; unset or empty: on when
//     OTEL_EXPORTER_OTLP_ENDPOINT or OTEL_EXPORTER_OTLP_TRACES_ENDPOINT is set, off otherwise;
//   - the protocol is OTEL_EXPORTER_OTLP_TRACES_PROTOCOL, else OTEL_EXPORTER_OTLP_PROTOCOL,
//     else http/protobuf; grpc is the other one supported.
//
// It returns an error matching [annals.ErrInvalidArgument] that names the variable for any
// other value of OTEL_SDK_DISABLED (true or false), OTEL_TRACES_EXPORTER (otlp or none) or
// the protocol.
func FromEnv(getenv func(string) string) (Config, error) {
	if getenv == nil {
		getenv = os.Getenv
	}
	bad := func(name, value, want string) error {
		return fmt.Errorf("%w: tracing: %s=%q: want %s", annals.ErrInvalidArgument, name, value, want)
	}
	switch v := strings.TrimSpace(getenv(EnvSDKDisabled)); strings.ToLower(v) {
	case "true":
		return Config{}, nil
	case "", "false":
	default:
		return Config{}, bad(EnvSDKDisabled, v, "true or false")
	}
	var on bool
	switch v := strings.TrimSpace(getenv(EnvTracesExporter)); v {
	case exporterNone:
		return Config{}, nil
	case exporterOTLP:
		on = true
	case "":
		on = getenv(EnvEndpoint) != "" || getenv(EnvTracesEndpoint) != ""
	default:
		return Config{}, bad(EnvTracesExporter, v, "otlp or none")
	}
	if !on {
		return Config{}, nil
	}
	name, proto := EnvTracesProtocol, strings.TrimSpace(getenv(EnvTracesProtocol))
	if proto == "" {
		name, proto = EnvProtocol, strings.TrimSpace(getenv(EnvProtocol))
	}
	switch proto {
	case "":
		proto = protocolHTTPProtobuf
	case protocolHTTPProtobuf, protocolGRPC:
	default:
		return Config{}, bad(name, proto, "http/protobuf or grpc")
	}
	return Config{On: true, Protocol: proto}, nil
}

// Setup configures tracing from the environment (see [FromEnv]). When tracing is off it
// changes nothing: the global TracerProvider stays the no-op default, and shutdown does
// nothing. When it is on, it installs as the global TracerProvider one that exports spans in
// batches with OTLP (the exporter reads the endpoint, headers, timeout and TLS settings from
// the OTEL_EXPORTER_OTLP_* variables; the sampler OTEL_TRACES_SAMPLER; the resource
// OTEL_SERVICE_NAME and OTEL_RESOURCE_ATTRIBUTES), and the W3C trace context and baggage as
// the global propagator.
//
// shutdown flushes the spans not yet exported and stops the exporter; call it once, before
// the program exits, with a context that bounds the flush. It is not safe to call Setup twice.
//
// Errors: those of [FromEnv], and an exporter or resource that cannot be made (a malformed
// endpoint, resource attributes that do not parse); nothing is installed then.
func Setup(ctx context.Context) (shutdown func(context.Context) error, err error) {
	cfg, err := FromEnv(nil)
	if err != nil || !cfg.On {
		return func(context.Context) error { return nil }, err
	}
	var exp sdktrace.SpanExporter
	switch cfg.Protocol {
	case protocolGRPC:
		exp, err = otlptracegrpc.New(ctx)
	default:
		exp, err = otlptracehttp.New(ctx)
	}
	if err != nil {
		return nil, fmt.Errorf("tracing: OTLP exporter (%s): %w", cfg.Protocol, err)
	}
	res, err := resource.Merge(resource.Default(), resource.Environment())
	if err != nil && !errors.Is(err, resource.ErrPartialResource) && !errors.Is(err, resource.ErrSchemaURLConflict) {
		_ = exp.Shutdown(ctx)
		return nil, fmt.Errorf("tracing: resource: %w", err)
	}
	tp := sdktrace.NewTracerProvider(sdktrace.WithBatcher(exp), sdktrace.WithResource(res))
	otel.SetTracerProvider(tp)
	otel.SetTextMapPropagator(propagation.NewCompositeTextMapPropagator(propagation.TraceContext{}, propagation.Baggage{}))
	return tp.Shutdown, nil
}
