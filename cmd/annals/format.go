package main

import (
	"bufio"
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/annalsdb/annals"
)

// formatHelp documents the JSON lines format; the commands that read or write it include it
// in their --help.
const formatHelp = `JSON lines format (read --json, tail --json, export, import, append STREAM -): one event per
line, an object with the fields
  id, stream, type, revision, position, time, data, metadata
and, only when needed, contentType. Without contentType the event is JSON (application/json)
and data and metadata are embedded as JSON values, byte for byte as stored. With contentType
(any other content type, or JSON data that cannot be embedded exactly: not valid JSON, or
holding a line break or surrounding whitespace), data and metadata are base64 strings
(standard alphabet, padded). A missing data or metadata field means empty bytes. time is
RFC 3339 in UTC. On input, unknown fields are an error, and position and time are ignored
(the store assigns them).`

// lineHeader is the part of a JSON line before data and metadata, in the order they appear.
type lineHeader struct {
	ID          string `json:"id"`
	Stream      string `json:"stream"`
	Type        string `json:"type"`
	Revision    uint64 `json:"revision"`
	Position    uint64 `json:"position"`
	Time        string `json:"time"`
	ContentType string `json:"contentType,omitempty"`
}

// appendJSONLine appends ev to buf as one line of the JSON lines format, newline included.
func appendJSONLine(buf []byte, ev *annals.RecordedEvent) ([]byte, error) {
	ct := ev.ContentType
	if ct == "" {
		ct = annals.ContentTypeJSON
	}
	embed := ct == annals.ContentTypeJSON && embeddable(ev.Data) && embeddable(ev.Metadata)
	h := lineHeader{
		ID:       ev.ID.String(),
		Stream:   ev.Stream,
		Type:     ev.Type,
		Revision: ev.Revision,
		Position: ev.Position,
		Time:     ev.Time.UTC().Format(time.RFC3339Nano),
	}
	if !embed {
		h.ContentType = ct
	}
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(&h); err != nil {
		return buf, fmt.Errorf("encode event %s: %w", ev.ID, err)
	}
	head := bytes.TrimSuffix(bytes.TrimRight(b.Bytes(), "\n"), []byte("}"))
	buf = append(buf, head...)
	for _, f := range []struct {
		name string
		val  []byte
	}{{"data", ev.Data}, {"metadata", ev.Metadata}} {
		if len(f.val) == 0 {
			continue
		}
		buf = append(buf, `,"`...)
		buf = append(buf, f.name...)
		buf = append(buf, `":`...)
		if embed {
			buf = append(buf, f.val...)
		} else {
			buf = strconv.AppendQuote(buf, base64.StdEncoding.EncodeToString(f.val))
		}
	}
	return append(buf, "}\n"...), nil
}

// embeddable reports whether b can be embedded in a JSON line and read back byte for byte:
// empty (the field is left out) or valid JSON in valid UTF-8 with no line break and no
// surrounding whitespace.
func embeddable(b []byte) bool {
	if len(b) == 0 {
		return true
	}
	return utf8.Valid(b) && json.Valid(b) && !bytes.ContainsAny(b, "\r\n") &&
		!isSpace(b[0]) && !isSpace(b[len(b)-1])
}

func isSpace(c byte) bool { return c == ' ' || c == '\t' || c == '\r' || c == '\n' }

// inputLine is a JSON line as read by import and by append from stdin.
type inputLine struct {
	ID          string          `json:"id"`
	Stream      string          `json:"stream"`
	Type        string          `json:"type"`
	Revision    *uint64         `json:"revision"`
	Position    *uint64         `json:"position"`
	Time        json.RawMessage `json:"time"`
	ContentType *string         `json:"contentType"`
	Data        json.RawMessage `json:"data"`
	Metadata    json.RawMessage `json:"metadata"`
}

// lineEvent is an event read from a JSON line, with the stream and revision it names (when it
// names them).
type lineEvent struct {
	annals.Event
	Stream   string
	Revision *uint64
}

