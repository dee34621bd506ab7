package bridge

import (
	"github.com/annalsdb/annals"
)

// Incoming is a message read from a bus, with where it was read.
type Incoming struct {
	Message
	// Source names the ordered sequence the message was read from: "kafka:<topic>/<partition>"
	// or "nats:<stream>". Offsets are ordered within a source.
	Source string
	// Offset is the Kafka offset or the JetStream stream sequence.
	Offset uint64
}

// Decoder turns incoming messages into events to append. A Decoder is safe for concurrent use
// once built.
type Decoder struct {
	// Stream names the stream each message is appended to (see [ParseTemplate]; the ingest
	// side's placeholders). Required.
	Stream Template
	// Type is the event type of a message that names none (no annals-type header, not a
	// CloudEvent); empty means such a message is refused.
	Type string
}

// Decode returns the stream and the event a message stands for. The format is recognised
// from the message: a CloudEvent in structured mode (content type
// application/cloudevents+json), in binary mode (a ce_specversion or ce-specversion header), or
// else an event in FormatJSON (the Header* headers, or only Decoder.Type and the value).
//
// The event id is, in order: the annals-id header, the CloudEvents id, the Nats-Msg-Id header,
// when one of them is a UUID; else [DerivedID] of the first of them that is present; else
// [DerivedID](Source, Offset). So a message delivered again gets the same id.
//
// It returns an error matching [annals.ErrInvalidArgument] that names the message (source and
// offset) and what is wrong when the message cannot be an event: no type, a stream template
// that expands to an invalid stream id, a malformed CloudEvent.
func (d *Decoder) Decode(m *Incoming) (stream string, ev annals.Event, err error) {
	panic("unimplemented")
}

// DerivedID returns a UUID (version 8, from SHA-256) determined by parts, for messages whose
// id is not a UUID: the same parts always give the same id.
func DerivedID(parts ...string) annals.UUID {
	panic("unimplemented")
}

// Recorded returns the recorded event a relay made m from, in any of the formats: what a
// consumer of the bus reads. Fields the message does not carry stay zero. It returns an error
// matching [annals.ErrInvalidArgument] when m holds no event id, type or stream, or a
// malformed CloudEvent.
func Recorded(m *Message) (annals.RecordedEvent, error) {
	panic("unimplemented")
}
