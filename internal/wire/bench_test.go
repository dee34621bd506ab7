package wire

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/annalsdb/annals"
)

// benchBatch is a batch of 512 events of 200 bytes of data across 100 streams, as the client
// package's BenchmarkReadAll reads them.
func benchBatch() []annals.RecordedEvent {
	data := []byte(`{"payload":"` + strings.Repeat("x", 186) + `"}`)
	events := make([]annals.RecordedEvent, 512)
	for i := range events {
		events[i] = annals.RecordedEvent{
			ID: annals.NewUUID(), Stream: fmt.Sprintf("read-%d", i/10), Type: "BenchEvent", ContentType: annals.ContentTypeJSON,
			Data: data, Revision: uint64(i), Position: uint64(i + 1), Time: time.Now().UTC(),
		}
	}
	return events
}

func BenchmarkAppendEvents(b *testing.B) {
	events := benchBatch()
	var buf []byte
	for b.Loop() {
		buf = AppendEvents(buf[:0], 1, events)
	}
	b.SetBytes(int64(len(buf)))
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*len(events)), "ns/event")
}

func BenchmarkDecoder(b *testing.B) {
	events := benchBatch()
	buf := AppendEvents(nil, 1, events)
	dst := make([]annals.RecordedEvent, 0, len(events))
	for b.Loop() {
		var d Decoder
		var err error
		if dst, err = d.AppendEvents(dst[:0], buf, 1); err != nil {
			b.Fatal(err)
		}
	}
	b.SetBytes(int64(len(buf)))
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*len(events)), "ns/event")
}
