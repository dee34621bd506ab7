package bridge

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

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
	// Kafka: a topic holds letters, digits, ".", "_" and "-": every other byte of the
	// expanded topic (its literal text included) becomes "_", a topic of "." or ".." becomes
	// "_" or "__", and one longer than [MaxKafkaTopicLength] is cut and ends with "_" and 16
	// hexadecimal digits of its SHA-256, so that distinct long names stay distinct.
	// CloudEvents headers start with "ce_".
	Kafka Bus = iota
	// NATS: each value put into a subject becomes one token ("." "*" ">", white space and
	// control characters become "_", an empty value is "_"); the template's literal text is
	// kept as written, and must make a subject to publish to (see [Encoder.Validate]).
	// CloudEvents headers start with "ce-".
	NATS
)

// String returns "kafka" or "nats" ("Bus(n)" for an unknown one).
func (b Bus) String() string {
	switch b {
	case Kafka:
		return "kafka"
	case NATS:
		return "nats"
	}
	return fmt.Sprintf("Bus(%d)", int(b))
}

// ContentTypeCloudEvents is the content type of a CloudEvent in structured mode.
const ContentTypeCloudEvents = "application/cloudevents+json"

// relayFields are the placeholders of a subject template.
var relayFields = []string{fieldStream, fieldCategory, fieldType}

// Validate checks e: its Subject is set and uses only the relay side's placeholders (and, for
// NATS, its literal text makes a subject to publish to: no wildcard, white space or empty
// token), and its Format and Bus are known. It returns an error matching [annals.ErrInvalidArgument] naming
// what is wrong. Encode makes the same checks; Validate lets a relay refuse its options early.
func (e *Encoder) Validate() error {
	if err := e.Subject.checkFields("subject", relayFields...); err != nil {
		return err
	}
	if e.Format < FormatJSON || e.Format > FormatCloudEventsBinary {
		return fmt.Errorf("%w: unknown format %d", annals.ErrInvalidArgument, int(e.Format))
	}
	switch e.Bus {
	case Kafka:
	case NATS:
		return e.Subject.checkNATS()
	default:
		return fmt.Errorf("%w: unknown bus %d", annals.ErrInvalidArgument, int(e.Bus))
	}
	return nil
}

// Encode returns the message of ev. The message's Value (and, in FormatCloudEventsBinary and
// FormatJSON, its metadata header) shares ev's bytes.
//
// In FormatJSON the headers hold every Header* field that ev has: id, type, stream, revision,
// position, time (when not zero), content type (empty means [annals.ContentTypeJSON]),
// correlation and causation ids and trace context (read from JSON metadata in
// codec.Metadata's form; metadata that is not a JSON object simply has none), and the
// metadata itself when not empty.
//
// In FormatCloudEvents the value is the structured CloudEvent (see [Format]) with the
// attributes specversion, id, source, type, subject (the stream), time, datacontenttype and
// the extensions [ExtRevision] and [ExtPosition] (decimal strings: a CloudEvents integer has
// 32 bits) and, when the metadata has them, [ExtCorrelationID], [ExtCausationID],
// [ExtTraceParent] and [ExtTraceState]. The headers are content-type
// (application/cloudevents+json), and annals-id, annals-stream and annals-position so that a
// consumer drops duplicates or routes without parsing the value, and annals-metadata when the
// event has metadata.
//
// In FormatCloudEventsBinary the value is the data, the attributes and extensions above are
// headers with the bus's prefix ("ce_" or "ce-"), datacontenttype is the content-type
// header, and the metadata is in annals-metadata.
//
// On NATS, metadata that a header cannot hold as it is goes in annals-metadata-base64
// instead ([HeaderMetadataBase64]).
//
// It returns an error matching [annals.ErrInvalidArgument] when the subject template expands
// to an empty name, or e is not valid (see [Encoder.Validate]).
func (e *Encoder) Encode(ev *annals.RecordedEvent) (Message, error) {
	if err := e.Validate(); err != nil {
		return Message{}, fmt.Errorf("encode event %s: %w", ev.ID, err)
	}
	subject, err := e.Subject.subject(e.Bus, relayValue(ev))
	if err != nil {
		return Message{}, fmt.Errorf("encode event %s of stream %q: %w", ev.ID, ev.Stream, err)
	}
	m := Message{Subject: subject, Key: []byte(ev.Stream), ID: ev.ID}
	ctx := readContext(ev.Metadata)
	ct := ev.ContentType
	if ct == "" {
		ct = annals.ContentTypeJSON
	}
	var t string
	if !ev.Time.IsZero() {
		t = ev.Time.UTC().Format(time.RFC3339Nano)
	}
	// The header values share one buffer (a slice made before the buffer grows still holds
	// its bytes).
	buf := make([]byte, 0, 160+len(ev.Stream)+len(ev.Type)+len(ct)+ctx.size())
	h := make([]Header, 0, 14)
	addString := func(key, v string) {
		if v != "" {
			n := len(buf)
			buf = append(buf, v...)
			h = append(h, Header{Key: key, Value: buf[n:len(buf):len(buf)]})
		}
	}
	id := ev.ID.String()
	switch e.Format {
	case FormatJSON:
		addString(HeaderID, id)
		addString(HeaderType, ev.Type)
		addString(HeaderStream, ev.Stream)
		addString(HeaderRevision, strconv.FormatUint(ev.Revision, 10))
		addString(HeaderPosition, strconv.FormatUint(ev.Position, 10))
		addString(HeaderTime, t)
		addString(HeaderContentType, ct)
		addString(HeaderCorrelationID, ctx.correlationID)
		addString(HeaderCausationID, ctx.causationID)
		addString(HeaderTraceParent, ctx.traceParent)
		addString(HeaderTraceState, ctx.traceState)
		m.Value = ev.Data
	case FormatCloudEvents:
		addString(HeaderContentType, ContentTypeCloudEvents)
		addString(HeaderID, id)
		addString(HeaderStream, ev.Stream)
		addString(HeaderPosition, strconv.FormatUint(ev.Position, 10))
		m.Value = e.structured(ev, ct, t, ctx)
	case FormatCloudEventsBinary:
		names := &ceHeaders[e.Bus]
		for i, v := range e.attributes(ev, t, ctx) {
			addString(names[i], v)
		}
		addString(HeaderContentType, ct)
		m.Value = ev.Data
	}
	switch {
	case len(ev.Metadata) == 0:
	case e.Bus == NATS && !natsHeaderSafe(ev.Metadata):
		h = append(h, Header{Key: HeaderMetadataBase64, Value: base64.StdEncoding.AppendEncode(nil, ev.Metadata)})
	default:
		h = append(h, Header{Key: HeaderMetadata, Value: ev.Metadata})
	}
	m.Headers = h
	return m, nil
}

