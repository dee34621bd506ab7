package bridge

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"strings"
	"unicode"

	"github.com/annalsdb/annals"
)

// Template names a topic, a subject or a stream from the fields of an event or a message. It
// is text with placeholders in braces:
//
//   - On the relay side (naming a topic or subject from a recorded event): {stream}, {category}
//     (the part of the stream id before the first "-"), {type}.
//   - On the ingest side (naming a stream from an incoming message): {stream} (the annals-stream
//     header or the CloudEvents subject), {subject} (the topic or NATS subject), {key} (the
//     Kafka key), {type} (the event type), {category} (of {stream}).
//
// Braces only open and close placeholders: a template has no literal brace. Expanded values
// are made safe for the target: a subject for a [Bus] loses what a topic or subject cannot
// hold (see [Kafka] and [NATS]); a stream id is checked as one (annals.ValidateStreamID). A
// Template is immutable and safe for concurrent use.
type Template struct {
	text string
	// parts is the parsed template.
	parts []part
}

type part struct {
	literal string
	field   string // "" for a literal
}

// The placeholders of templates.
const (
	fieldStream   = "stream"
	fieldCategory = "category"
	fieldType     = "type"
	fieldSubject  = "subject"
	fieldKey      = "key"
)

// knownFields lists every placeholder, for error messages.
const knownFields = "{stream}, {category}, {type} (relay and ingest), {subject}, {key} (ingest only)"

// ParseTemplate parses s. It returns an error matching annals.ErrInvalidArgument for an empty
// template, an unclosed brace, a "}" that closes nothing or an unknown placeholder, naming it
// and listing the known ones.
func ParseTemplate(s string) (Template, error) {
	if s == "" {
		return Template{}, fmt.Errorf("%w: empty template (placeholders: %s)", annals.ErrInvalidArgument, knownFields)
	}
	parts := make([]part, 0, 4)
	rest := s
	for rest != "" {
		open := strings.IndexByte(rest, '{')
		lit := rest
		if open >= 0 {
			lit = rest[:open]
		}
		if i := strings.IndexByte(lit, '}'); i >= 0 {
			return Template{}, fmt.Errorf("%w: template %q: a %q at byte %d closes no placeholder (placeholders: %s)",
				annals.ErrInvalidArgument, s, "}", len(s)-len(rest)+i, knownFields)
		}
		if lit != "" {
			parts = append(parts, part{literal: lit})
		}
		if open < 0 {
			break
		}
		end := strings.IndexByte(rest[open:], '}')
		if end < 0 {
			return Template{}, fmt.Errorf("%w: template %q: unclosed %q at byte %d (placeholders: %s)",
				annals.ErrInvalidArgument, s, "{", len(s)-len(rest)+open, knownFields)
		}
		name := rest[open+1 : open+end]
		switch name {
		case fieldStream, fieldCategory, fieldType, fieldSubject, fieldKey:
		default:
			return Template{}, fmt.Errorf("%w: template %q: unknown placeholder {%s} (placeholders: %s)",
				annals.ErrInvalidArgument, s, name, knownFields)
		}
		parts = append(parts, part{field: name})
		rest = rest[open+end+1:]
	}
	return Template{text: s, parts: parts}, nil
}

// String returns the template's text.
func (t Template) String() string { return t.text }

// IsZero reports whether t was never parsed.
func (t Template) IsZero() bool { return t.parts == nil }

// checkFields returns an error matching annals.ErrInvalidArgument when t is zero or uses a
// placeholder that is not among allowed; side names the side for the message.
func (t Template) checkFields(side string, allowed ...string) error {
	if t.IsZero() {
		return fmt.Errorf("%w: no %s template", annals.ErrInvalidArgument, side)
	}
	for _, p := range t.parts {
		if p.field == "" {
			continue
		}
		ok := false
		for _, a := range allowed {
			ok = ok || p.field == a
		}
		if !ok {
			return fmt.Errorf("%w: %s template %q: placeholder {%s} is not known there (known: {%s})",
				annals.ErrInvalidArgument, side, t.text, p.field, strings.Join(allowed, "}, {"))
		}
	}
	return nil
}

