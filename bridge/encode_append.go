package bridge

import (
	"strconv"
	"time"

	"github.com/annalsdb/annals"
)

// headerBuf collects a message's header values in one byte buffer and its headers in one
// slice, both made with room for all of them. Each value is a capped slice of the buffer, so
// that a value added before the buffer grows (when the estimate was short) keeps its bytes.
type headerBuf struct {
	buf []byte
	h   []Header
}

// headerSpace and smallHeaderSpace hold the headers and values of most messages in one
// allocation (the small one fills a size class of 416 bytes, the other one of 512).
type (
	headerSpace struct {
		h [8]Header
		b [192]byte
	}
	smallHeaderSpace struct {
		h [7]Header
		b [136]byte
	}
)

// newHeaderBuf returns a headerBuf with room for bytes of values and headers headers.
func newHeaderBuf(bytes, headers int) headerBuf {
	switch {
	case bytes <= len(smallHeaderSpace{}.b) && headers <= len(smallHeaderSpace{}.h):
		s := new(smallHeaderSpace)
		return headerBuf{buf: s.b[:0], h: s.h[:0]}
	case bytes <= len(headerSpace{}.b) && headers <= len(headerSpace{}.h):
		s := new(headerSpace)
		return headerBuf{buf: s.b[:0], h: s.h[:0]}
	}
	return headerBuf{buf: make([]byte, 0, bytes), h: make([]Header, 0, headers)}
}

// since adds the bytes appended from n on as the value of key.
func (b *headerBuf) since(key string, n int) {
	b.h = append(b.h, Header{Key: key, Value: b.buf[n:len(b.buf):len(b.buf)]})
}

// add adds v under key; an empty v is left out.
func (b *headerBuf) add(key, v string) {
	if v != "" {
		n := len(b.buf)
		b.buf = append(b.buf, v...)
		b.since(key, n)
	}
}

// addUint adds v in decimal.
func (b *headerBuf) addUint(key string, v uint64) {
	n := len(b.buf)
	b.buf = strconv.AppendUint(b.buf, v, 10)
	b.since(key, n)
}

// addID adds id in its canonical form.
func (b *headerBuf) addID(key string, id annals.UUID) {
	n := len(b.buf)
	b.buf, _ = id.AppendText(b.buf) // never fails
	b.since(key, n)
}

// addTime adds t in UTC as RFC 3339 with nanoseconds; a zero t is left out.
func (b *headerBuf) addTime(key string, t time.Time) {
	if !t.IsZero() {
		n := len(b.buf)
		b.buf = appendTime(b.buf, t)
		b.since(key, n)
	}
}

// appendTime appends t as the encoders write times (empty for a zero t).
func appendTime(b []byte, t time.Time) []byte {
	if t.IsZero() {
		return b
	}
	return t.UTC().AppendFormat(b, time.RFC3339Nano)
}

// Room the fixed-size values take at most: a UUID, a time in UTC as RFC 3339 with
// nanoseconds (a four-digit year).
const (
	uuidLen = 36
	timeLen = len("2006-01-02T15:04:05.999999999Z")
)

// uintLen is the number of decimal digits of v.
func uintLen(v uint64) int {
	n := 1
	for ; v >= 10; v /= 10 {
		n++
	}
	return n
}

// subject returns the topic or subject of ev. On Kafka, when the expansion is already a legal
// topic (the common case) it costs one allocation at most, none when the template is one
// literal or one placeholder; otherwise it is the template's subject.
func (e *Encoder) subject(ev *annals.RecordedEvent) (string, error) {
	value := relayValue(ev)
	if e.Bus == Kafka {
		if s, ok := e.Subject.legalKafkaExpansion(value); ok {
			return s, nil
		}
	}
	return e.Subject.subject(e.Bus, value)
}

// legalKafkaExpansion returns t expanded with value when that is a legal Kafka topic as it
// is (kafkaTopic would keep it), and false otherwise.
func (t Template) legalKafkaExpansion(value func(string) string) (string, bool) {
	if len(t.parts) == 1 {
		s := t.parts[0].literal
		if t.parts[0].field != "" {
			s = value(t.parts[0].field)
		}
		return s, legalKafkaTopic(s)
	}
	var arr [MaxKafkaTopicLength]byte
	b := arr[:0]
	for _, p := range t.parts {
		v := p.literal
		if p.field != "" {
			v = value(p.field)
		}
		if len(b)+len(v) > MaxKafkaTopicLength {
			return "", false
		}
		b = append(b, v...)
	}
	if !legalKafkaTopic(b) {
		return "", false
	}
	return string(b), true
}

// legalKafkaTopic reports whether s is a topic that kafkaTopic keeps as it is: not empty, not
// "." or "..", at most MaxKafkaTopicLength bytes of letters, digits, ".", "_" and "-".
func legalKafkaTopic[T string | []byte](s T) bool {
	if len(s) == 0 || len(s) > MaxKafkaTopicLength || string(s) == "." || string(s) == ".." {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '_' || c == '-') {
			return false
		}
	}
	return true
}
