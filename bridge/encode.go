package bridge

import (
	"github.com/annalsdb/annals"
)

// CloudEvents extension attributes the encoders add (lower-case letters and digits only, as
// the specification requires). The stream is the standard "subject" attribute.
const (
	ExtRevision      = "annalsrevision"
	ExtPosition      = "annalsposition"
	ExtCorrelationID = "correlationid"
	ExtCausationID   = "causationid"
	ExtTraceParent   = "traceparent"
	ExtTraceState    = "tracestate"
)

// DefaultSource is the CloudEvents "source" attribute when [Encoder].Source is empty.
const DefaultSource = "annals"

// Encoder turns recorded events into messages. Its zero value is not usable: set Subject.
// An Encoder is safe for concurrent use once built.
type Encoder struct {
	// Format of the payload; the zero value is FormatJSON.
	Format Format
	// Subject names the topic or subject of each event (see [ParseTemplate]).
	Subject Template
	// Source is the CloudEvents "source" attribute; empty means [DefaultSource].
	Source string
	// Bus is the broker the messages are for.
	Bus Bus
}

// Bus is the kind of broker a message is for. It decides how the values put into a subject
// template are made safe, and the prefix of the CloudEvents attribute headers in binary mode
// (the brokers' CloudEvents protocol bindings).
type Bus int

const (
	// Kafka: a topic holds letters, digits, ".", "_" and "-" (up to 249 bytes; others become
	// "_"); CloudEvents headers start with "ce_".
	Kafka Bus = iota
	// NATS: each value put into a subject becomes one token ("." "*" ">" and white space
	// become "_"); CloudEvents headers start with "ce-".
	NATS
)

// Encode returns the message of ev. The headers hold every Header* field that ev has
// (correlation, causation and trace context are read from JSON metadata in codec.Metadata's
// form; metadata that is not a JSON object simply has none). It returns an error matching
// [annals.ErrInvalidArgument] only when the subject template expands to an empty name.
func (e *Encoder) Encode(ev *annals.RecordedEvent) (Message, error) {
	panic("unimplemented")
}
