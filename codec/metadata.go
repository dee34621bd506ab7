package codec

import (
	"bytes"
	"encoding/json"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/annalsdb/annals"
)

// The JSON field names of the known [Metadata] fields. They follow EventStoreDB's "$" convention
// for the fields the toolkit reads; every other top-level field is an extra field.
const (
	FieldSchemaVersion  = "$schemaVersion"
	FieldCorrelationID  = "$correlationId"
	FieldCausationID    = "$causationId"
	FieldIdempotencyKey = "$idempotencyKey"
	FieldTraceParent    = "$traceparent"
	FieldTraceState     = "$tracestate"
)

// Metadata is what the toolkit records about an event, carried as a JSON object in
// [annals.Event].Metadata:
//
//	{"$schemaVersion":2,"$correlationId":"…","$causationId":"…","$idempotencyKey":"…",
//	 "$traceparent":"00-…-…-01","tenant":"acme"}
//
// Zero fields are left out. Extra holds every other top-level field, as raw JSON.
type Metadata struct {
	// SchemaVersion is the schema version of the event's body; 0 (absent) means 1.
	SchemaVersion int
	// CorrelationID names the conversation (the first command and all that followed from it).
	CorrelationID string
	// CausationID is the id of the message (event or command) that caused this event.
	CausationID string
	// IdempotencyKey is the key of the command whose handling wrote the event (see the decider
	// package).
	IdempotencyKey string
	// TraceParent and TraceState are the W3C trace context (the traceparent and tracestate
	// headers' values) of the span that wrote the event, so that what reacts to the event
	// continues its trace. The codec does not check their format: a malformed value is
	// ignored by whoever reads it as trace context.
	TraceParent, TraceState string
	// Extra holds application fields. Its keys must not be one of the Field* names.
	Extra map[string]json.RawMessage
}

