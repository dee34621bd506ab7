package bridge

import (
	"errors"
	"strings"
	"testing"

	"github.com/annalsdb/annals"
	"github.com/google/go-cmp/cmp"
)

func hdrs(kv ...string) []Header {
	h := make([]Header, 0, len(kv)/2)
	for i := 0; i < len(kv); i += 2 {
		h = append(h, Header{Key: kv[i], Value: []byte(kv[i+1])})
	}
	return h
}

func TestDecodeID(t *testing.T) {
	const (
		u1 = "0190f2b4-5c1e-7a3b-9d2e-4f5a6b7c8d9e"
		u2 = "0190f2b4-5c1e-7a3b-9d2e-000000000002"
		u3 = "0190f2b4-5c1e-7a3b-9d2e-000000000003"
	)
	uuid := func(s string) annals.UUID {
		u, err := annals.ParseUUID(s)
		if err != nil {
			t.Fatal(err)
		}
		return u
	}
	structured := func(id string) string {
		return `{"specversion":"1.0","id":"` + id + `","source":"s","type":"T","subject":"x"}`
	}
	ceJSON := "application/cloudevents+json"
	for _, tc := range []struct {
		name    string
		headers []Header
		value   string
		want    annals.UUID
	}{
		{"annals-id", hdrs(HeaderID, u1, HeaderNatsMsgID, u2), "", uuid(u1)},
		{"annals-id before the CloudEvents id", hdrs("content-type", ceJSON, HeaderID, u1), structured(u2), uuid(u1)},
		{"CloudEvents id, structured", hdrs("content-type", ceJSON, HeaderNatsMsgID, u3), structured(u2), uuid(u2)},
		{"CloudEvents id, binary", hdrs("ce-specversion", "1.0", "ce-id", u2, "ce-source", "s", "ce-type", "T", "ce-subject", "x", HeaderNatsMsgID, u3), "", uuid(u2)},
		{"Nats-Msg-Id", hdrs(HeaderType, "T", HeaderNatsMsgID, u3), "", uuid(u3)},
		{"first UUID wins over a non-UUID before it", hdrs(HeaderID, "order-7", HeaderNatsMsgID, u3), "", uuid(u3)},
		{"non-UUID CloudEvents id: with its source", hdrs("content-type", ceJSON), structured("order-7"), DerivedID("cloudevents", "s", "order-7")},
		{"non-UUID CloudEvents id, binary: with its source", hdrs("ce_specversion", "1.0", "ce_id", "7", "ce_source", "shop-b", "ce_type", "T", "ce_subject", "x"), "", DerivedID("cloudevents", "shop-b", "7")},
		{"first non-UUID", hdrs(HeaderID, "a", HeaderNatsMsgID, "b"), "", DerivedID("a")},
		{"zero UUID is no id", hdrs(HeaderNatsMsgID, "00000000-0000-0000-0000-000000000000"), "", DerivedID("00000000-0000-0000-0000-000000000000")},
		{"no id: source and offset", nil, "", DerivedID("kafka:t/3", "99")},
	} {
		d := Decoder{Stream: mustTemplate(t, "in-{subject}"), Type: "Default"}
		m := &Incoming{Message: Message{Subject: "t", Headers: tc.headers, Value: []byte(tc.value)}, Source: "kafka:t/3", Offset: 99}
		_, ev, err := d.Decode(m)
		if err != nil {
			t.Errorf("%s: %v", tc.name, err)
			continue
		}
		if ev.ID != tc.want {
			t.Errorf("%s: id %v, want %v", tc.name, ev.ID, tc.want)
		}
		// A message delivered again gets the same id.
		if _, again, _ := d.Decode(m); again.ID != ev.ID {
			t.Errorf("%s: id %v then %v", tc.name, ev.ID, again.ID)
		}
	}
	d := Decoder{Stream: mustTemplate(t, "x"), Type: "T"}
	_, a, _ := d.Decode(&Incoming{Source: "kafka:t/3", Offset: 1})
	_, b, _ := d.Decode(&Incoming{Source: "kafka:t/3", Offset: 2})
	_, c, _ := d.Decode(&Incoming{Source: "kafka:t/4", Offset: 1})
	if a.ID == b.ID || a.ID == c.ID {
		t.Errorf("distinct offsets or sources give the same id: %v %v %v", a.ID, b.ID, c.ID)
	}
}