// parseLine reads one JSON line. Errors say what is wrong but not where: the caller adds the
// line number.
func parseLine(line []byte) (lineEvent, error) {
	var in inputLine
	dec := json.NewDecoder(bytes.NewReader(line))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&in); err != nil {
		return lineEvent{}, fmt.Errorf("not a JSON event object: %s", jsonErrorText(err))
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return lineEvent{}, errors.New("not a JSON event object: more after the object (one event per line)")
	}
	ev := lineEvent{Stream: in.Stream, Revision: in.Revision}
	ev.Type = in.Type
	if in.Type == "" {
		return ev, errors.New(`no "type" (every event needs one)`)
	}
	if in.ID != "" {
		id, err := annals.ParseUUID(in.ID)
		if err != nil {
			return ev, errors.New(trimSentinels(err.Error()))
		}
		ev.ID = id
	}
	if in.ContentType == nil {
		ev.Data = nonNull(in.Data)
		ev.Metadata = nonNull(in.Metadata)
		return ev, nil
	}
	if *in.ContentType == "" {
		return ev, errors.New(`empty "contentType" (leave the field out for JSON)`)
	}
	ev.ContentType = *in.ContentType
	var err error
	if ev.Data, err = decodeBase64("data", in.Data); err != nil {
		return ev, err
	}
	if ev.Metadata, err = decodeBase64("metadata", in.Metadata); err != nil {
		return ev, err
	}
	return ev, nil
}

// nonNull returns b, with an absent field as nil (an explicit JSON null stays "null").
func nonNull(b json.RawMessage) []byte {
	if len(b) == 0 {
		return nil
	}
	return b
}

func decodeBase64(field string, raw json.RawMessage) ([]byte, error) {
	if len(raw) == 0 {
		return nil, nil
	}
	var s string
	if err := json.Unmarshal(raw, &s); err != nil {
		return nil, fmt.Errorf("%q must be a base64 string when \"contentType\" is given (leave contentType out to embed JSON)", field)
	}
	b, err := base64.StdEncoding.DecodeString(s)
	if err != nil {
		return nil, fmt.Errorf("%q is not valid base64: %w", field, err)
	}
	return b, nil
}

// jsonErrorText shortens encoding/json's messages ("json: unknown field \"x\"").
func jsonErrorText(err error) string {
	if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
		return "unexpected end of JSON"
	}
	return strings.TrimPrefix(err.Error(), "json: ")
}

// isJSONContentType reports whether ct names JSON: empty (the default), application/json, or a
// +json suffix type.
func isJSONContentType(ct string) bool {
	if ct == "" {
		return true
	}
	mt, _, err := mime.ParseMediaType(ct)
	if err != nil {
		return false
	}
	return mt == annals.ContentTypeJSON || strings.HasSuffix(mt, "+json")
}

// printer writes events to a command's output, one line each, as human-readable text or as
// JSON lines.
type printer struct {
	w    *bufio.Writer
	json bool
	buf  []byte
}

func newPrinter(w io.Writer, jsonLines bool) *printer {
	return &printer{w: bufio.NewWriter(w), json: jsonLines}
}

func (p *printer) event(ev *annals.RecordedEvent) error {
	var err error
	if p.json {
		p.buf, err = appendJSONLine(p.buf[:0], ev)
	} else {
		p.buf = appendHumanLine(p.buf[:0], ev)
	}
	if err != nil {
		return err
	}
	_, err = p.w.Write(p.buf)
	return err
}

func (p *printer) flush() error { return p.w.Flush() }

// maxShown bounds the data shown in a human-readable event line.
const maxShown = 200

// appendHumanLine appends the human-readable line of ev: position, stream@revision, type,
// time and the data (compacted JSON, or quoted text, or its size and content type), cut at
// maxShown bytes.
func appendHumanLine(buf []byte, ev *annals.RecordedEvent) []byte {
	buf = strconv.AppendUint(buf, ev.Position, 10)
	buf = append(buf, "  "...)
	buf = append(buf, ev.Stream...)
	buf = append(buf, '@')
	buf = strconv.AppendUint(buf, ev.Revision, 10)
	buf = append(buf, "  "...)
	buf = append(buf, ev.Type...)
	buf = append(buf, "  "...)
	buf = ev.Time.UTC().AppendFormat(buf, "2006-01-02T15:04:05.000Z07:00")
	if shown := showData(ev); shown != "" {
		buf = append(buf, "  "...)
		buf = append(buf, shown...)
	}
	return append(buf, '\n')
}

func showData(ev *annals.RecordedEvent) string {
	d := ev.Data
	if len(d) == 0 {
		return ""
	}
	ct := ev.ContentType
	var s string
	switch {
	case isJSONContentType(ct) && json.Valid(d):
		var b bytes.Buffer
		if err := json.Compact(&b, d); err == nil {
			s = b.String()
		}
	case strings.HasPrefix(ct, "text/") && utf8.Valid(d):
		s = strconv.Quote(string(d))
	}
	if s == "" {
		if ct == "" {
			ct = annals.ContentTypeJSON
		}
		return fmt.Sprintf("<%d bytes %s>", len(d), ct)
	}
	if len(s) > maxShown {
		cut := maxShown
		for cut > 0 && !utf8.RuneStart(s[cut]) {
			cut--
		}
		s = s[:cut] + "…"
	}
	return s
}
