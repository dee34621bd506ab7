package bridge

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"strings"

	"github.com/annalsdb/annals"
)

// parsed is what a message says about its event, as text, whatever its format.
type parsed struct {
	format Format
	// id is the annals-id header or the CloudEvents id; stream the annals-stream header or
	// the CloudEvents subject.
	id, typ, stream string
	// ceSource is the CloudEvents source attribute ("" in FormatJSON): a CloudEvent is unique
	// by source and id together.
	ceSource string
	// contentType is the content-type header or the datacontenttype attribute ("" when absent).
	contentType        string
	revision, position string
	time               string
	data, metadata     []byte
	ctx                eventContext
}

// parse reads m in the format it is in (see [Decoder.Decode]). It returns an error matching
// annals.ErrInvalidArgument for a malformed CloudEvent.
func parse(m *Message) (parsed, error) {
	ct, hasCT := m.getString(HeaderContentType)
	mt, _, _ := strings.Cut(ct, ";")
	mt = strings.ToLower(strings.TrimSpace(mt))
	var p parsed
	var err error
	_, ceKafka := m.Get("ce_specversion")
	_, ceNATS := m.Get("ce-specversion")
	switch {
	case mt == ContentTypeCloudEvents:
		p, err = parseStructured(m.Value)
	case mt == "application/cloudevents-batch+json":
		return p, fmt.Errorf("%w: CloudEvents batches (%s) are not supported", annals.ErrInvalidArgument, ct)
	case ceKafka:
		p, err = parseBinary(m, "ce_")
	case ceNATS:
		p, err = parseBinary(m, "ce-")
	case !hasCT && looksStructured(m.Value):
		// NATS's CloudEvents binding may send a structured event with no headers at all.
		p, err = parseStructured(m.Value)
	default:
		p = parseJSON(m)
	}
	if err != nil {
		return p, err
	}
	if len(p.metadata) == 0 {
		if v, ok := m.Get(HeaderMetadata); ok && len(v) > 0 {
			p.metadata = v
		} else if v, ok := m.getString(HeaderMetadataBase64); ok && v != "" {
			b, err := base64.StdEncoding.DecodeString(v)
			if err != nil {
				return p, fmt.Errorf("%w: header %s: %w", annals.ErrInvalidArgument, HeaderMetadataBase64, err)
			}
			p.metadata = b
		} else {
			p.metadata = p.ctx.metadata()
		}
	}
	if p.stream == "" {
		p.stream, _ = m.getString(HeaderStream)
	}
	if p.id == "" {
		p.id, _ = m.getString(HeaderID)
	}
	return p, nil
}

// parseJSON reads a message in FormatJSON.
func parseJSON(m *Message) parsed {
	get := func(k string) string { v, _ := m.getString(k); return v }
	return parsed{
		format:      FormatJSON,
		id:          get(HeaderID),
		typ:         get(HeaderType),
		stream:      get(HeaderStream),
		contentType: get(HeaderContentType),
		revision:    get(HeaderRevision),
		position:    get(HeaderPosition),
		time:        get(HeaderTime),
		data:        m.Value,
		ctx: eventContext{
			correlationID: get(HeaderCorrelationID),
			causationID:   get(HeaderCausationID),
			traceParent:   get(HeaderTraceParent),
			traceState:    get(HeaderTraceState),
		},
	}
}

// parseBinary reads a CloudEvent in binary mode whose attribute headers start with prefix.
func parseBinary(m *Message, prefix string) (parsed, error) {
	get := func(k string) string { v, _ := m.getString(prefix + k); return v }
	p := parsed{
		format:      FormatCloudEventsBinary,
		id:          get("id"),
		typ:         get("type"),
		stream:      get("subject"),
		contentType: get("datacontenttype"),
		revision:    get(ExtRevision),
		position:    get(ExtPosition),
		time:        get("time"),
		data:        m.Value,
		ctx: eventContext{
			correlationID: get(ExtCorrelationID),
			causationID:   get(ExtCausationID),
			traceParent:   get(ExtTraceParent),
			traceState:    get(ExtTraceState),
		},
	}
	if ct, ok := m.getString(HeaderContentType); ok {
		p.contentType = ct
	}
	p.ceSource = get("source")
	if err := checkRequired(get("specversion"), p.id, p.ceSource, p.typ); err != nil {
		return p, fmt.Errorf("CloudEvent in binary mode (%s headers): %w", prefix, err)
	}
	return p, nil
}