func TestDerivedID(t *testing.T) {
	a := DerivedID("ab", "c")
	if a != DerivedID("ab", "c") {
		t.Error("DerivedID is not deterministic")
	}
	for _, other := range []annals.UUID{DerivedID("a", "bc"), DerivedID("abc"), DerivedID("ab", "c", ""), DerivedID()} {
		if other == a {
			t.Errorf("DerivedID collides: %v", a)
		}
	}
	if a[6]>>4 != 8 || a[8]>>6 != 2 {
		t.Errorf("DerivedID %v: version %d variant %b, want 8 and 10", a, a[6]>>4, a[8]>>6)
	}
	if _, err := annals.ParseUUID(a.String()); err != nil {
		t.Error(err)
	}
}

func TestDecode(t *testing.T) {
	const id = "0190f2b4-5c1e-7a3b-9d2e-4f5a6b7c8d9e"
	uid, _ := annals.ParseUUID(id)
	for _, tc := range []struct {
		name       string
		tmpl       string
		typ        string
		m          Message
		wantStream string
		want       annals.Event
	}{{
		name: "plain JSON message with the decoder's type", tmpl: "orders-{key}", typ: "OrderReceived",
		m:          Message{Subject: "orders", Key: []byte("42"), Value: []byte(`{"a":1}`), Headers: hdrs(HeaderID, id)},
		wantStream: "orders-42",
		want:       annals.Event{ID: uid, Type: "OrderReceived", Data: []byte(`{"a":1}`)},
	}, {
		name: "JSON format: headers and context", tmpl: "{stream}", typ: "Default",
		m: Message{Value: []byte("x"), Headers: hdrs(HeaderID, id, HeaderType, "T", HeaderStream, "cart-1", "Content-Type", "text/plain",
			HeaderCorrelationID, "c\"1", HeaderTraceParent, traceParent)},
		wantStream: "cart-1",
		want: annals.Event{ID: uid, Type: "T", ContentType: "text/plain", Data: []byte("x"),
			Metadata: []byte(`{"$correlationId":"c\"1","$traceparent":"` + traceParent + `"}`)},
	}, {
		name: "metadata header wins over context headers", tmpl: "{stream}",
		m:          Message{Headers: hdrs(HeaderID, id, HeaderType, "T", HeaderStream, "s", HeaderCorrelationID, "c", HeaderMetadata, `{"x":1}`)},
		wantStream: "s",
		want:       annals.Event{ID: uid, Type: "T", Metadata: []byte(`{"x":1}`)},
	}, {
		name: "foreign structured CloudEvent with text data and integer extensions", tmpl: "{category}-in.{type}",
		m: Message{Headers: hdrs("Content-Type", "Application/CloudEvents+JSON; charset=utf-8"), Value: []byte(
			`{"specversion":"1.0","id":"` + id + `","source":"/shop","type":"com.shop.placed","subject":"order-9",` +
				`"datacontenttype":"text/plain","data":"hi \u00e9","annalsposition":12,"causationid":"x","other":{"a":1}}`)},
		wantStream: "order-in.com.shop.placed",
		want: annals.Event{ID: uid, Type: "com.shop.placed", ContentType: "text/plain", Data: []byte("hi é"),
			Metadata: []byte(`{"$causationId":"x"}`)},
	}, {
		name: "structured CloudEvent without datacontenttype: JSON data", tmpl: "{stream}",
		m: Message{Headers: hdrs("content-type", "application/cloudevents+json"), Value: []byte(
			`{"specversion":"1.0","id":"` + id + `","source":"/s","type":"T","subject":"s","data":{"k": [1, 2]}}`)},
		wantStream: "s",
		want:       annals.Event{ID: uid, Type: "T", Data: []byte(`{"k": [1, 2]}`)},
	}, {
		name: "foreign binary CloudEvent on Kafka", tmpl: "{stream}",
		m: Message{Headers: hdrs("ce_specversion", "1.0", "ce_id", id, "ce_source", "/s", "ce_type", "T", "ce_subject", "s-1",
			"content-type", "application/xml", "ce_traceparent", traceParent), Value: []byte("<a/>")},
		wantStream: "s-1",
		want:       annals.Event{ID: uid, Type: "T", ContentType: "application/xml", Data: []byte("<a/>"), Metadata: []byte(`{"$traceparent":"` + traceParent + `"}`)},
	}, {
		name: "structured CloudEvent with no headers (NATS binding)", tmpl: "{stream}", typ: "Default",
		m: Message{Value: []byte(
			` {"data":[1],"specversion":"1.0","id":"` + id + `","source":"/s","type":"T","subject":"s"}`)},
		wantStream: "s",
		want:       annals.Event{ID: uid, Type: "T", Data: []byte(`[1]`)},
	}, {
		name: "JSON object with no specversion and no headers", tmpl: "x", typ: "Default",
		m:          Message{Value: []byte(`{"spec":"1.0","id":"` + id + `"}`), Headers: hdrs(HeaderNatsMsgID, id)},
		wantStream: "x",
		want:       annals.Event{ID: uid, Type: "Default", Data: []byte(`{"spec":"1.0","id":"` + id + `"}`)},
	}, {
		name: "specversion in a value with a content type is data", tmpl: "x", typ: "Default",
		m:          Message{Value: []byte(`{"specversion":"1.0"}`), Headers: hdrs(HeaderID, id, "content-type", "application/json")},
		wantStream: "x",
		want:       annals.Event{ID: uid, Type: "Default", ContentType: "application/json", Data: []byte(`{"specversion":"1.0"}`)},
	}} {
		d := Decoder{Stream: mustTemplate(t, tc.tmpl), Type: tc.typ}
		stream, ev, err := d.Decode(&Incoming{Message: tc.m, Source: "nats:S", Offset: 5})
		if err != nil {
			t.Errorf("%s: %v", tc.name, err)
			continue
		}
		if stream != tc.wantStream {
			t.Errorf("%s: stream %q, want %q", tc.name, stream, tc.wantStream)
		}
		if diff := cmp.Diff(tc.want, ev, cmp.Comparer(bytesEqual)); diff != "" {
			t.Errorf("%s: event (-want +got):\n%s", tc.name, diff)
		}
	}
}

