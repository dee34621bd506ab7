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
// without building the message first. The strings of a stream, type or content type equal to
// the previous event's are shared with it, and the data and metadata of small events are
// copied into shared blocks of [slabSize] bytes: a few allocations per batch, not one per
// event. (So an event that outlives its neighbours keeps up to [slabSize] bytes of theirs.)
//
// The decoded events share nothing with the input, which may be reused at once. Unknown
// fields are skipped, as protobuf does. A Decoder is not safe for concurrent use; its zero
// value is ready.
type Decoder struct {
	stream, typ, contentType string
	slab                     []byte // the free part of the current block
}

// slabSize is the size of the blocks a [Decoder] copies data and metadata into; a value over
// a quarter of it gets an allocation of its own.
const slabSize = 16 << 10

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
			v, l := consumeBytes(b)
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
			v, l := consumeBytes(b)
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
				e.Data = d.clone(v)
			case recordedMetadata:
				e.Metadata = d.clone(v)
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
// proto.Unmarshal does, with a fast path for the one-byte tags of the fields it decodes.
func consumeTag(b []byte) (protowire.Number, protowire.Type, int) {
	if len(b) > 0 && b[0] < 0x80 && b[0] >= 1<<3 {
		return protowire.Number(b[0] >> 3), protowire.Type(b[0] & 7), 1
	}
	n, typ, l := protowire.ConsumeTag(b)
	if l >= 0 && n > protowire.MaxValidNumber {
		return 0, 0, -1
	}
	return n, typ, l
}

// consumeBytes is protowire.ConsumeBytes with a fast path for lengths under 128.
func consumeBytes(b []byte) ([]byte, int) {
	if len(b) > 0 && b[0] < 0x80 && int(b[0]) < len(b) {
		n := int(b[0])
		return b[1 : 1+n], 1 + n
	}
	return protowire.ConsumeBytes(b)
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

// clone returns a copy of v, nil when v is empty, in the current block when it fits.
func (d *Decoder) clone(v []byte) []byte {
	n := len(v)
	switch {
	case n == 0:
		return nil
	case n > slabSize/4:
		return append([]byte(nil), v...)
	case n > len(d.slab):
		d.slab = make([]byte, slabSize)
	}
	c := d.slab[:n:n]
	copy(c, v)
	d.slab = d.slab[n:]
	return c
}

// parseUUID parses the canonical form of a UUID as [annals.ParseUUID] does, from bytes.
func parseUUID(b []byte) (u annals.UUID, ok bool) {
	if len(b) != 36 || b[8] != '-' || b[13] != '-' || b[18] != '-' || b[23] != '-' {
		return u, false
	}
	var bad byte
	for j, i := range uuidDigits {
		hi, lo := hexValue[b[i]], hexValue[b[i+1]]
		bad |= hi | lo
		u[j] = hi<<4 | lo
	}
	return u, bad&0xf0 == 0
}

// uuidDigits are the offsets of the 16 pairs of hex digits in the canonical form of a UUID.
var uuidDigits = [16]int{0, 2, 4, 6, 9, 11, 14, 16, 19, 21, 24, 26, 28, 30, 32, 34}

// hexValue maps a hex digit (either case) to its value, and any other byte to 0xff.
var hexValue = func() (t [256]byte) {
	for i := range t {
		t[i] = 0xff
	}
	for i, c := range "0123456789abcdef" {
		t[c] = byte(i)
	}
	for i, c := range "ABCDEF" {
		t[c] = byte(10 + i)
	}
	return t
}()
