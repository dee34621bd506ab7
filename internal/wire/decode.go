package wire

import (
	"errors"
	"fmt"
	"time"
	"unicode/utf8"

	"github.com/annalsdb/annals"
	"google.golang.org/protobuf/encoding/protowire"
)

// Field numbers of annals.v1.RecordedEvent and google.protobuf.Timestamp, for [Decoder].
const (
	recordedID          protowire.Number = 1
	recordedStream      protowire.Number = 2
	recordedType        protowire.Number = 3
	recordedContentType protowire.Number = 4
	recordedData        protowire.Number = 5
	recordedMetadata    protowire.Number = 6
	recordedRevision    protowire.Number = 7
	recordedPosition    protowire.Number = 8
	recordedTime        protowire.Number = 9

	timestampSeconds protowire.Number = 1
	timestampNanos   protowire.Number = 2
)

var errMalformed = errors.New("malformed protobuf message")

// Decoder decodes annals.v1.RecordedEvent messages from their protobuf encoding straight into
// [annals.RecordedEvent] values, with the result [RecordedFromProto] gives for the message, but
// without building the message first: no allocation per event but its data and metadata, and
// the strings of a stream, type or content type that differ from the previous event's. (It
// keeps the last of each, so the events of a batch of one stream share their strings.)
//
// The decoded events share nothing with the input, which may be reused at once. Unknown
// fields are skipped, as protobuf does. A Decoder is not safe for concurrent use; its zero
// value is ready.
type Decoder struct {
	stream, typ, contentType string
}

// AppendEvents decodes the repeated RecordedEvent field num of the message b (e.g. 1 for
// ReadAllResponse.events) and appends its events to dst; the message's other fields are
// skipped. It returns an error for a malformed message or event (see [Decoder.Recorded]).
func (d *Decoder) AppendEvents(dst []annals.RecordedEvent, b []byte, num protowire.Number) ([]annals.RecordedEvent, error) {
	for len(b) > 0 {
		n, typ, l := consumeTag(b)
		if l < 0 {
			return dst, errMalformed
		}
		b = b[l:]
		if n == num && typ == protowire.BytesType {
			v, l := protowire.ConsumeBytes(b)
			if l < 0 {
				return dst, errMalformed
			}
			b = b[l:]
			dst = append(dst, annals.RecordedEvent{})
			if err := d.decode(&dst[len(dst)-1], v); err != nil {
				return dst[:len(dst)-1], err
			}
			continue
		}
		l = protowire.ConsumeFieldValue(n, typ, b)
		if l < 0 {
			return dst, errMalformed
		}
		b = b[l:]
	}
	return dst, nil
}

// Recorded decodes one RecordedEvent message. It returns an error for a malformed message, a
// string field that is not valid UTF-8, or an id that is not a UUID (as [RecordedFromProto]).
func (d *Decoder) Recorded(b []byte) (annals.RecordedEvent, error) {
	var e annals.RecordedEvent
	err := d.decode(&e, b)
	return e, err
}