func TestDecodeErrors(t *testing.T) {
	ce := func(body string) Message {
		return Message{Headers: hdrs("content-type", "application/cloudevents+json"), Value: []byte(body)}
	}
	for _, tc := range []struct {
		name    string
		tmpl    string
		typ     string
		m       Message
		wantErr string
	}{
		{"no type", "s", "", Message{}, "no event type"},
		{"empty stream", "{stream}", "T", Message{}, "empty stream id"},
		{"system stream", "${key}", "T", Message{Key: []byte("x")}, "reserved for the system"},
		{"all stream", "{key}", "T", Message{Key: []byte("$all")}, "global log"},
		{"invalid UTF-8 stream", "k-{key}", "T", Message{Key: []byte("\xff")}, "UTF-8"},
		{"control character in type", "s", "", Message{Headers: hdrs(HeaderType, "a\nb")}, "control character"},
		{"not JSON", "s", "T", ce(`{`), "not a JSON object"},
		{"JSON null", "s", "T", ce(`null`), "not a JSON object"},
		{"old specversion", "s", "T", ce(`{"specversion":"0.3","id":"1","source":"s","type":"T"}`), `specversion "0.3"`},
		{"no source", "s", "T", ce(`{"specversion":"1.0","id":"1","type":"T"}`), "no source"},
		{"no id", "s", "T", ce(`{"specversion":"1.0","source":"s","type":"T"}`), "no id"},
		{"no type in CloudEvent", "s", "T", ce(`{"specversion":"1.0","id":"1","source":"s"}`), "no type"},
		{"numeric id", "s", "T", ce(`{"specversion":"1.0","id":1,"source":"s","type":"T"}`), "attribute id is 1"},
		{"data and data_base64", "s", "T", ce(`{"specversion":"1.0","id":"1","source":"s","type":"T","data":1,"data_base64":"AA=="}`), "both"},
		{"bad base64", "s", "T", ce(`{"specversion":"1.0","id":"1","source":"s","type":"T","data_base64":"!!"}`), "data_base64"},
		{"bad extension", "s", "T", ce(`{"specversion":"1.0","id":"1","source":"s","type":"T","annalsrevision":true}`), "annalsrevision"},
		{"batch", "s", "T", Message{Headers: hdrs("content-type", "application/cloudevents-batch+json"), Value: []byte(`[]`)}, "batches"},
		{"binary without id", "s", "T", Message{Headers: hdrs("ce-specversion", "1.0", "ce-source", "s", "ce-type", "T")}, "binary mode (ce- headers)"},
	} {
		d := Decoder{Stream: mustTemplate(t, tc.tmpl), Type: tc.typ}
		_, _, err := d.Decode(&Incoming{Message: tc.m, Source: "kafka:in/0", Offset: 17})
		if !errors.Is(err, annals.ErrInvalidArgument) || !strings.Contains(err.Error(), tc.wantErr) || !strings.Contains(err.Error(), "kafka:in/0 offset 17") {
			t.Errorf("%s: error %v, want ErrInvalidArgument naming the message and containing %q", tc.name, err, tc.wantErr)
		}
	}
	var d Decoder
	if _, _, err := d.Decode(&Incoming{}); !errors.Is(err, annals.ErrInvalidArgument) {
		t.Errorf("zero Decoder: %v", err)
	}
}

