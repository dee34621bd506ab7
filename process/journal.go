package process

import (
	"bytes"
	"encoding/json"
	"fmt"
	"time"

	"github.com/annalsdb/annals"
	"github.com/annalsdb/annals/codec"
)

// StepEventType is the type of the events of a journal: one per input handled.
const StepEventType = "ProcessStep"

// step is an input an instance handled and the changes it made to the instance's deadlines,
// in the order React returned them: a journal event, decoded.
type step struct {
	Input     input
	Deadlines []deadlineChange
}

// deadlineChange is one of Set and Cancel.
type deadlineChange struct {
	Set    *Deadline `json:"set,omitempty"`
	Cancel string    `json:"cancel,omitempty"`
}

// stepData is the data of a journal event. Exactly one of Event, Deadline and Refusal is set;
// or, in journals written before events were kept as [eventRecord]s, Input alone (the
// input with the whole event as read), which is still read.
type stepData struct {
	Event     *eventRecord     `json:"event,omitempty"`
	Deadline  *Deadline        `json:"deadline,omitempty"`
	Refusal   *Refusal         `json:"refusal,omitempty"`
	Input     *input           `json:"input,omitempty"`
	Deadlines []deadlineChange `json:"deadlines,omitempty"`
}

// eventRecord is what a journal keeps of an event of the log: what Evolve needs to fold it
// and the runner needs to resume (its id, place and time), but of its metadata only what the
// codec reads to decode it (the schema version) and what links it to its causes. The data is
// kept as JSON when it is JSON in the form encoding/json writes (so it reads back byte for
// byte), and as base64 in Bytes otherwise.
type eventRecord struct {
	ID            annals.UUID     `json:"id"`
	Stream        string          `json:"stream"`
	Revision      uint64          `json:"revision"`
	Position      uint64          `json:"position"`
	Type          string          `json:"type"`
	Time          time.Time       `json:"time"`
	ContentType   string          `json:"contentType,omitempty"`
	Data          json.RawMessage `json:"data,omitempty"`
	Bytes         []byte          `json:"bytes,omitempty"`
	SchemaVersion int             `json:"schemaVersion,omitempty"`
	CorrelationID string          `json:"correlationId,omitempty"`
	CausationID   string          `json:"causationId,omitempty"`
}

// recordEvent returns what the journal keeps of ev.
func recordEvent(ev *annals.RecordedEvent) *eventRecord {
	rec := &eventRecord{
		ID: ev.ID, Stream: ev.Stream, Revision: ev.Revision, Position: ev.Position,
		Type: ev.Type, Time: ev.Time, ContentType: ev.ContentType,
	}
	if len(ev.Data) > 0 {
		rec.Bytes = ev.Data
		if ev.ContentType == "" || ev.ContentType == annals.ContentTypeJSON {
			if b, err := json.Marshal(json.RawMessage(ev.Data)); err == nil && bytes.Equal(b, ev.Data) {
				rec.Data, rec.Bytes = ev.Data, nil
			}
		}
	}
	if md, err := codec.ParseMetadata(ev.Metadata); err == nil {
		rec.SchemaVersion, rec.CorrelationID, rec.CausationID = md.SchemaVersion, md.CorrelationID, md.CausationID
	}
	return rec
}

// event returns the event rec keeps: the event as read, with its metadata reduced to the
// schema version, correlation and causation ids (nil when it has none of them).
func (rec *eventRecord) event() (*annals.RecordedEvent, error) {
	ev := &annals.RecordedEvent{
		ID: rec.ID, Stream: rec.Stream, Revision: rec.Revision, Position: rec.Position,
		Type: rec.Type, Time: rec.Time, ContentType: rec.ContentType, Data: rec.Bytes,
	}
	if rec.Data != nil {
		if rec.Bytes != nil {
			return nil, fmt.Errorf("event %s holds both data and bytes", rec.ID)
		}
		ev.Data = rec.Data
	}
	if rec.SchemaVersion != 0 || rec.CorrelationID != "" || rec.CausationID != "" {
		md := codec.Metadata{SchemaVersion: rec.SchemaVersion, CorrelationID: rec.CorrelationID, CausationID: rec.CausationID}
		b, err := md.Marshal()
		if err != nil {
			return nil, fmt.Errorf("event %s: %w", rec.ID, err)
		}
		ev.Metadata = b
	}
	return ev, nil
}

// journaled returns in as the journal keeps it: what Evolve gets, live and on replay alike
// (the decoded event stays: the journal keeps the data and schema version it came from).
func journaled(in input) (input, error) {
	if in.Event == nil {
		return in, nil
	}
	ev, err := recordEvent(in.Event).event()
	if err != nil {
		return input{}, err
	}
	in.Event = ev
	return in, nil
}

// encodeStep returns the data of the journal event of st.
func encodeStep(st step) ([]byte, error) {
	d := stepData{Deadline: st.Input.Deadline, Refusal: st.Input.Refusal, Deadlines: st.Deadlines}
	if e := st.Input.Event; e != nil {
		d.Event = recordEvent(e)
	}
	return json.Marshal(d)
}

// decodeStep decodes a journal event, in either format. Errors match [ErrCorrupt].
func decodeStep(ev annals.RecordedEvent) (step, error) {
	corrupt := func(format string, args ...any) (step, error) {
		return step{}, fmt.Errorf("%w: %s@%d: %s", ErrCorrupt, ev.Stream, ev.Revision, fmt.Sprintf(format, args...))
	}
	if ev.Type != StepEventType {
		return corrupt("type %q, want %q", ev.Type, StepEventType)
	}
	var d stepData
	dec := json.NewDecoder(bytes.NewReader(ev.Data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&d); err != nil {
		return corrupt("%v", err)
	}
	if dec.More() {
		return corrupt("data after the step")
	}
	st := step{Deadlines: d.Deadlines}
	if d.Input != nil {
		if d.Event != nil || d.Deadline != nil || d.Refusal != nil {
			return corrupt("a step with both an input and an event, deadline or refusal")
		}
		st.Input = *d.Input
	} else {
		st.Input = input{Deadline: d.Deadline, Refusal: d.Refusal}
		if d.Event != nil {
			e, err := d.Event.event()
			if err != nil {
				return corrupt("%v", err)
			}
			st.Input.Event = e
		}
	}
	if n := btoi(st.Input.Event != nil) + btoi(st.Input.Deadline != nil) + btoi(st.Input.Refusal != nil); n != 1 {
		return corrupt("an input with %d parts", n)
	}
	return st, nil
}

func btoi(b bool) int {
	if b {
		return 1
	}
	return 0
}

// applyDeadlines calls fn for each change a step makes to the pending deadlines, in order: the
// deadline it fired goes, then those it set come and those it cancelled go, as React ordered.
func applyDeadlines(st step, fn func(name string, d Deadline, set bool)) {
	if d := st.Input.Deadline; d != nil {
		fn(d.Name, *d, false)
	}
	for _, c := range st.Deadlines {
		if c.Set != nil {
			fn(c.Set.Name, *c.Set, true)
		} else {
			fn(c.Cancel, Deadline{}, false)
		}
	}
}
