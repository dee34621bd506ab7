package tracing_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"

	"go.opentelemetry.io/otel"

	"github.com/annalsdb/annals"
	"github.com/annalsdb/annals/internal/testwait"
	"github.com/annalsdb/annals/tracing"
)

func TestFromEnv(t *testing.T) {
	for _, c := range []struct {
		name  string
		env   map[string]string
		want  tracing.Config
		isErr bool
	}{
		{"nothing set", nil, tracing.Config{}, false},
		{"endpoint", map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318"}, tracing.Config{On: true, Protocol: "http/protobuf"}, false},
		{"traces endpoint", map[string]string{"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://collector:4318/v1/traces"}, tracing.Config{On: true, Protocol: "http/protobuf"}, false},
		{"exporter otlp", map[string]string{"OTEL_TRACES_EXPORTER": "otlp"}, tracing.Config{On: true, Protocol: "http/protobuf"}, false},
		{"grpc", map[string]string{"OTEL_TRACES_EXPORTER": "otlp", "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc"}, tracing.Config{On: true, Protocol: "grpc"}, false},
		{"traces protocol first", map[string]string{"OTEL_TRACES_EXPORTER": "otlp", "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc", "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL": "http/protobuf"}, tracing.Config{On: true, Protocol: "http/protobuf"}, false},
		{"exporter none", map[string]string{"OTEL_TRACES_EXPORTER": "none", "OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318"}, tracing.Config{}, false},
		{"disabled", map[string]string{"OTEL_SDK_DISABLED": "true", "OTEL_TRACES_EXPORTER": "otlp"}, tracing.Config{}, false},
		{"disabled TRUE", map[string]string{"OTEL_SDK_DISABLED": "TRUE", "OTEL_TRACES_EXPORTER": "otlp"}, tracing.Config{}, false},
		{"not disabled", map[string]string{"OTEL_SDK_DISABLED": "false", "OTEL_TRACES_EXPORTER": "otlp"}, tracing.Config{On: true, Protocol: "http/protobuf"}, false},
		{"bad disabled", map[string]string{"OTEL_SDK_DISABLED": "yes"}, tracing.Config{}, true},
		{"other exporter", map[string]string{"OTEL_TRACES_EXPORTER": "zipkin"}, tracing.Config{}, true},
		{"bad protocol", map[string]string{"OTEL_TRACES_EXPORTER": "otlp", "OTEL_EXPORTER_OTLP_PROTOCOL": "http/json"}, tracing.Config{}, true},
		{"bad protocol off", map[string]string{"OTEL_EXPORTER_OTLP_PROTOCOL": "http/json"}, tracing.Config{}, false},
	} {
		t.Run(c.name, func(t *testing.T) {
			got, err := tracing.FromEnv(func(k string) string { return c.env[k] })
			if c.isErr {
				if !errors.Is(err, annals.ErrInvalidArgument) {
					t.Fatalf("got %+v, %v; want an error matching ErrInvalidArgument", got, err)
				}
				return
			}
			if err != nil || got != c.want {
				t.Fatalf("got %+v, %v; want %+v", got, err, c.want)
			}
		})
	}
}

// TestSetupOff: with tracing off, Setup leaves the global provider alone.
func TestSetupOff(t *testing.T) {
	t.Setenv("OTEL_SDK_DISABLED", "true")
	t.Setenv("OTEL_TRACES_EXPORTER", "otlp")
	before := otel.GetTracerProvider()
	shutdown, err := tracing.Setup(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if otel.GetTracerProvider() != before {
		t.Error("Setup with OTEL_SDK_DISABLED=true installed a TracerProvider")
	}
	if err := shutdown(t.Context()); err != nil {
		t.Error(err)
	}
	t.Setenv("OTEL_TRACES_EXPORTER", "zipkin")
	t.Setenv("OTEL_SDK_DISABLED", "")
	if _, err := tracing.Setup(t.Context()); !errors.Is(err, annals.ErrInvalidArgument) {
		t.Errorf("OTEL_TRACES_EXPORTER=zipkin: %v, want ErrInvalidArgument", err)
	}
}

// TestSetupExports: with an OTLP endpoint, Setup installs a provider whose spans reach the
// collector over OTLP/HTTP, with the service name of OTEL_SERVICE_NAME; shutdown flushes them.
func TestSetupExports(t *testing.T) {
	var mu sync.Mutex
	var bodies [][]byte
	collector := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		mu.Lock()
		if r.URL.Path == "/v1/traces" {
			bodies = append(bodies, b)
		}
		mu.Unlock()
		w.Header().Set("Content-Type", "application/x-protobuf")
	}))
	t.Cleanup(collector.Close)
	t.Setenv("OTEL_EXPORTER_OTLP_ENDPOINT", collector.URL)
	t.Setenv("OTEL_SERVICE_NAME", "annals-setup-test")
	shutdown, err := tracing.Setup(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	_, span := otel.Tracer("test").Start(context.Background(), "exported-span")
	span.End()
	if err := shutdown(t.Context()); err != nil {
		t.Fatal(err)
	}
	testwait.Until(t, "the collector to receive the span", func() bool {
		mu.Lock()
		defer mu.Unlock()
		for _, b := range bodies {
			if contains(b, "exported-span") && contains(b, "annals-setup-test") {
				return true
			}
		}
		return false
	})
}

func contains(b []byte, s string) bool { return bytes.Contains(b, []byte(s)) }
