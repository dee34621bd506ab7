package codec

import (
	"testing"

	"github.com/google/go-cmp/cmp"
)

// FuzzParseKnown checks that the fast path of ParseMetadata, wherever it accepts its input,
// gives what the general path gives.
func FuzzParseKnown(f *testing.F) {
	for _, s := range []string{
		`{}`, ` { } `, `{"$schemaVersion":2}`, `{"$schemaVersion":02}`, `{"$schemaVersion":1e3}`,
		`{"$schemaVersion":1,"$correlationId":"c","$causationId":"d","$idempotencyKey":"k"}`,
		`{"$correlationId":"é\u00e9"}`, `{"$correlationId":"a","$correlationId":"b"}`, `{"$CorrelationId":"x"}`,
		`{"$traceparent":"00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01","$tracestate":"a=b"}`,
		`{"$traceparent":1}`, `{"$traceparent":"a","$traceparent":"b"}`,
		"{\"$correlationId\":\"\xff\"}", `{"$correlationId":null}`, `{"x":1}`, `{"$schemaVersion":123456789012}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		fast, ok := parseKnown(b)
		if !ok {
			return
		}
		general, err := parseGeneral(b)
		if err != nil {
			t.Fatalf("parseKnown(%q) accepted what parseGeneral refuses: %v", b, err)
		}
		if diff := cmp.Diff(general, fast); diff != "" {
			t.Fatalf("parseKnown(%q) differs from parseGeneral (-general +fast):\n%s", b, diff)
		}
	})
}

func TestParseKnownAccepts(t *testing.T) {
	for _, s := range []string{`{}`, `{"$schemaVersion":3,"$correlationId":"c"}`, " {\n\"$idempotencyKey\" : \"k\" }\t", `{"$correlationId":"c","$traceparent":"00-x-y-01","$tracestate":"a=b"}`} {
		if _, ok := parseKnown([]byte(s)); !ok {
			t.Errorf("parseKnown(%q) falls back to the general path", s)
		}
	}
}
