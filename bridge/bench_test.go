package bridge

import "testing"

func BenchmarkEncode(b *testing.B) {
	ev := testEvent()
	for _, f := range []Format{FormatJSON, FormatCloudEvents, FormatCloudEventsBinary} {
		b.Run(f.String(), func(b *testing.B) {
			e := Encoder{Format: f, Subject: mustTemplate(b, "events.{category}"), Bus: Kafka}
			b.ReportAllocs()
			for b.Loop() {
				if _, err := e.Encode(ev); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func BenchmarkDecode(b *testing.B) {
	ev := testEvent()
	d := Decoder{Stream: mustTemplate(b, "{stream}")}
	for _, f := range []Format{FormatJSON, FormatCloudEvents, FormatCloudEventsBinary} {
		b.Run(f.String(), func(b *testing.B) {
			e := Encoder{Format: f, Subject: mustTemplate(b, "events.{category}"), Bus: Kafka}
			m, err := e.Encode(ev)
			if err != nil {
				b.Fatal(err)
			}
			in := &Incoming{Message: m, Source: "kafka:t/0"}
			b.ReportAllocs()
			for b.Loop() {
				if _, _, err := d.Decode(in); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