// checkRequired checks the required CloudEvents attributes.
func checkRequired(specversion, id, source, typ string) error {
	if specversion != "1.0" {
		return fmt.Errorf("%w: specversion %q is not 1.0", annals.ErrInvalidArgument, specversion)
	}
	for _, a := range [...]attribute{{"id", id}, {"source", source}, {"type", typ}} {
		if a.v == "" {
			return fmt.Errorf("%w: no %s attribute", annals.ErrInvalidArgument, a.name)
		}
	}
	return nil
}

// parseStructured reads a CloudEvent in the JSON event format.
func parseStructured(value []byte) (parsed, error) {
	p := parsed{format: FormatCloudEvents}
	wrap := func(err error) error { return fmt.Errorf("CloudEvent in structured mode: %w", err) }
	var fields map[string]json.RawMessage
	if err := json.Unmarshal(value, &fields); err != nil || fields == nil {
		return p, wrap(fmt.Errorf("%w: the value is not a JSON object", annals.ErrInvalidArgument))
	}
	var specversion, source string
	for _, a := range [...]struct {
		name string
		v    *string
	}{
		{"specversion", &specversion},
		{"id", &p.id},
		{"source", &source},
		{"type", &p.typ},
		{"subject", &p.stream},
		{"time", &p.time},
		{"datacontenttype", &p.contentType},
		{ExtCorrelationID, &p.ctx.correlationID},
		{ExtCausationID, &p.ctx.causationID},
		{ExtTraceParent, &p.ctx.traceParent},
		{ExtTraceState, &p.ctx.traceState},
	} {
		raw, ok := fields[a.name]
		if !ok || string(raw) == "null" {
			continue
		}
		if err := json.Unmarshal(raw, a.v); err != nil {
			return p, wrap(fmt.Errorf("%w: attribute %s is %s, not a string", annals.ErrInvalidArgument, a.name, raw))
		}
	}
	for _, a := range [...]struct {
		name string
		v    *string
	}{{ExtRevision, &p.revision}, {ExtPosition, &p.position}} {
		raw, ok := fields[a.name]
		if !ok || string(raw) == "null" {
			continue
		}
		if len(raw) > 0 && raw[0] >= '0' && raw[0] <= '9' { // an integer, as a CloudEvents integer
			*a.v = string(raw)
		} else if err := json.Unmarshal(raw, a.v); err != nil {
			return p, wrap(fmt.Errorf("%w: extension %s is %s, not a string or an integer", annals.ErrInvalidArgument, a.name, raw))
		}
	}
	if err := checkRequired(specversion, p.id, source, p.typ); err != nil {
		return p, wrap(err)
	}
	p.ceSource = source
	data, hasData := fields["data"]
	b64, hasB64 := fields["data_base64"]
	if hasData && string(data) == "null" {
		hasData = false
	}
	if hasB64 && string(b64) == "null" {
		hasB64 = false
	}
	switch {
	case hasData && hasB64:
		return p, wrap(fmt.Errorf("%w: both data and data_base64", annals.ErrInvalidArgument))
	case hasB64:
		var s string
		if err := json.Unmarshal(b64, &s); err != nil {
			return p, wrap(fmt.Errorf("%w: data_base64 is not a string", annals.ErrInvalidArgument))
		}
		b, err := base64.StdEncoding.DecodeString(s)
		if err != nil {
			return p, wrap(fmt.Errorf("%w: data_base64: %w", annals.ErrInvalidArgument, err))
		}
		p.data = b
	case hasData && !isJSON(p.contentType) && data[0] == '"':
		// Text data of a non-JSON content type is a JSON string.
		var s string
		if err := json.Unmarshal(data, &s); err != nil {
			return p, wrap(fmt.Errorf("%w: data: %w", annals.ErrInvalidArgument, err))
		}
		p.data = []byte(s)
	case hasData:
		p.data = data
	}
	return p, nil
}

// looksStructured reports whether value is a JSON object with a top-level "specversion"
// member: a CloudEvent in structured mode sent with no content type.
func looksStructured(value []byte) bool {
	i := skipSpace(value, 0)
	if i == len(value) || value[i] != '{' || !bytes.Contains(value, []byte(`"specversion"`)) {
		return false
	}
	var fields map[string]json.RawMessage
	if json.Unmarshal(value, &fields) != nil {
		return false
	}
	_, ok := fields["specversion"]
	return ok
}
