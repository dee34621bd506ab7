package bridge

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/annalsdb/annals"
	"github.com/annalsdb/annals/codec"
	"github.com/google/go-cmp/cmp"
)

// TestMetadataFieldsMatchCodec checks the copies of codec's field names.
func TestMetadataFieldsMatchCodec(t *testing.T) {
	for _, f := range []struct{ ours, codecs string }{
		{fieldCorrelationID, codec.FieldCorrelationID},
		{fieldCausationID, codec.FieldCausationID},
		{fieldTraceParent, codec.FieldTraceParent},
		{fieldTraceState, codec.FieldTraceState},
	} {
		if f.ours != f.codecs {
			t.Errorf("bridge field %q, codec's %q", f.ours, f.codecs)
		}
	}
	b, err := codec.Metadata{CorrelationID: "c", CausationID: "d", TraceParent: "tp", TraceState: "ts"}.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	want := eventContext{correlationID: "c", causationID: "d", traceParent: "tp", traceState: "ts"}
	if got := readContext(b); got != want {
		t.Errorf("readContext(%s) = %+v, want %+v", b, got, want)
	}
	if got := want.metadata(); string(got) != string(b) {
		t.Errorf("metadata() = %s, codec writes %s", got, b)
	}
}

const traceParent = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"

func testEvent() *annals.RecordedEvent {
	id, _ := annals.ParseUUID("0190f2b4-5c1e-7a3b-9d2e-4f5a6b7c8d9e")
	return &annals.RecordedEvent{
		ID:          id,
		Stream:      "cart-42",
		Type:        "ItemAdded",
		ContentType: "application/json",
		Data:        []byte(`{"sku":"A-1","qty":2}`),
		Metadata:    []byte(`{"$correlationId":"corr-1","$causationId":"cause-1","$traceparent":"` + traceParent + `","$tracestate":"v=1","tenant":"acme"}`),
		Revision:    7,
		Position:    1 << 40,
		Time:        time.Date(2026, 12, 4, 17, 0, 0, 123456789, time.UTC),
	}
}

func headerMap(t *testing.T, m *Message) map[string]string {
	t.Helper()
	h := make(map[string]string)
	for _, x := range m.Headers {
		if _, dup := h[x.Key]; dup {
			t.Errorf("header %q twice", x.Key)
		}
		h[x.Key] = string(x.Value)
	}
	return h
}

func TestEncodeJSON(t *testing.T) {
	ev := testEvent()
	e := Encoder{Subject: mustTemplate(t, "events.{category}")}
	m, err := e.Encode(ev)
	if err != nil {
		t.Fatal(err)
	}
	if m.Subject != "events.cart" || string(m.Key) != "cart-42" || m.ID != ev.ID || string(m.Value) != string(ev.Data) {
		t.Errorf("message = %q key %q id %v value %s", m.Subject, m.Key, m.ID, m.Value)
	}
	want := map[string]string{
		HeaderID:            "0190f2b4-5c1e-7a3b-9d2e-4f5a6b7c8d9e",
		HeaderType:          "ItemAdded",
		HeaderStream:        "cart-42",
		HeaderRevision:      "7",
		HeaderPosition:      "1099511627776",
		HeaderTime:          "2026-12-04T17:00:00.123456789Z",
		HeaderContentType:   "application/json",
		HeaderCorrelationID: "corr-1",
		HeaderCausationID:   "cause-1",
		HeaderTraceParent:   traceParent,
		HeaderTraceState:    "v=1",
		HeaderMetadata:      string(ev.Metadata),
	}
	if diff := cmp.Diff(want, headerMap(t, &m)); diff != "" {
		t.Errorf("headers (-want +got):\n%s", diff)
	}

	// An event with no content type, metadata or time has only the headers it has.
	bare := &annals.RecordedEvent{ID: ev.ID, Stream: "s", Type: "T", Data: []byte("x")}
	m, err = e.Encode(bare)
	if err != nil {
		t.Fatal(err)
	}
	want = map[string]string{
		HeaderID: ev.ID.String(), HeaderType: "T", HeaderStream: "s", HeaderRevision: "0", HeaderPosition: "0",
		HeaderContentType: annals.ContentTypeJSON,
	}
	if diff := cmp.Diff(want, headerMap(t, &m)); diff != "" {
		t.Errorf("headers of a bare event (-want +got):\n%s", diff)
	}

	// Metadata that is not a JSON object, or whose fields are not strings, has no context.
	for _, md := range []string{`not json`, `[1]`, `{"$correlationId":7,"$CausationId":"x"}`, `"$correlationId"`, `{"$correlationId":"a\nb","$causationId":"\u0000"}`} {
		bare.Metadata = []byte(md)
		m, err = e.Encode(bare)
		if err != nil {
			t.Fatal(err)
		}
		h := headerMap(t, &m)
		if h[HeaderMetadata] != md || h[HeaderCorrelationID] != "" || h[HeaderCausationID] != "" {
			t.Errorf("metadata %s: headers %v", md, h)
		}
	}
}

