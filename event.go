package annals

import (
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"time"
)

// ContentTypeJSON is the content type of an event whose ContentType is left empty.
const ContentTypeJSON = "application/json"

// Event is an event to append.
type Event struct {
	// ID identifies the event. Leave it zero to have one generated; set it yourself to make a
	// retried append idempotent.
	ID UUID
	// Type names what happened, e.g. "ItemAddedToCart". It must not be empty.
	Type string
	// ContentType of Data and Metadata; empty means [ContentTypeJSON] (and is recorded as such).
	// The store does not parse or check the bytes.
	ContentType string
	// Data is the event's body.
	Data []byte
	// Metadata carries what is about the event rather than of it (correlation ids, schema
	// version, …).
	Metadata []byte
}

// RecordedEvent is an event as stored, with the place and time the store gave it.
type RecordedEvent struct {
	ID          UUID
	Stream      string
	Type        string
	ContentType string
	Data        []byte
	Metadata    []byte
	// Revision is the event's number within its stream: 0 for the first, +1 per event, never
	// reused (not even after a soft delete).
	Revision uint64
	// Position is the event's place in the global log: 1 for the first event ever written,
	// strictly increasing in commit order.
	Position uint64
	// Time is when the store recorded the event (UTC). It never decreases along the log.
	Time time.Time
}

// MaxNameLength bounds an event's type and content type, in bytes.
const MaxNameLength = 256

// Validate checks the names of an event to append: its type is not empty, and its type and
// content type (empty means [ContentTypeJSON]) are at most [MaxNameLength] bytes of valid
// UTF-8 with no control characters. Errors match [ErrInvalidArgument] and name the field.
// Sizes are the store's limits to check ([Limits]).
func (e *Event) Validate() error {
	if e.Type == "" {
		return fmt.Errorf("%w: empty event type", ErrInvalidArgument)
	}
	for _, f := range []struct{ what, v string }{{"event type", e.Type}, {"content type", e.ContentType}} {
		if len(f.v) > MaxNameLength {
			return fmt.Errorf("%w: %s of %d bytes is longer than %d", ErrInvalidArgument, f.what, len(f.v), MaxNameLength)
		}
		if err := validateText(f.what, f.v); err != nil {
			return err
		}
	}
	return nil
}

// Size is what counts toward the event size limit: the bytes of its type, content type, data
// and metadata.
func (e *Event) Size() int {
	return len(e.Type) + len(e.ContentType) + len(e.Data) + len(e.Metadata)
}

// UUID is a 128-bit identifier in RFC 9562 form. The zero value means "none".
type UUID [16]byte

// NewUUID returns a fresh version 7 UUID: 48 bits of Unix milliseconds then random bits, so
// that ids generated later sort later. It panics only if the system's random source fails.
func NewUUID() UUID {
	var u UUID
	if _, err := rand.Read(u[6:]); err != nil {
		panic(fmt.Sprintf("annals: crypto/rand failed: %v", err))
	}
	ms := uint64(time.Now().UnixMilli())
	binary.BigEndian.PutUint16(u[0:2], uint16(ms>>32))
	binary.BigEndian.PutUint32(u[2:6], uint32(ms))
	u[6] = u[6]&0x0f | 0x70 // version 7
	u[8] = u[8]&0x3f | 0x80 // variant 10
	return u
}

// ParseUUID parses the canonical 36-character form (8-4-4-4-12 hexadecimal digits). It returns
// an error matching [ErrInvalidArgument] for anything else.
func ParseUUID(s string) (UUID, error) {
	var u UUID
	if len(s) != 36 || s[8] != '-' || s[13] != '-' || s[18] != '-' || s[23] != '-' {
		return u, fmt.Errorf("%w: event id %q is not a UUID (want xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx)", ErrInvalidArgument, s)
	}
	j := 0
	for i := 0; i < 36; {
		if i == 8 || i == 13 || i == 18 || i == 23 {
			i++
			continue
		}
		if _, err := hex.Decode(u[j:j+1], []byte(s[i:i+2])); err != nil {
			return UUID{}, fmt.Errorf("%w: event id %q is not a UUID: bad hex digit", ErrInvalidArgument, s)
		}
		i += 2
		j++
	}
	return u, nil
}

// IsZero reports whether u is the zero UUID.
func (u UUID) IsZero() bool { return u == UUID{} }

// String returns the canonical form, e.g. "0190f2b4-5c1e-7a3b-9d2e-4f5a6b7c8d9e".
func (u UUID) String() string {
	var b [36]byte
	return string(u.appendText(b[:0]))
}

// AppendText appends the canonical form of u (as [UUID.String] writes it) to b, for callers
// that build messages in one buffer; it implements encoding.TextAppender and never fails.
func (u UUID) AppendText(b []byte) ([]byte, error) { return u.appendText(b), nil }

func (u UUID) appendText(b []byte) []byte {
	b = hex.AppendEncode(b, u[0:4])
	b = append(b, '-')
	b = hex.AppendEncode(b, u[4:6])
	b = append(b, '-')
	b = hex.AppendEncode(b, u[6:8])
	b = append(b, '-')
	b = hex.AppendEncode(b, u[8:10])
	b = append(b, '-')
	return hex.AppendEncode(b, u[10:])
}

func (u UUID) MarshalText() ([]byte, error) { return []byte(u.String()), nil }

// UnmarshalText parses the canonical form.
func (u *UUID) UnmarshalText(b []byte) error {
	v, err := ParseUUID(string(b))
	if err != nil {
		return err
	}
	*u = v
	return nil
}
