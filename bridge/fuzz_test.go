package bridge

import (
	"encoding/json"
	"strings"
	"testing"
	"unicode"
	"unicode/utf8"

	"github.com/annalsdb/annals"
)

// fuzzHeaders reads headers written one a line as "key:value".
func fuzzHeaders(s string) []Header {
	var h []Header
	for line := range strings.SplitSeq(s, "\n") {
		if k, v, ok := strings.Cut(line, ":"); ok {
			h = append(h, Header{Key: k, Value: []byte(v)})
		}
	}
	return h
}

// FuzzDecode checks that Decode and Recorded never panic, and that what Decode accepts is an
// event a store accepts, with an id.
func FuzzDecode(f *testing.F) {
	ev := testEvent()
	for _, format := range []Format{FormatJSON, FormatCloudEvents, FormatCloudEventsBinary} {
		for _, bus := range []Bus{Kafka, NATS} {
			e := Encoder{Format: format, Subject: mustTemplate(f, "e.{stream}"), Bus: bus}
			m, err := e.Encode(ev)
			if err != nil {
				f.Fatal(err)
			}
			var hs []string
			for _, h := range m.Headers {
				hs = append(hs, h.Key+":"+string(h.Value))
			}
			f.Add(m.Value, strings.Join(hs, "\n"), "{stream}", "")
		}
	}
	f.Add([]byte(`{"specversion":"1.0","id":"x","source":"s","type":"T","subject":"a-b","data":"\u00e9","datacontenttype":"text/plain","annalsposition":7}`),
		"content-type:application/cloudevents+json; charset=utf-8", "{category}.{type}", "")
	f.Add([]byte("x"), "ce_specversion:1.0\nce_id:1\nce_source:s\nce_type:T\nce_subject:$all", "{stream}", "")
	f.Add([]byte(`{"a":1}`), "Nats-Msg-Id:abc", "in-{subject}-{key}", "Default")
	f.Add([]byte{0xff}, "annals-type:T\nannals-metadata:\x00", "{key}", "")
	f.Fuzz(func(t *testing.T, value []byte, headers, tmpl, typ string) {
		stream, err := ParseTemplate(tmpl)
		if err != nil {
			return
		}
		m := &Incoming{Message: Message{Subject: "sub.j", Key: []byte("k-1"), Headers: fuzzHeaders(headers), Value: value}, Source: "kafka:t/0", Offset: 3}
		_, _ = Recorded(&m.Message)
		d := Decoder{Stream: stream, Type: typ}
		s, ev, err := d.Decode(m)
		if err != nil {
			if !strings.Contains(err.Error(), "kafka:t/0 offset 3") {
				t.Errorf("error %q does not name the message", err)
			}
			return
		}
		if err := annals.ValidateUserStreamID(s); err != nil {
			t.Errorf("Decode gave stream %q: %v", s, err)
		}
		if err := ev.Validate(); err != nil {
			t.Errorf("Decode gave an invalid event: %v", err)
		}
		if ev.ID.IsZero() {
			t.Error("Decode gave no id")
		}
		if _, again, err := d.Decode(m); err != nil || again.ID != ev.ID {
			t.Errorf("decoding again: id %v then %v (%v)", ev.ID, again.ID, err)
		}
	})
}

// FuzzParseTemplate checks that a parsed template reads back as its text, and that subjects
// expanded from it are safe for their bus whatever the values.
func FuzzParseTemplate(f *testing.F) {
	for _, s := range []string{"events.{category}", "{stream}", "a{type}b{key}{subject}", "{", "}", "{}", "{{stream}}", "x.{Stream}", ""} {
		f.Add(s, "cart-42", "T")
	}
	f.Add("e.{stream}.{type}", "a.b*c> d\t", "..")
	f.Add("{stream}", strings.Repeat("é", 200), "")
	f.Fuzz(func(t *testing.T, s, stream, typ string) {
		tm, err := ParseTemplate(s)
		if err != nil {
			if s != "" && strings.Count(s, "{") == 0 && strings.Count(s, "}") == 0 {
				t.Errorf("ParseTemplate(%q) refused a template without braces: %v", s, err)
			}
			return
		}
		if tm.String() != s || tm.IsZero() {
			t.Fatalf("ParseTemplate(%q).String() = %q", s, tm.String())
		}
		var b strings.Builder
		for _, p := range tm.parts {
			if p.field != "" {
				b.WriteString("{" + p.field + "}")
			} else if strings.ContainsAny(p.literal, "{}") || p.literal == "" {
				t.Fatalf("ParseTemplate(%q): literal %q", s, p.literal)
			} else {
				b.WriteString(p.literal)
			}
		}
		if b.String() != s {
			t.Fatalf("ParseTemplate(%q) parts read back as %q", s, b.String())
		}
		ev := &annals.RecordedEvent{Stream: stream, Type: typ}
		if topic, err := tm.subject(Kafka, relayValue(ev)); err == nil {
			if topic == "" || topic == "." || topic == ".." || len(topic) > MaxKafkaTopicLength {
				t.Errorf("Kafka topic %q of %d bytes", topic, len(topic))
			}
			for _, c := range []byte(topic) {
				if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '_' || c == '-') {
					t.Fatalf("Kafka topic %q holds %q", topic, c)
				}
			}
		}
		for _, v := range []string{stream, typ} {
			tok := natsToken(v)
			if tok == "" || strings.ContainsAny(tok, ".*> \t\r\n") || !utf8.ValidString(tok) {
				t.Errorf("natsToken(%q) = %q", v, tok)
			}
		}
		if _, err := tm.subject(NATS, relayValue(ev)); err != nil {
			t.Errorf("NATS subject of %q: %v", s, err)
		}
	})
}

// FuzzReadContext checks readContext's scanner against encoding/json.
func FuzzReadContext(f *testing.F) {
	for _, s := range []string{
		`{"$correlationId":"c","$causationId":"d","$traceparent":"t","$tracestate":"s","x":{"a":[1,"}",{"b":null}]}}`,
		`{"$correlationId":"a","$correlationId":7}`, `{"$correlationId":7,"$correlationId":"b"}`, `{"\u0024causationId":"\u00e9\n"}`,
		` { "$tracestate" : "x" , "y" : -1.5e3 } `, `["$correlationId"]`, `"$x"`, "{\"$correlationId\":\"\xff\"}", `{"$CorrelationId":"x"}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		got := readContext(b)
		var want eventContext
		var fields map[string]json.RawMessage
		if json.Unmarshal(b, &fields) == nil {
			for name, v := range map[string]*string{fieldCorrelationID: &want.correlationID, fieldCausationID: &want.causationID, fieldTraceParent: &want.traceParent, fieldTraceState: &want.traceState} {
				if raw, ok := fields[name]; ok {
					if json.Unmarshal(raw, v) == nil && strings.IndexFunc(*v, unicode.IsControl) >= 0 {
						*v = ""
					}
				}
			}
		}
		if got != want {
			t.Errorf("readContext(%q) = %+v, encoding/json reads %+v", b, got, want)
		}
	})
}