func TestEncodeCloudEventsStructured(t *testing.T) {
	ev := testEvent()
	e := Encoder{Format: FormatCloudEvents, Subject: mustTemplate(t, "events.{category}.{stream}"), Bus: NATS, Source: "urn:annals:test"}
	m, err := e.Encode(ev)
	if err != nil {
		t.Fatal(err)
	}
	if m.Subject != "events.cart.cart-42" {
		t.Errorf("subject %q", m.Subject)
	}
	wantHeaders := map[string]string{
		HeaderContentType: "application/cloudevents+json",
		HeaderID:          ev.ID.String(),
		HeaderStream:      "cart-42",
		HeaderPosition:    "1099511627776",
		HeaderMetadata:    string(ev.Metadata),
	}
	if diff := cmp.Diff(wantHeaders, headerMap(t, &m)); diff != "" {
		t.Errorf("headers (-want +got):\n%s", diff)
	}
	var got map[string]any
	if err := json.Unmarshal(m.Value, &got); err != nil {
		t.Fatalf("value %s: %v", m.Value, err)
	}
	want := map[string]any{
		// Required attributes (CloudEvents 1.0 §3.1).
		"specversion": "1.0",
		"id":          ev.ID.String(),
		"source":      "urn:annals:test",
		"type":        "ItemAdded",
		// Optional ones.
		"subject":         "cart-42",
		"time":            "2026-12-04T17:00:00.123456789Z",
		"datacontenttype": "application/json",
		// JSON data is inline (JSON event format §3.1).
		"data": map[string]any{"sku": "A-1", "qty": float64(2)},
		// Extensions: strings, since a CloudEvents integer has 32 bits.
		"annalsrevision": "7",
		"annalsposition": "1099511627776",
		"correlationid":  "corr-1",
		"causationid":    "cause-1",
		"traceparent":    traceParent,
		"tracestate":     "v=1",
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("CloudEvent (-want +got):\n%s", diff)
	}
	for k := range got {
		if k != "data_base64" && !isAttributeName(k) && k != "data" {
			t.Errorf("attribute name %q is not lower-case letters and digits", k)
		}
	}

	// Data that is not JSON, or not valid JSON, is in data_base64; empty data is left out.
	for _, tc := range []struct {
		ct, data string
		wantKey  string
	}{
		{"application/octet-stream", "\x00\x01binary", "data_base64"},
		{"text/plain", "hello", "data_base64"},
		{"application/json", "{not json", "data_base64"},
		{"application/json", "\"\xff\"", "data_base64"},
		{"application/vnd.x+json; charset=utf-8", `[1,2]`, "data"},
		{"Application/JSON", `true`, "data"},
		{"", `{"a":1}`, "data"},
		{"application/json", "", ""},
	} {
		ev := *ev
		ev.ContentType, ev.Data, ev.Metadata = tc.ct, []byte(tc.data), nil
		m, err := e.Encode(&ev)
		if err != nil {
			t.Fatal(err)
		}
		var got map[string]json.RawMessage
		if err := json.Unmarshal(m.Value, &got); err != nil {
			t.Fatalf("value %s: %v", m.Value, err)
		}
		_, hasData := got["data"]
		_, hasB64 := got["data_base64"]
		switch tc.wantKey {
		case "data":
			if !hasData || hasB64 || string(got["data"]) != tc.data {
				t.Errorf("%q %q: value %s, want data inline", tc.ct, tc.data, m.Value)
			}
		case "data_base64":
			var s string
			_ = json.Unmarshal(got["data_base64"], &s)
			if hasData || !hasB64 || s != base64.StdEncoding.EncodeToString([]byte(tc.data)) {
				t.Errorf("%q %q: value %s, want data_base64", tc.ct, tc.data, m.Value)
			}
		default:
			if hasData || hasB64 {
				t.Errorf("%q %q: value %s, want no data", tc.ct, tc.data, m.Value)
			}
		}
		wantCT := tc.ct
		if wantCT == "" {
			wantCT = annals.ContentTypeJSON
		}
		if string(got["datacontenttype"]) != fmt.Sprintf("%q", wantCT) {
			t.Errorf("datacontenttype %s, want %q", got["datacontenttype"], wantCT)
		}
		if _, ok := got["correlationid"]; ok {
			t.Errorf("an event without metadata has correlationid: %s", m.Value)
		}
	}
}

