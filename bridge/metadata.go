package bridge

import (
	"bytes"
	"encoding/json"
	"strings"
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

// readContext reads the context fields of JSON metadata in codec.Metadata's form: a JSON
// object whose fields are strings. Metadata that is not a JSON object, and fields that are not
// strings, give nothing.
func readContext(metadata []byte) eventContext {
	var c eventContext
	if !bytes.Contains(metadata, []byte(`"$`)) && !bytes.Contains(metadata, []byte(`\u0024`)) {
		return c
	}
	var fields map[string]json.RawMessage
	if json.Unmarshal(metadata, &fields) != nil {
		return c
	}
	for _, f := range [...]struct {
		name string
		v    *string
	}{
		{fieldCorrelationID, &c.correlationID},
		{fieldCausationID, &c.causationID},
		{fieldTraceParent, &c.traceParent},
		{fieldTraceState, &c.traceState},
	} {
		if raw, ok := fields[f.name]; ok {
			var s string
			if json.Unmarshal(raw, &s) == nil {
				*f.v = s
			}
		}
	}
	return c
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
