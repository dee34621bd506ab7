package bridge

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
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
	subject, err := e.subject(ev)
	if err != nil {
		return Message{}, fmt.Errorf("encode event %s of stream %q: %w", ev.ID, ev.Stream, err)
	}
	var ctx eventContext
	if len(ev.Metadata) > 0 {
		ctx = readContext(ev.Metadata)
	}
	ct := ev.ContentType
	if ct == "" {
		ct = annals.ContentTypeJSON
	}
	// The key and the header values share one buffer, the headers one slice.
	size := 2*len(ev.Stream) + len(ev.Type) + len(ct) + ctx.size() + uuidLen + uintLen(ev.Revision) + uintLen(ev.Position) + timeLen
	nh := 0 // the most headers, the metadata's included
	if len(ev.Metadata) > 0 {
		nh = 1
	}
	switch e.Format {
	case FormatJSON:
		nh += 7 + ctx.count()
	case FormatCloudEvents:
		nh += 4
	case FormatCloudEventsBinary:
		size += len(e.Source) + len(DefaultSource) + len("1.0")
		nh += len(attributeNames) + 1
	}
	hb := newHeaderBuf(size, nh)
	hb.buf = append(hb.buf, ev.Stream...)
	m := Message{Subject: subject, Key: hb.buf[:len(ev.Stream):len(ev.Stream)], ID: ev.ID}
	switch e.Format {
	case FormatJSON:
		hb.addID(HeaderID, ev.ID)
		hb.add(HeaderType, ev.Type)
		hb.add(HeaderStream, ev.Stream)
		hb.addUint(HeaderRevision, ev.Revision)
		hb.addUint(HeaderPosition, ev.Position)
		hb.addTime(HeaderTime, ev.Time)
		hb.add(HeaderContentType, ct)
		hb.add(HeaderCorrelationID, ctx.correlationID)
		hb.add(HeaderCausationID, ctx.causationID)
		hb.add(HeaderTraceParent, ctx.traceParent)
		hb.add(HeaderTraceState, ctx.traceState)
		m.Value = ev.Data
	case FormatCloudEvents:
		hb.add(HeaderContentType, ContentTypeCloudEvents)
		hb.addID(HeaderID, ev.ID)
		hb.add(HeaderStream, ev.Stream)
		hb.addUint(HeaderPosition, ev.Position)
		m.Value = e.structured(ev, ct, ctx)
	case FormatCloudEventsBinary:
		e.binaryAttributes(&hb, ev, ctx)
		hb.add(HeaderContentType, ct)
		m.Value = ev.Data
	}
	switch {
	case len(ev.Metadata) == 0:
	case e.Bus == NATS && !natsHeaderSafe(ev.Metadata):
		hb.h = append(hb.h, Header{Key: HeaderMetadataBase64, Value: base64.StdEncoding.AppendEncode(nil, ev.Metadata)})
	default:
		hb.h = append(hb.h, Header{Key: HeaderMetadata, Value: ev.Metadata})
	}
	m.Headers = hb.h
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

// count is the number of c's values that are not empty.
func (c eventContext) count() int {
	n := 0
	for _, v := range [...]string{c.correlationID, c.causationID, c.traceParent, c.traceState} {
		if v != "" {
			n++
		}
	}
	return n
}

// source is the CloudEvents "source" attribute.
func (e *Encoder) source() string {
	if e.Source == "" {
		return DefaultSource
	}
	return e.Source
}

// Indexes in attributeNames.
const (
	attrID = iota + 1
	attrSource
	attrType
	attrSubject
	attrTime
	attrRevision
	attrPosition
	attrCorrelationID
	attrCausationID
	attrTraceParent
	attrTraceState
)

// binaryAttributes adds the attributes of ev as headers in binary mode, in the order of
// attributeNames; empty values are left out.
func (e *Encoder) binaryAttributes(hb *headerBuf, ev *annals.RecordedEvent, ctx eventContext) {
	names := &ceHeaders[e.Bus]
	hb.add(names[0], "1.0")
	hb.addID(names[attrID], ev.ID)
	hb.add(names[attrSource], e.source())
	hb.add(names[attrType], ev.Type)
	hb.add(names[attrSubject], ev.Stream)
	hb.addTime(names[attrTime], ev.Time)
	hb.addUint(names[attrRevision], ev.Revision)
	hb.addUint(names[attrPosition], ev.Position)
	hb.add(names[attrCorrelationID], ctx.correlationID)
	hb.add(names[attrCausationID], ctx.causationID)
	hb.add(names[attrTraceParent], ctx.traceParent)
	hb.add(names[attrTraceState], ctx.traceState)
}

// structured returns the CloudEvent of ev in the JSON event format: the attributes of
// attributeNames in that order (empty ones left out), then datacontenttype and the data. The
// data is inline when the content type is JSON and the data is valid JSON in UTF-8 (written as
// stored), else in data_base64; empty data is left out.
func (e *Encoder) structured(ev *annals.RecordedEvent, ct string, ctx eventContext) []byte {
	b := make([]byte, 0, 320+len(ev.Data)*4/3+len(ev.Stream)+len(ev.Type)+len(e.Source)+ctx.size())
	b = append(b, '{')
	field := func(name string) {
		if len(b) > 1 {
			b = append(b, ',')
		}
		b = append(b, '"')
		b = append(b, name...)
		b = append(b, '"', ':')
	}
	str := func(i int, v string) {
		if v != "" {
			field(attributeNames[i])
			b = appendJSONString(b, v)
		}
	}
	str(0, "1.0")
	field(attributeNames[attrID])
	b = append(b, '"')
	b, _ = ev.ID.AppendText(b) // never fails
	b = append(b, '"')
	str(attrSource, e.source())
	str(attrType, ev.Type)
	str(attrSubject, ev.Stream)
	if !ev.Time.IsZero() {
		field(attributeNames[attrTime])
		b = append(b, '"')
		b = appendTime(b, ev.Time)
		b = append(b, '"')
	}
	num := func(i int, v uint64) {
		field(attributeNames[i])
		b = append(b, '"')
		b = strconv.AppendUint(b, v, 10)
		b = append(b, '"')
	}
	num(attrRevision, ev.Revision)
	num(attrPosition, ev.Position)
	str(attrCorrelationID, ctx.correlationID)
	str(attrCausationID, ctx.causationID)
	str(attrTraceParent, ctx.traceParent)
	str(attrTraceState, ctx.traceState)
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