// Marshal returns m as a JSON object, the known fields first and then Extra in key order.
// It returns an error matching [ErrEncode] when an Extra key is one of the known field names or
// an Extra value is not valid JSON, or SchemaVersion is negative.
func (m Metadata) Marshal() ([]byte, error) {
	if m.SchemaVersion < 0 {
		return nil, fmt.Errorf("%w: metadata: negative schema version %d", ErrEncode, m.SchemaVersion)
	}
	b := make([]byte, 0, 128)
	b = append(b, '{')
	field := func(name string) {
		if len(b) > 1 {
			b = append(b, ',')
		}
		b = strconv.AppendQuote(b, name) // the Field* names are plain ASCII
		b = append(b, ':')
	}
	if m.SchemaVersion != 0 {
		field(FieldSchemaVersion)
		b = strconv.AppendInt(b, int64(m.SchemaVersion), 10)
	}
	for _, f := range [...]struct{ name, v string }{
		{FieldCorrelationID, m.CorrelationID},
		{FieldCausationID, m.CausationID},
		{FieldIdempotencyKey, m.IdempotencyKey},
		{FieldTraceParent, m.TraceParent},
		{FieldTraceState, m.TraceState},
	} {
		if f.v != "" {
			field(f.name)
			b = appendJSONString(b, f.v)
		}
	}
	if len(m.Extra) > 0 {
		keys := make([]string, 0, len(m.Extra))
		for k := range m.Extra {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		for _, k := range keys {
			if isKnownField(k) {
				return nil, fmt.Errorf("%w: metadata: extra field %q is reserved", ErrEncode, k)
			}
			v := m.Extra[k]
			if len(v) == 0 || !json.Valid(v) {
				return nil, fmt.Errorf("%w: metadata: extra field %q is not valid JSON", ErrEncode, k)
			}
			if len(b) > 1 {
				b = append(b, ',')
			}
			b = appendJSONString(b, k)
			b = append(b, ':')
			var c bytes.Buffer
			if err := json.Compact(&c, v); err != nil {
				return nil, fmt.Errorf("%w: metadata: extra field %q: %w", ErrEncode, k, err)
			}
			b = append(b, c.Bytes()...)
		}
	}
	return append(b, '}'), nil
}

func appendJSONString(b []byte, s string) []byte {
	q, err := json.Marshal(s) // cannot fail for a string; escapes as encoding/json does
	if err != nil {
		panic(fmt.Sprintf("codec: json.Marshal of a string: %v", err))
	}
	return append(b, q...)
}

func isKnownField(k string) bool {
	switch k {
	case FieldSchemaVersion, FieldCorrelationID, FieldCausationID, FieldIdempotencyKey, FieldTraceParent, FieldTraceState:
		return true
	}
	return false
}

// ParseMetadata reads the JSON object [Metadata.Marshal] writes. Empty input (no metadata) gives
// the zero Metadata. It returns an error matching [ErrDecode] when b is not a JSON object, or a
// known field has the wrong JSON type (the schema version must be a positive integer, the ids
// and the trace context strings). Unknown fields go to Extra, compacted.
func ParseMetadata(b []byte) (Metadata, error) {
	var m Metadata
	if len(bytes.TrimSpace(b)) == 0 {
		return m, nil
	}
	if m, ok := parseKnown(b); ok {
		return m, nil
	}
	return parseGeneral(b)
}

// parseGeneral is ParseMetadata for any input.
func parseGeneral(b []byte) (Metadata, error) {
	var m Metadata
	var fields map[string]json.RawMessage
	if err := json.Unmarshal(b, &fields); err != nil {
		return Metadata{}, fmt.Errorf("%w: metadata: %w", ErrDecode, err)
	}
	if fields == nil {
		return Metadata{}, fmt.Errorf("%w: metadata: not a JSON object", ErrDecode)
	}
	for k, v := range fields {
		var err error
		switch k {
		case FieldSchemaVersion:
			var n int
			if err = json.Unmarshal(v, &n); err == nil && n < 1 {
				err = fmt.Errorf("want a positive integer, got %s", v)
			}
			m.SchemaVersion = n
		case FieldCorrelationID:
			err = unmarshalString(v, &m.CorrelationID)
		case FieldCausationID:
			err = unmarshalString(v, &m.CausationID)
		case FieldIdempotencyKey:
			err = unmarshalString(v, &m.IdempotencyKey)
		case FieldTraceParent:
			err = unmarshalString(v, &m.TraceParent)
		case FieldTraceState:
			err = unmarshalString(v, &m.TraceState)
		default:
			if m.Extra == nil {
				m.Extra = make(map[string]json.RawMessage)
			}
			var c bytes.Buffer
			if err = json.Compact(&c, v); err == nil {
				m.Extra[k] = json.RawMessage(c.Bytes())
			}
		}
		if err != nil {
			return Metadata{}, fmt.Errorf("%w: metadata: field %q: %w", ErrDecode, k, err)
		}
	}
	return m, nil
}

// parseKnown is ParseMetadata's fast path for the metadata the toolkit writes: an object of
// known fields only, each once, with strings free of escapes and control characters and a
// schema version of plain digits. It reports false for anything else, which parseGeneral then
// decides; where it reports true, its result is the one parseGeneral gives (FuzzParseKnown
// checks it).
func parseKnown(b []byte) (Metadata, bool) {
	var m Metadata
	i := skipSpace(b, 0)
	if i == len(b) || b[i] != '{' {
		return m, false
	}
	i = skipSpace(b, i+1)
	if i < len(b) && b[i] == '}' {
		return m, skipSpace(b, i+1) == len(b)
	}
	var seen [6]bool
	for {
		key, j, ok := plainString(b, i)
		if !ok {
			return m, false
		}
		if i = skipSpace(b, j); i == len(b) || b[i] != ':' {
			return m, false
		}
		i = skipSpace(b, i+1)
		var field *string
		var n int
		switch key {
		case FieldSchemaVersion:
			n = 0
		case FieldCorrelationID:
			field, n = &m.CorrelationID, 1
		case FieldCausationID:
			field, n = &m.CausationID, 2
		case FieldIdempotencyKey:
			field, n = &m.IdempotencyKey, 3
		case FieldTraceParent:
			field, n = &m.TraceParent, 4
		case FieldTraceState:
			field, n = &m.TraceState, 5
		default:
			return m, false
		}
		if seen[n] {
			return m, false
		}
		seen[n] = true
		if field == nil {
			v := 0
			j = i
			for j < len(b) && b[j] >= '0' && b[j] <= '9' && j-i < 9 {
				v = v*10 + int(b[j]-'0')
				j++
			}
			if j == i || b[i] == '0' || (j < len(b) && (b[j] >= '0' && b[j] <= '9' || b[j] == '.' || b[j] == 'e' || b[j] == 'E')) {
				return m, false
			}
			m.SchemaVersion = v
		} else {
			var v string
			if v, j, ok = plainString(b, i); !ok {
				return m, false
			}
			*field = v
		}
		if i = skipSpace(b, j); i == len(b) {
			return m, false
		}
		switch b[i] {
		case ',':
			i = skipSpace(b, i+1)
		case '}':
			return m, skipSpace(b, i+1) == len(b)
		default:
			return m, false
		}
	}
}

// plainString reads the JSON string at b[i:] if it has no escapes, no control characters and
// only valid UTF-8, and returns it with the index after it.
func plainString(b []byte, i int) (string, int, bool) {
	if i == len(b) || b[i] != '"' {
		return "", i, false
	}
	for j := i + 1; j < len(b); j++ {
		switch c := b[j]; {
		case c == '"':
			s := b[i+1 : j]
			return string(s), j + 1, utf8.Valid(s)
		case c == '\\' || c < 0x20:
			return "", i, false
		}
	}
	return "", i, false
}

func skipSpace(b []byte, i int) int {
	for i < len(b) && (b[i] == ' ' || b[i] == '\t' || b[i] == '\n' || b[i] == '\r') {
		i++
	}
	return i
}

func unmarshalString(v json.RawMessage, s *string) error {
	if !strings.HasPrefix(string(v), `"`) {
		return fmt.Errorf("want a string, got %s", v)
	}
	return json.Unmarshal(v, s)
}

// CausedBy returns the metadata for what is sent in reaction to ev (a command, or the events it
// causes): ev's correlation id (ev's own id when it has none) and ev's id as the causation id.
// Metadata that does not parse counts as none. The other fields are left zero.
func CausedBy(ev annals.RecordedEvent) Metadata {
	id := ev.ID.String()
	md, err := ParseMetadata(ev.Metadata)
	if err != nil || md.CorrelationID == "" {
		md.CorrelationID = id
	}
	return Metadata{CorrelationID: md.CorrelationID, CausationID: id}
}