func isAttributeName(s string) bool {
	for _, c := range s {
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9') {
			return false
		}
	}
	return s != "" && len(s) <= 20
}

func TestEncodeCloudEventsBinary(t *testing.T) {
	ev := testEvent()
	for _, tc := range []struct {
		bus    Bus
		prefix string
	}{{Kafka, "ce_"}, {NATS, "ce-"}} {
		e := Encoder{Format: FormatCloudEventsBinary, Subject: mustTemplate(t, "events"), Bus: tc.bus}
		m, err := e.Encode(ev)
		if err != nil {
			t.Fatal(err)
		}
		p := tc.prefix
		want := map[string]string{
			p + "specversion":    "1.0",
			p + "id":             ev.ID.String(),
			p + "source":         DefaultSource,
			p + "type":           "ItemAdded",
			p + "subject":        "cart-42",
			p + "time":           "2026-12-04T17:00:00.123456789Z",
			p + "annalsrevision": "7",
			p + "annalsposition": "1099511627776",
			p + "correlationid":  "corr-1",
			p + "causationid":    "cause-1",
			p + "traceparent":    traceParent,
			p + "tracestate":     "v=1",
			"content-type":       "application/json",
			HeaderMetadata:       string(ev.Metadata),
		}
		if diff := cmp.Diff(want, headerMap(t, &m)); diff != "" {
			t.Errorf("%v headers (-want +got):\n%s", tc.bus, diff)
		}
		if string(m.Value) != string(ev.Data) {
			t.Errorf("%v value %s, want the data", tc.bus, m.Value)
		}
	}
}

// TestRoundTrip encodes events in every format for every bus and reads them back with
// Recorded (what a consumer of the bus sees) and Decode (what the ingest appends).
func TestRoundTrip(t *testing.T) {
	events := []*annals.RecordedEvent{testEvent()}
	bin := *testEvent()
	bin.ContentType, bin.Data, bin.Metadata = "application/octet-stream", []byte("\x00\xff\x10 bytes"), []byte("\x01binary metadata")
	events = append(events, &bin)
	text := *testEvent()
	text.ContentType, text.Data, text.Metadata = "text/plain; charset=utf-8", []byte("héllo \"world\"\n"), nil
	events = append(events, &text)
	empty := *testEvent()
	empty.Data, empty.Metadata, empty.Time, empty.Revision, empty.Position = nil, nil, time.Time{}, 0, 0
	events = append(events, &empty)
	odd := *testEvent()
	odd.Stream, odd.Type = `weird "stream"\é`, "type with \\ and \u2028"
	events = append(events, &odd)

	pretty := *testEvent()
	pretty.Metadata = []byte("{\n  \"$correlationId\": \"c\\n1\",\n  \"x\": 1\n}\n")
	events = append(events, &pretty)

	dec := Decoder{Stream: mustTemplate(t, "{stream}")}
	for _, f := range []Format{FormatJSON, FormatCloudEvents, FormatCloudEventsBinary} {
		for _, bus := range []Bus{Kafka, NATS} {
			e := Encoder{Format: f, Subject: mustTemplate(t, "events.{category}"), Bus: bus}
			for _, ev := range events {
				m, err := e.Encode(ev)
				if err != nil {
					t.Fatal(err)
				}
				if bus == NATS {
					for _, h := range m.Headers {
						if !natsHeaderSafe(h.Value) {
							t.Errorf("%v %v: header %s %q cannot be a NATS header", f, bus, h.Key, h.Value)
						}
					}
				}
				got, err := Recorded(&m)
				if err != nil {
					t.Errorf("%v %v %s: Recorded: %v", f, bus, ev.Type, err)
					continue
				}
				if diff := cmp.Diff(*ev, got, cmp.Comparer(bytesEqual)); diff != "" {
					t.Errorf("%v %v: Recorded (-want +got):\n%s", f, bus, diff)
				}
				stream, dev, err := dec.Decode(&Incoming{Message: m, Source: "test", Offset: 1})
				if err != nil {
					t.Errorf("%v %v %s: Decode: %v", f, bus, ev.Type, err)
					continue
				}
				want := annals.Event{ID: ev.ID, Type: ev.Type, ContentType: ev.ContentType, Data: ev.Data, Metadata: ev.Metadata}
				if stream != ev.Stream {
					t.Errorf("%v %v: Decode stream %q, want %q", f, bus, stream, ev.Stream)
				}
				if diff := cmp.Diff(want, dev, cmp.Comparer(bytesEqual)); diff != "" {
					t.Errorf("%v %v: Decode (-want +got):\n%s", f, bus, diff)
				}
			}
		}
	}
}