func (d *Decoder) decode(e *annals.RecordedEvent, b []byte) error {
	var id []byte
	var hasTime bool
	var sec, nsec int64
	for len(b) > 0 {
		n, typ, l := consumeTag(b)
		if l < 0 {
			return errMalformed
		}
		b = b[l:]
		switch {
		case typ == protowire.BytesType && (n >= recordedID && n <= recordedMetadata || n == recordedTime):
			v, l := protowire.ConsumeBytes(b)
			if l < 0 {
				return errMalformed
			}
			b = b[l:]
			var err error
			switch n {
			case recordedID:
				id = v
			case recordedStream:
				e.Stream, err = intern(&d.stream, v)
			case recordedType:
				e.Type, err = intern(&d.typ, v)
			case recordedContentType:
				e.ContentType, err = intern(&d.contentType, v)
			case recordedData:
				e.Data = clone(v)
			case recordedMetadata:
				e.Metadata = clone(v)
			case recordedTime:
				hasTime = true
				if err := decodeTimestamp(v, &sec, &nsec); err != nil {
					return err
				}
			}
			if err != nil {
				return err
			}
		case typ == protowire.VarintType && (n == recordedRevision || n == recordedPosition):
			v, l := protowire.ConsumeVarint(b)
			if l < 0 {
				return errMalformed
			}
			b = b[l:]
			if n == recordedRevision {
				e.Revision = v
			} else {
				e.Position = v
			}
		default:
			l := protowire.ConsumeFieldValue(n, typ, b)
			if l < 0 {
				return errMalformed
			}
			b = b[l:]
		}
	}
	u, ok := parseUUID(id)
	if !ok {
		_, err := annals.ParseUUID(string(id))
		return fmt.Errorf("recorded event at position %d: %w", e.Position, err)
	}
	e.ID = u
	if hasTime {
		e.Time = time.Unix(sec, nsec).UTC()
	}
	return nil
}

// decodeTimestamp decodes a google.protobuf.Timestamp into sec and nsec, merging into what
// they hold as protobuf merges a message field that occurs more than once.
func decodeTimestamp(b []byte, sec, nsec *int64) error {
	for len(b) > 0 {
		n, typ, l := consumeTag(b)
		if l < 0 {
			return errMalformed
		}
		b = b[l:]
		if typ == protowire.VarintType && (n == timestampSeconds || n == timestampNanos) {
			v, l := protowire.ConsumeVarint(b)
			if l < 0 {
				return errMalformed
			}
			b = b[l:]
			if n == timestampSeconds {
				*sec = int64(v)
			} else {
				*nsec = int64(int32(v))
			}
			continue
		}
		l = protowire.ConsumeFieldValue(n, typ, b)
		if l < 0 {
			return errMalformed
		}
		b = b[l:]
	}
	return nil
}

// consumeTag is protowire.ConsumeTag refusing field numbers above the valid range, as
// proto.Unmarshal does.
func consumeTag(b []byte) (protowire.Number, protowire.Type, int) {
	n, typ, l := protowire.ConsumeTag(b)
	if l >= 0 && n > protowire.MaxValidNumber {
		return 0, 0, -1
	}
	return n, typ, l
}

// intern returns v as a string, reusing *last when it is equal, else remembering the new one.
// It returns an error for v not valid UTF-8, as protobuf does for a string field.
func intern(last *string, v []byte) (string, error) {
	if string(v) == *last {
		return *last, nil
	}
	if !utf8.Valid(v) {
		return "", errors.New("string field contains invalid UTF-8")
	}
	*last = string(v)
	return *last, nil
}

func clone(v []byte) []byte {
	if len(v) == 0 {
		return nil
	}
	return append([]byte(nil), v...)
}

// parseUUID parses the canonical form of a UUID as [annals.ParseUUID] does, from bytes.
func parseUUID(b []byte) (u annals.UUID, ok bool) {
	if len(b) != 36 || b[8] != '-' || b[13] != '-' || b[18] != '-' || b[23] != '-' {
		return u, false
	}
	j := 0
	for i := 0; i < 36; {
		if i == 8 || i == 13 || i == 18 || i == 23 {
			i++
			continue
		}
		hi, ok1 := unhex(b[i])
		lo, ok2 := unhex(b[i+1])
		if !ok1 || !ok2 {
			return annals.UUID{}, false
		}
		u[j] = hi<<4 | lo
		i += 2
		j++
	}
	return u, true
}

func unhex(c byte) (byte, bool) {
	switch {
	case '0' <= c && c <= '9':
		return c - '0', true
	case 'a' <= c && c <= 'f':
		return c - 'a' + 10, true
	case 'A' <= c && c <= 'F':
		return c - 'A' + 10, true
	}
	return 0, false
}
