package bridge

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/annalsdb/annals"
)

// HeaderNatsMsgID is JetStream's message id header, an id of last resort for Decode.
const HeaderNatsMsgID = "Nats-Msg-Id"

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

// Decode returns the stream and the event a message stands for; the event shares m's bytes.
// The format is recognised from the message: a CloudEvent in structured mode (content type
// application/cloudevents+json), in binary mode (a ce_specversion or ce-specversion header),
// in structured mode with no content-type header (a JSON object with a specversion member, as
// NATS's CloudEvents binding may send it), or else an event in FormatJSON (the Header*
// headers, or only Decoder.Type and the value).
//
// The event id is, in order: the annals-id header, the CloudEvents id, the Nats-Msg-Id header,
// when one of them is a UUID; else [DerivedID] of the first of them that is present (of the
// CloudEvents source and id, which CloudEvents makes unique only together); else
// [DerivedID](Source, Offset). So a message delivered again gets the same id, and two
// CloudEvents sources that number their events alike do not take each other's ids.
//
// The content type is the content-type header (the datacontenttype of a structured
// CloudEvent); the metadata is the annals-metadata header, or else, when the message carries a
// correlation id, a causation id or trace context (the Header* headers, the CloudEvents
// extensions), a JSON object of them in codec.Metadata's form.
//
// It returns an error matching [annals.ErrInvalidArgument] that names the message (source and
// offset) and what is wrong when the message cannot be an event: no type, a stream template
// that expands to an invalid stream id or a system ("$") stream, a malformed CloudEvent, an
// invalid event (annals.Event.Validate).
func (d *Decoder) Decode(m *Incoming) (stream string, ev annals.Event, err error) {
	fail := func(err error) (string, annals.Event, error) {
		return "", annals.Event{}, fmt.Errorf("decode message %s offset %d: %w", m.Source, m.Offset, err)
	}
	if d.Stream.IsZero() {
		return fail(fmt.Errorf("%w: no stream template", annals.ErrInvalidArgument))
	}
	p, err := parse(&m.Message)
	if err != nil {
		return fail(err)
	}
	if p.typ == "" && p.format == FormatJSON {
		p.typ = d.Type
	}
	if p.typ == "" {
		return fail(fmt.Errorf("%w: no event type (no %s header, and the decoder has no default type)", annals.ErrInvalidArgument, HeaderType))
	}
	ev = annals.Event{ID: incomingID(m, p), Type: p.typ, ContentType: p.contentType, Data: p.data, Metadata: p.metadata}
	stream = d.Stream.expand(placeholders{stream: p.stream, typ: p.typ, subject: m.Subject, key: string(m.Key)}.value, nil)
	if err := annals.ValidateUserStreamID(stream); err != nil {
		return fail(fmt.Errorf("stream template %q: %w", d.Stream.text, err))
	}
	if err := ev.Validate(); err != nil {
		return fail(err)
	}
	return stream, ev, nil
}

// incomingID returns the event id of m (see [Decoder.Decode]).
func incomingID(m *Incoming, p parsed) annals.UUID {
	var first []string
	ce := cloudEventID(p)
	for _, v := range [...]string{headerString(&m.Message, HeaderID), ce, headerString(&m.Message, HeaderNatsMsgID)} {
		if v == "" {
			continue
		}
		if u, err := annals.ParseUUID(v); err == nil && !u.IsZero() {
			return u
		}
		if first == nil {
			first = []string{v}
			if v == ce {
				first = []string{cloudEventsIDPart, p.ceSource, v}
			}
		}
	}
	if first != nil {
		return DerivedID(first...)
	}
	return DerivedID(m.Source, strconv.FormatUint(m.Offset, 10))
}

// cloudEventsIDPart starts the parts of the id derived from a CloudEvents source and id, to
// set them apart from an id derived from a header alone.
const cloudEventsIDPart = "cloudevents"

func headerString(m *Message, key string) string {
	v, _ := m.getString(key)
	return v
}

