package bridge

import (
	"bytes"
	"encoding/json"
	"strings"
	"unicode"
	"unicode/utf8"
)

// The JSON field names of the metadata fields the bridge carries in headers: codec's
// FieldCorrelationID, FieldCausationID, FieldTraceParent and FieldTraceState (copied, since
// bridge uses only the standard library and annals; a test checks that they match).
const (
	fieldCorrelationID = "$correlationId"
	fieldCausationID   = "$causationId"
	fieldTraceParent   = "$traceparent"
	fieldTraceState    = "$tracestate"
)

// eventContext is what an event's metadata says about its conversation and trace.
type eventContext struct {
	correlationID, causationID, traceParent, traceState string
}

func (c eventContext) isZero() bool { return c == eventContext{} }

// size is the bytes of c's values.
func (c eventContext) size() int {
	return len(c.correlationID) + len(c.causationID) + len(c.traceParent) + len(c.traceState)
}

// readContext reads the context fields of JSON metadata in codec.Metadata's form: a JSON
// object whose fields are strings. Metadata that is not a JSON object, and fields that are not
// strings or hold control characters (which headers cannot carry), give nothing; of a field
// given twice the last counts, as in codec.
func readContext(metadata []byte) eventContext {
	var c eventContext
	if !bytes.Contains(metadata, []byte(`"$`)) && !bytes.Contains(metadata, []byte(`\u0024`)) || !json.Valid(metadata) {
		return c
	}
	b := metadata
	i := skipSpace(b, 0)
	if b[i] != '{' {
		return c
	}
	i = skipSpace(b, i+1)
	for i < len(b) && b[i] == '"' {
		kEnd := skipString(b, i)
		key := b[i:kEnd]
		i = skipSpace(b, kEnd)
		i = skipSpace(b, i+1) // the ':'
		vEnd := skipValue(b, i)
		name := key[1 : len(key)-1]
		if bytes.IndexByte(name, '\\') >= 0 {
			name = []byte(unquote(key))
		}
		var field *string
		switch string(name) {
		case fieldCorrelationID:
			field = &c.correlationID
		case fieldCausationID:
			field = &c.causationID
		case fieldTraceParent:
			field = &c.traceParent
		case fieldTraceState:
			field = &c.traceState
		}
		if field != nil {
			*field = ""
			if b[i] == '"' {
				*field = unquote(b[i:vEnd])
			}
		}
		i = skipSpace(b, vEnd)
		if i < len(b) && b[i] == ',' {
			i = skipSpace(b, i+1)
		}
	}
	for _, v := range [...]*string{&c.correlationID, &c.causationID, &c.traceParent, &c.traceState} {
		if strings.IndexFunc(*v, unicode.IsControl) >= 0 {
			*v = ""
		}
	}
	return c
}

// The scanners below read JSON that json.Valid accepted.

func skipSpace(b []byte, i int) int {
	for i < len(b) && (b[i] == ' ' || b[i] == '\t' || b[i] == '\n' || b[i] == '\r') {
		i++
	}
	return i
}

// skipString returns the index after the string that starts at b[i].
func skipString(b []byte, i int) int {
	for i++; i < len(b); i++ {
		switch b[i] {
		case '\\':
			i++
		case '"':
			return i + 1
		}
	}
	return i
}

// skipValue returns the index after the value that starts at b[i].
func skipValue(b []byte, i int) int {
	depth := 0
	for i < len(b) {
		switch c := b[i]; {
		case c == '"':
			i = skipString(b, i)
			if depth == 0 {
				return i
			}
			continue
		case c == '{' || c == '[':
			depth++
		case c == '}' || c == ']':
			if depth == 0 {
				return i
			}
			depth--
			if depth == 0 {
				return i + 1
			}
		case depth == 0 && (c == ',' || c == ' ' || c == '\t' || c == '\n' || c == '\r'):
			return i
		}
		i++
	}
	return i
}

// unquote returns the JSON string q (quotes included) as text.
func unquote(q []byte) string {
	if len(q) >= 2 && bytes.IndexByte(q, '\\') < 0 && utf8.Valid(q) {
		return string(q[1 : len(q)-1])
	}
	var s string
	_ = json.Unmarshal(q, &s) // q is a valid JSON string
	return s
}

// metadata returns c as a JSON object in codec.Metadata's form (the fields that are set, in
// codec's order), or nil when c is zero.
func (c eventContext) metadata() []byte {
	if c.isZero() {
		return nil
	}
	var b strings.Builder
	b.WriteByte('{')
	for _, f := range [...]struct{ name, v string }{
		{fieldCorrelationID, c.correlationID},
		{fieldCausationID, c.causationID},
		{fieldTraceParent, c.traceParent},
		{fieldTraceState, c.traceState},
	} {
		if f.v == "" {
			continue
		}
		if b.Len() > 1 {
			b.WriteByte(',')
		}
		q, _ := json.Marshal(f.name) // a string always marshals
		b.Write(q)
		b.WriteByte(':')
		q, _ = json.Marshal(f.v)
		b.Write(q)
	}
	b.WriteByte('}')
	return []byte(b.String())
}