// bytesEqual compares byte slices, nil equal to empty.
func bytesEqual(a, b []byte) bool { return string(a) == string(b) }

func TestMessageGetSize(t *testing.T) {
	m := Message{Subject: "sub", Key: []byte("key"), Value: []byte("value"), Headers: []Header{
		{Key: "Content-Type", Value: []byte("a")}, {Key: "content-type", Value: []byte("b")}, {Key: "x", Value: nil},
	}}
	if v, ok := m.Get("CONTENT-TYPE"); !ok || string(v) != "a" {
		t.Errorf("Get(CONTENT-TYPE) = %q, %v; want the first, a", v, ok)
	}
	if _, ok := m.Get("x"); !ok {
		t.Error("Get(x) of an empty header: not found")
	}
	if _, ok := m.Get("y"); ok {
		t.Error("Get(y) found")
	}
	if got, want := m.Size(), len("sub")+len("key")+len("value")+len("Content-Type")+1+len("content-type")+1+1; got != want {
		t.Errorf("Size() = %d, want %d", got, want)
	}
}

func TestParseFormat(t *testing.T) {
	for _, f := range []Format{FormatJSON, FormatCloudEvents, FormatCloudEventsBinary} {
		got, err := ParseFormat(f.String())
		if err != nil || got != f {
			t.Errorf("ParseFormat(%q) = %v, %v", f.String(), got, err)
		}
	}
	for _, s := range []string{"", "JSON", "cloudevents-structured", "ce"} {
		if _, err := ParseFormat(s); err == nil || !strings.Contains(err.Error(), "cloudevents-binary") {
			t.Errorf("ParseFormat(%q) = %v, want an error listing the formats", s, err)
		}
	}
	if got := Format(9).String(); got != "Format(9)" {
		t.Errorf("Format(9).String() = %q", got)
	}
}

func ExampleEncoder_Encode() {
	subject, err := ParseTemplate("events.{category}")
	if err != nil {
		panic(err)
	}
	e := Encoder{Format: FormatJSON, Subject: subject, Bus: Kafka}
	id, _ := annals.ParseUUID("0190f2b4-5c1e-7a3b-9d2e-4f5a6b7c8d9e")
	m, err := e.Encode(&annals.RecordedEvent{
		ID: id, Stream: "cart-42", Type: "ItemAdded", Data: []byte(`{"sku":"A-1"}`),
		Metadata: []byte(`{"$correlationId":"c-1"}`),
		Revision: 3, Position: 118, Time: time.Date(2026, 12, 4, 17, 0, 0, 0, time.UTC),
	})
	if err != nil {
		panic(err)
	}
	fmt.Printf("topic %s, key %s, value %s\n", m.Subject, m.Key, m.Value)
	for _, h := range m.Headers {
		fmt.Printf("%s: %s\n", h.Key, h.Value)
	}
	// Output:
	// topic events.cart, key cart-42, value {"sku":"A-1"}
	// annals-id: 0190f2b4-5c1e-7a3b-9d2e-4f5a6b7c8d9e
	// annals-type: ItemAdded
	// annals-stream: cart-42
	// annals-revision: 3
	// annals-position: 118
	// annals-time: 2026-12-04T17:00:00Z
	// content-type: application/json
	// annals-correlation-id: c-1
	// annals-metadata: {"$correlationId":"c-1"}
}