// cloudEventID is the id attribute of a CloudEvent, "" for a message in FormatJSON.
func cloudEventID(p parsed) string {
	if p.format == FormatJSON {
		return ""
	}
	return p.id
}

// DerivedID returns a UUID (version 8, from SHA-256) determined by parts, for messages whose
// id is not a UUID: the same parts always give the same id.
func DerivedID(parts ...string) annals.UUID {
	h := sha256.New()
	h.Write([]byte("annals bridge id\x00"))
	var n [binary.MaxVarintLen64]byte
	for _, p := range parts {
		h.Write(n[:binary.PutUvarint(n[:], uint64(len(p)))])
		h.Write([]byte(p))
	}
	var u annals.UUID
	copy(u[:], h.Sum(nil))
	u[6] = u[6]&0x0f | 0x80 // version 8
	u[8] = u[8]&0x3f | 0x80 // variant 10
	return u
}

// Recorded returns the recorded event a relay made m from, in any of the formats: what a
// consumer of the bus reads. Fields the message does not carry stay zero. It returns an error
// matching [annals.ErrInvalidArgument] when m holds no event id, type or stream, or a
// malformed CloudEvent or a revision, position or time that does not parse. The metadata is
// the one Decode gives; the event shares m's bytes. It is safe for concurrent use.
func Recorded(m *Message) (annals.RecordedEvent, error) {
	p, err := parse(m)
	if err != nil {
		return annals.RecordedEvent{}, fmt.Errorf("read message of %q: %w", m.Subject, err)
	}
	fail := func(format string, args ...any) (annals.RecordedEvent, error) {
		return annals.RecordedEvent{}, fmt.Errorf("read message of %q: %w: %s", m.Subject, annals.ErrInvalidArgument, fmt.Sprintf(format, args...))
	}
	switch {
	case p.id == "":
		return fail("no event id")
	case p.typ == "":
		return fail("no event type")
	case p.stream == "":
		return fail("no stream")
	}
	id, err := annals.ParseUUID(p.id)
	if err != nil {
		return fail("event id %q is not a UUID", p.id)
	}
	ev := annals.RecordedEvent{ID: id, Stream: p.stream, Type: p.typ, ContentType: p.contentType, Data: p.data, Metadata: p.metadata}
	for _, n := range [...]struct {
		what, v string
		to      *uint64
	}{{"revision", p.revision, &ev.Revision}, {"position", p.position, &ev.Position}} {
		if n.v == "" {
			continue
		}
		if *n.to, err = strconv.ParseUint(n.v, 10, 64); err != nil {
			return fail("%s %q is not a number", n.what, n.v)
		}
	}
	if p.time != "" {
		t, err := time.Parse(time.RFC3339Nano, p.time)
		if err != nil {
			return fail("time %q is not RFC 3339", p.time)
		}
		ev.Time = t.UTC()
	}
	return ev, nil
}

// EventID returns the event id a message of a relay carries, without reading the rest of it:
// the annals-id header, else the ce_id or ce-id header, else the id of a structured
// CloudEvent. It reports false when none of them is a non-zero UUID. It is what a consumer
// gives [Dedup.Seen].
func EventID(m *Message) (annals.UUID, bool) {
	for _, k := range [...]string{HeaderID, "ce_id", "ce-id"} {
		if v, ok := m.getString(k); ok {
			if u, err := annals.ParseUUID(v); err == nil && !u.IsZero() {
				return u, true
			}
		}
	}
	ct, hasCT := m.getString(HeaderContentType)
	mt, _, _ := strings.Cut(ct, ";")
	if strings.EqualFold(strings.TrimSpace(mt), ContentTypeCloudEvents) || !hasCT && looksStructured(m.Value) {
		var fields map[string]json.RawMessage
		var id string
		if json.Unmarshal(m.Value, &fields) == nil && json.Unmarshal(fields["id"], &id) == nil {
			if u, err := annals.ParseUUID(id); err == nil && !u.IsZero() {
				return u, true
			}
		}
	}
	return annals.UUID{}, false
}
