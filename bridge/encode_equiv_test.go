package bridge

import (
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	"github.com/annalsdb/annals"
	"github.com/google/go-cmp/cmp"
)

// TestEncodeMatchesReference checks that Encode gives the messages encodeReference (a string
// per value) gives, for random events in every format, on both buses, through templates that
// need making safe and ones that do not.
func TestEncodeMatchesReference(t *testing.T) {
	seed := rand.Uint64()
	t.Logf("seed %d", seed)
	rng := rand.New(rand.NewPCG(seed, 0))
	pick := func(xs ...string) string { return xs[rng.IntN(len(xs))] }
	templates := []string{"events", "events.{category}", "{stream}", "{type}", "x.{stream}.{type}", "{category}-{type}"}
	for i := range 400 {
		var id annals.UUID
		for j := range id {
			id[j] = byte(rng.Uint32())
		}
		ev := &annals.RecordedEvent{
			ID:          id,
			Stream:      pick("cart-42", "order", "a b-c", "$all-ish", "x.y", "é-1", strings.Repeat("s", 300)+"-1", "."),
			Type:        pick("ItemAdded", "t", "with space", "ü"),
			ContentType: pick("", "application/json", "text/plain", "application/cloudevents+json; charset=utf-8"),
			Data:        []byte(pick("", `{"a":1}`, "not json", "\xff")),
			Metadata:    []byte(pick("", `{}`, `{"$correlationId":"c-1","$causationId":"d","$traceparent":"`+traceParent+`","$tracestate":"v=1"}`, `{"$correlationId":"a\nb"}`, "[1]", " x\x01")),
			Revision:    rng.Uint64() >> rng.IntN(64),
			Position:    rng.Uint64() >> rng.IntN(64),
		}
		if rng.IntN(4) > 0 {
			ev.Time = time.Unix(rng.Int64N(1<<34), rng.Int64N(1e9)).In(time.FixedZone("z", rng.IntN(3600)))
		}
		for _, bus := range []Bus{Kafka, NATS} {
			for _, f := range []Format{FormatJSON, FormatCloudEvents, FormatCloudEventsBinary} {
				e := Encoder{Format: f, Subject: mustTemplate(t, templates[rng.IntN(len(templates))]), Bus: bus, Source: pick("", "src")}
				if e.Validate() != nil {
					continue
				}
				got, gerr := e.Encode(ev)
				want, werr := e.encodeReference(ev)
				if (gerr == nil) != (werr == nil) || gerr != nil && gerr.Error() != werr.Error() {
					t.Fatalf("event %d %s %s %q: error %v, reference %v", i, bus, f, e.Subject, gerr, werr)
				}
				if diff := cmp.Diff(want, got); diff != "" {
					t.Fatalf("event %d %s %s %q: Encode differs from the reference (-want +got):\n%s", i, bus, f, e.Subject, diff)
				}
			}
		}
	}
}