func TestRecordedErrors(t *testing.T) {
	const id = "0190f2b4-5c1e-7a3b-9d2e-4f5a6b7c8d9e"
	for _, tc := range []struct {
		name    string
		headers []Header
		wantErr string
	}{
		{"no id", hdrs(HeaderType, "T", HeaderStream, "s"), "no event id"},
		{"id not a UUID", hdrs(HeaderID, "x", HeaderType, "T", HeaderStream, "s"), "not a UUID"},
		{"no type", hdrs(HeaderID, id, HeaderStream, "s"), "no event type"},
		{"no stream", hdrs(HeaderID, id, HeaderType, "T"), "no stream"},
		{"bad revision", hdrs(HeaderID, id, HeaderType, "T", HeaderStream, "s", HeaderRevision, "-1"), "revision"},
		{"bad position", hdrs(HeaderID, id, HeaderType, "T", HeaderStream, "s", HeaderPosition, "1.5"), "position"},
		{"bad time", hdrs(HeaderID, id, HeaderType, "T", HeaderStream, "s", HeaderTime, "yesterday"), "time"},
		{"binary CloudEvent without subject", hdrs("ce_specversion", "1.0", "ce_id", id, "ce_source", "s", "ce_type", "T"), "no stream"},
	} {
		_, err := Recorded(&Message{Subject: "topic", Headers: tc.headers})
		if !errors.Is(err, annals.ErrInvalidArgument) || !strings.Contains(err.Error(), tc.wantErr) {
			t.Errorf("%s: error %v, want ErrInvalidArgument containing %q", tc.name, err, tc.wantErr)
		}
	}
}

func TestEventID(t *testing.T) {
	ev := testEvent()
	for _, f := range []Format{FormatJSON, FormatCloudEvents, FormatCloudEventsBinary} {
		for _, bus := range []Bus{Kafka, NATS} {
			e := Encoder{Format: f, Subject: mustTemplate(t, "e"), Bus: bus}
			m, err := e.Encode(ev)
			if err != nil {
				t.Fatal(err)
			}
			if f == FormatCloudEvents {
				// The structured value alone carries the id too.
				m.Headers = m.Headers[:1]
			}
			if id, ok := EventID(&m); !ok || id != ev.ID {
				t.Errorf("%v %v: EventID = %v, %v; want %v", f, bus, id, ok, ev.ID)
			}
		}
	}
	for _, m := range []Message{
		{},
		{Headers: hdrs(HeaderID, "not-a-uuid")},
		{Headers: hdrs(HeaderID, "00000000-0000-0000-0000-000000000000")},
		{Headers: hdrs("content-type", ContentTypeCloudEvents), Value: []byte(`{"id":7}`)},
		{Headers: hdrs("content-type", "application/json"), Value: []byte(`{"specversion":"1.0","id":"0190f2b4-5c1e-7a3b-9d2e-4f5a6b7c8d9e"}`)},
	} {
		if id, ok := EventID(&m); ok {
			t.Errorf("EventID(%+v) = %v, want none", m, id)
		}
	}
}

// TestDecodeCloudEventsIDsOfTwoSources: CloudEvents ids are unique per source only, so two
// sources' events numbered alike are two events to the ingest, and one source's redelivered
// event is the same one.
func TestDecodeCloudEventsIDsOfTwoSources(t *testing.T) {
	d := Decoder{Stream: mustTemplate(t, "in-{subject}")}
	id := func(source string) annals.UUID {
		t.Helper()
		v := `{"specversion":"1.0","id":"1","source":"` + source + `","type":"T"}`
		m := &Incoming{Message: Message{Subject: "t", Headers: []Header{{Key: "content-type", Value: []byte("application/cloudevents+json")}}, Value: []byte(v)}, Source: "kafka:t/0"}
		_, ev, err := d.Decode(m)
		if err != nil {
			t.Fatal(err)
		}
		return ev.ID
	}
	if a, b := id("shop-a"), id("shop-b"); a == b {
		t.Errorf("event 1 of shop-a and of shop-b both get id %v: the second would be taken for a duplicate and not appended", a)
	}
	if first, again := id("shop-a"), id("shop-a"); first != again {
		t.Error("one source's event gets two ids")
	}
}
