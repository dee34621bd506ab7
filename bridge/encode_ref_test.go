package bridge

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"strconv"
	"time"
	"unicode/utf8"

	"github.com/annalsdb/annals"
)

// encodeReference is Encode written plainly (a string per value); the tests check that Encode
// gives the same messages.
func (e *Encoder) encodeReference(ev *annals.RecordedEvent) (Message, error) {
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
		m.Value = e.structuredReference(ev, ct, t, ctx)
	case FormatCloudEventsBinary:
		names := &ceHeaders[e.Bus]
		for i, v := range e.attributesReference(ev, t, ctx) {
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

// attributes returns the values of the attributeNames of ev; empty values are left out by
// the writers.
func (e *Encoder) attributesReference(ev *annals.RecordedEvent, t string, ctx eventContext) [len(attributeNames)]string {
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
func (e *Encoder) structuredReference(ev *annals.RecordedEvent, ct, t string, ctx eventContext) []byte {
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
	for i, v := range e.attributesReference(ev, t, ctx) {
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
