package bridge

// Template names a topic, a subject or a stream from the fields of an event or a message. It
// is text with placeholders in braces:
//
//   - On the relay side (naming a topic or subject from a recorded event): {stream}, {category}
//     (the part of the stream id before the first "-"), {type}.
//   - On the ingest side (naming a stream from an incoming message): {stream} (the annals-stream
//     header or the CloudEvents subject), {subject} (the topic or NATS subject), {key} (the
//     Kafka key), {type} (the event type), {category} (of {stream}).
//
// Expanded values are made safe for the target: a subject for a [Bus] loses what a topic or
// subject cannot hold (see [Kafka] and [NATS]); a stream id is checked as one
// (annals.ValidateStreamID).
type Template struct {
	text string
	// parts is the parsed template.
	parts []part
}

type part struct {
	literal string
	field   string // "" for a literal
}

// ParseTemplate parses s. It returns an error matching annals.ErrInvalidArgument for an empty
// template, an unclosed brace or an unknown placeholder, naming it and listing the known ones.
func ParseTemplate(s string) (Template, error) {
	panic("unimplemented")
}

// String returns the template's text.
func (t Template) String() string { return t.text }

// IsZero reports whether t was never parsed.
func (t Template) IsZero() bool { return t.parts == nil }