// checkNATS returns an error matching annals.ErrInvalidArgument when the literal text of t
// cannot be part of a NATS subject to publish to: a wildcard ("*", ">"), white space or a
// control character, or an empty token (a "." at either end of the template, or "..").
func (t Template) checkNATS() error {
	for i, p := range t.parts {
		if p.field != "" {
			continue
		}
		bad := ""
		switch {
		case strings.ContainsAny(p.literal, "*>"):
			bad = "a wildcard"
		case strings.IndexFunc(p.literal, func(r rune) bool { return unicode.IsSpace(r) || unicode.IsControl(r) }) >= 0:
			bad = "white space or a control character"
		case strings.Contains(p.literal, ".."), i == 0 && strings.HasPrefix(p.literal, "."), i == len(t.parts)-1 && strings.HasSuffix(p.literal, "."):
			bad = "an empty token"
		}
		if bad != "" {
			return fmt.Errorf("%w: NATS subject template %q: %q holds %s", annals.ErrInvalidArgument, t.text, p.literal, bad)
		}
	}
	return nil
}

// expand returns t with each placeholder replaced by value(name) passed through safe (nil
// keeps values as they are); literals are kept as written.
func (t Template) expand(value func(field string) string, safe func(string) string) string {
	var b strings.Builder
	for _, p := range t.parts {
		if p.field == "" {
			b.WriteString(p.literal)
			continue
		}
		v := value(p.field)
		if safe != nil {
			v = safe(v)
		}
		b.WriteString(v)
	}
	return b.String()
}

// placeholders are the values a template's placeholders stand for: {category} is always the
// category of {stream}. The relay side has no subject or key.
type placeholders struct {
	stream, typ, subject, key string
}

// value returns the value of the placeholder field, "" for an unknown one.
func (p placeholders) value(field string) string {
	switch field {
	case fieldStream:
		return p.stream
	case fieldCategory:
		return annals.Category(p.stream)
	case fieldType:
		return p.typ
	case fieldSubject:
		return p.subject
	case fieldKey:
		return p.key
	}
	return ""
}

// relayValue returns the value of a relay-side placeholder for ev.
func relayValue(ev *annals.RecordedEvent) func(string) string {
	return placeholders{stream: ev.Stream, typ: ev.Type}.value
}

// MaxKafkaTopicLength is the longest topic name Kafka accepts, in bytes.
const MaxKafkaTopicLength = 249

// subject expands t into a topic or subject for bus. It returns an error matching
// annals.ErrInvalidArgument when the expansion is empty or bus is unknown.
func (t Template) subject(bus Bus, value func(string) string) (string, error) {
	var s string
	switch bus {
	case Kafka:
		s = kafkaTopic(t.expand(value, nil))
	case NATS:
		s = t.expand(value, natsToken)
	default:
		return "", fmt.Errorf("%w: unknown bus %d", annals.ErrInvalidArgument, int(bus))
	}
	if s == "" {
		return "", fmt.Errorf("%w: subject template %q expands to an empty name", annals.ErrInvalidArgument, t.text)
	}
	return s, nil
}

// kafkaTopic makes s a legal Kafka topic name: bytes other than letters, digits, ".", "_" and
// "-" become "_", "." and ".." (which Kafka refuses) become "_" and "__", and a name longer
// than MaxKafkaTopicLength is cut and ends with "_" and 16 hexadecimal digits of the SHA-256
// of the whole name, so that distinct long names stay distinct.
func kafkaTopic(s string) string {
	b := []byte(s)
	for i, c := range b {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '_' || c == '-') {
			b[i] = '_'
		}
	}
	switch string(b) {
	case ".":
		return "_"
	case "..":
		return "__"
	}
	if len(b) > MaxKafkaTopicLength {
		sum := sha256.Sum256(b)
		const suffix = 1 + 16
		b = append(b[:MaxKafkaTopicLength-suffix], '_')
		b = hex.AppendEncode(b, sum[:8])
	}
	return string(b)
}

// natsToken makes v one token of a NATS subject: ".", "*", ">", white space and control
// characters become "_", and an empty value is "_".
func natsToken(v string) string {
	if v == "" {
		return "_"
	}
	return strings.Map(func(r rune) rune {
		if r == '.' || r == '*' || r == '>' || unicode.IsSpace(r) || unicode.IsControl(r) || r == unicode.ReplacementChar {
			return '_'
		}
		return r
	}, v)
}