// natsHeaderSafe reports whether a NATS header carries v as it is: valid UTF-8 with no
// control characters (NATS headers are lines of text) and no space or tab at either end
// (which header parsing trims).
func natsHeaderSafe(v []byte) bool {
	if !utf8.Valid(v) || bytes.IndexFunc(v, unicode.IsControl) >= 0 {
		return false
	}
	return len(v) == 0 || v[0] != ' ' && v[0] != '\t' && v[len(v)-1] != ' ' && v[len(v)-1] != '\t'
}

// cePrefix is the prefix of CloudEvents attribute headers in binary mode on b.
func (b Bus) cePrefix() string {
	if b == NATS {
		return "ce-"
	}
	return "ce_"
}

type attribute struct{ name, v string }

// attributeNames are the CloudEvents attributes of an event but datacontenttype and data, in
// the order they are written; ceHeaders are their header names in binary mode on each Bus.
var (
	attributeNames = [...]string{"specversion", "id", "source", "type", "subject", "time",
		ExtRevision, ExtPosition, ExtCorrelationID, ExtCausationID, ExtTraceParent, ExtTraceState}
	ceHeaders = func() (h [2][len(attributeNames)]string) {
		for _, b := range []Bus{Kafka, NATS} {
			for i, n := range attributeNames {
				h[b][i] = b.cePrefix() + n
			}
		}
		return h
	}()
)

// attributes returns the values of the attributeNames of ev; empty values are left out by
// the writers.
func (e *Encoder) attributes(ev *annals.RecordedEvent, t string, ctx eventContext) [len(attributeNames)]string {
	source := e.Source
	if source == "" {
		source = DefaultSource
	}
	return [...]string{"1.0", ev.ID.String(), source, ev.Type, ev.Stream, t,
		strconv.FormatUint(ev.Revision, 10), strconv.FormatUint(ev.Position, 10),
		ctx.correlationID, ctx.causationID, ctx.traceParent, ctx.traceState}
}

// structured returns the CloudEvent of ev in the JSON event format. The data is inline when
// the content type is JSON and the data is valid JSON in UTF-8 (written as stored), else in
// data_base64; empty data is left out.
func (e *Encoder) structured(ev *annals.RecordedEvent, ct, t string, ctx eventContext) []byte {
	b := make([]byte, 0, 320+len(ev.Data)*4/3)
	b = append(b, '{')
	field := func(name string) {
		if len(b) > 1 {
			b = append(b, ',')
		}
		b = append(b, '"')
		b = append(b, name...)
		b = append(b, '"', ':')
	}
	for i, v := range e.attributes(ev, t, ctx) {
		if v != "" {
			field(attributeNames[i])
			b = appendJSONString(b, v)
		}
	}
	field("datacontenttype")
	b = appendJSONString(b, ct)
	if len(ev.Data) > 0 {
		if isJSON(ct) && utf8.Valid(ev.Data) && json.Valid(ev.Data) {
			field("data")
			b = append(b, ev.Data...)
		} else {
			field("data_base64")
			b = append(b, '"')
			b = base64.StdEncoding.AppendEncode(b, ev.Data)
			b = append(b, '"')
		}
	}
	return append(b, '}')
}

// isJSON reports whether content type ct (empty: JSON) says JSON: application/json or a
// +json suffix, in any case, with any parameters.
func isJSON(ct string) bool {
	if ct == "" {
		return true
	}
	mt, _, _ := strings.Cut(ct, ";")
	mt = strings.ToLower(strings.TrimSpace(mt))
	return mt == "application/json" || strings.HasSuffix(mt, "+json")
}

// appendJSONString appends s as a JSON string: quotes, backslashes and control characters
// escaped, invalid UTF-8 as U+FFFD.
func appendJSONString(b []byte, s string) []byte {
	const hexDigits = "0123456789abcdef"
	b = append(b, '"')
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			switch {
			case c == '"' || c == '\\':
				b = append(b, '\\', c)
			case c < 0x20:
				b = append(b, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xf])
			default:
				b = append(b, c)
			}
			i++
			continue
		}
		r, n := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && n == 1 {
			b = append(b, `\ufffd`...)
		} else {
			b = append(b, s[i:i+n]...)
		}
		i += n
	}
	return append(b, '"')
}
