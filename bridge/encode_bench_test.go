package bridge

import "testing"

// BenchmarkEncodePlain encodes an event without metadata (what most relayed events are) to a
// topic named by a literal template, in FormatJSON, with Encode and the reference.
func BenchmarkEncodePlain(b *testing.B) {
	ev := testEvent()
	ev.Metadata = nil
	e := Encoder{Subject: mustTemplate(b, "events"), Bus: Kafka}
	for _, c := range []struct {
		name   string
		encode func(*Encoder) error
	}{
		{"encode", func(e *Encoder) error { _, err := e.Encode(ev); return err }},
		{"reference", func(e *Encoder) error { _, err := e.encodeReference(ev); return err }},
	} {
		b.Run(c.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if err := c.encode(&e); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
