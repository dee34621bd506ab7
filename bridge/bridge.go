// Package bridge turns recorded events into messages for the buses other services run (Kafka,
// NATS JetStream) and messages from those buses back into events. It holds what the relay
// (package relay), the ingest (package ingest) and the broker adapters (packages kafkabus and
// natsbus) share: the [Message] they carry, the headers that describe an event, the payload
// formats ([FormatJSON] and CloudEvents 1.0 in structured and binary mode), the templates that
// name topics, subjects and streams, the event id a message without one gets, and a bounded
// [Dedup] set that consumers use to drop the duplicates an at-least-once bus delivers.
//
// It uses only the standard library and the annals package.
package bridge

import (
	"fmt"
	"strings"

	"github.com/annalsdb/annals"
)

// Header names of a message in [FormatJSON] (and, beside the CloudEvents attributes, in the
// CloudEvents formats). Values are UTF-8 text: ids in canonical UUID form, numbers in decimal,
// the time in RFC 3339 with nanoseconds.
const (
	HeaderID            = "annals-id"
	HeaderType          = "annals-type"
	HeaderStream        = "annals-stream"
	HeaderRevision      = "annals-revision"
	HeaderPosition      = "annals-position"
	HeaderTime          = "annals-time"
	HeaderContentType   = "content-type"
	HeaderCorrelationID = "annals-correlation-id"
	HeaderCausationID   = "annals-causation-id"
	// HeaderMetadata carries the event's metadata bytes as they are stored, when not empty.
	HeaderMetadata = "annals-metadata"
	// HeaderMetadataBase64 carries the metadata in standard base64 instead, for a message to
	// NATS whose metadata a NATS header cannot hold as it is (control characters such as a
	// line break, invalid UTF-8, a space or tab at either end).
	HeaderMetadataBase64 = "annals-metadata-base64"
	// HeaderTraceParent and HeaderTraceState carry the W3C trace context the event records
	// (codec.Metadata's $traceparent and $tracestate), so that consumers continue its trace.
	HeaderTraceParent = "traceparent"
	HeaderTraceState  = "tracestate"
)

// Header is one message header. A message may repeat a key; readers take the first.
type Header struct {
	Key   string
	Value []byte
}

// Message is one message on a bus, the same for every broker.
type Message struct {
	// Subject is the Kafka topic or the NATS subject.
	Subject string
	// Key is the Kafka record key: the stream id, so that one stream's events go to one
	// partition, in order. NATS has no key (the subject carries the stream).
	Key []byte
	// Headers describe the event (see the Header* names and the CloudEvents formats).
	Headers []Header
	// Value is the payload.
	Value []byte
	// ID is the event id: JetStream's Nats-Msg-Id, the id consumers drop duplicates by.
	ID annals.UUID
}

// Get returns the value of the first header named key (case-insensitive, as HTTP and
// CloudEvents' bindings compare them), and whether there is one.
func (m *Message) Get(key string) ([]byte, bool) {
	for _, h := range m.Headers {
		if strings.EqualFold(h.Key, key) {
			return h.Value, true
		}
	}
	return nil, false
}

// getString is Get as a string, "" when absent.
func (m *Message) getString(key string) (string, bool) {
	v, ok := m.Get(key)
	return string(v), ok
}

// Size is the bytes of m that count toward a relay's in-flight budget: subject, key, headers
// and value.
func (m *Message) Size() int {
	n := len(m.Subject) + len(m.Key) + len(m.Value)
	for _, h := range m.Headers {
		n += len(h.Key) + len(h.Value)
	}
	return n
}

// Format is how an event is put into a message.
type Format int

const (
	// FormatJSON sends the event's data as stored (whatever its content type) as the value,
	// and describes it in the Header* headers.
	FormatJSON Format = iota
	// FormatCloudEvents sends a CloudEvents 1.0 event in structured mode: the value is the JSON
	// envelope (content type application/cloudevents+json) with the attributes and the data
	// (inline when the event's content type is JSON, else base64 in data_base64).
	FormatCloudEvents
	// FormatCloudEventsBinary sends a CloudEvents 1.0 event in binary mode: the value is the
	// data as stored, the attributes are headers with the binding's prefix ("ce_" on Kafka,
	// "ce-" on NATS) and the content type is the content-type header.
	FormatCloudEventsBinary
)

// ParseFormat reads "json", "cloudevents" or "cloudevents-binary". Other values give an error
// matching [annals.ErrInvalidArgument] that lists them.
func ParseFormat(s string) (Format, error) {
	for f := FormatJSON; f <= FormatCloudEventsBinary; f++ {
		if s == f.String() {
			return f, nil
		}
	}
	return 0, fmt.Errorf("%w: unknown format %q (want json, cloudevents or cloudevents-binary)", annals.ErrInvalidArgument, s)
}

// String returns the form ParseFormat reads ("Format(n)" for an unknown one).
func (f Format) String() string {
	switch f {
	case FormatJSON:
		return "json"
	case FormatCloudEvents:
		return "cloudevents"
	case FormatCloudEventsBinary:
		return "cloudevents-binary"
	}
	return fmt.Sprintf("Format(%d)", int(f))
}
