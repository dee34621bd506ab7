package wire

import (
	"github.com/annalsdb/annals"
	"google.golang.org/protobuf/encoding/protowire"
)

// AppendEvents appends events to b as the repeated RecordedEvent field num of a message (e.g.
// 1 for ReadAllResponse.events and EventBatch.events): the bytes proto.Marshal gives for that
// field of [RecordedToProto] of each event, built without the messages and without formatting
// the ids as strings. The strings are written as they are: the store validated them as UTF-8
// when the events were appended.
func AppendEvents(b []byte, num protowire.Number, events []annals.RecordedEvent) []byte {
	for i := range events {
		e := &events[i]
		b = protowire.AppendTag(b, num, protowire.BytesType)
		b = protowire.AppendVarint(b, uint64(recordedSize(e)))
		b = appendRecorded(b, e)
	}
	return b
}

// uuidSize is the length of the canonical form of a UUID, which [annals.UUID.String] gives.
const uuidSize = 36

func recordedSize(e *annals.RecordedEvent) int {
	n := 1 + 1 + uuidSize // the id is never empty
	n += bytesSize(len(e.Stream)) + bytesSize(len(e.Type)) + bytesSize(len(e.ContentType))
	n += bytesSize(len(e.Data)) + bytesSize(len(e.Metadata))
	n += varintSize(e.Revision) + varintSize(e.Position)
	t := timestampSize(e)
	return n + 1 + protowire.SizeVarint(uint64(t)) + t // the time is always set
}

// bytesSize is the size of a string or bytes field of one-byte tag with a value of n bytes: 0
// when empty, as proto3 omits it.
func bytesSize(n int) int {
	if n == 0 {
		return 0
	}
	return 1 + protowire.SizeBytes(n)
}

// varintSize is the size of a varint field of one-byte tag with value v: 0 when v is 0.
func varintSize(v uint64) int {
	if v == 0 {
		return 0
	}
	return 1 + protowire.SizeVarint(v)
}

// timestampSize is the size of the google.protobuf.Timestamp message of e.Time.
func timestampSize(e *annals.RecordedEvent) int {
	return varintSize(uint64(e.Time.Unix())) + varintSize(uint64(e.Time.Nanosecond()))
}

func appendRecorded(b []byte, e *annals.RecordedEvent) []byte {
	b = append(b, byte(recordedID)<<3|byte(protowire.BytesType), uuidSize)
	b = appendUUID(b, &e.ID)
	b = appendString(b, recordedStream, e.Stream)
	b = appendString(b, recordedType, e.Type)
	b = appendString(b, recordedContentType, e.ContentType)
	b = appendString(b, recordedData, e.Data)
	b = appendString(b, recordedMetadata, e.Metadata)
	b = appendVarint(b, recordedRevision, e.Revision)
	b = appendVarint(b, recordedPosition, e.Position)
	b = append(b, byte(recordedTime)<<3|byte(protowire.BytesType))
	b = protowire.AppendVarint(b, uint64(timestampSize(e)))
	b = appendVarint(b, timestampSeconds, uint64(e.Time.Unix()))
	return appendVarint(b, timestampNanos, uint64(e.Time.Nanosecond()))
}

func appendString[S string | []byte](b []byte, num protowire.Number, s S) []byte {
	if len(s) == 0 {
		return b
	}
	b = append(b, byte(num)<<3|byte(protowire.BytesType))
	b = protowire.AppendVarint(b, uint64(len(s)))
	return append(b, s...)
}

func appendVarint(b []byte, num protowire.Number, v uint64) []byte {
	if v == 0 {
		return b
	}
	return protowire.AppendVarint(append(b, byte(num)<<3|byte(protowire.VarintType)), v)
}

// appendUUID appends the canonical form of u, as [annals.UUID.String] gives it.
func appendUUID(b []byte, u *annals.UUID) []byte {
	const digits = "0123456789abcdef"
	var s [uuidSize]byte
	for j, i := range uuidDigits {
		s[i], s[i+1] = digits[u[j]>>4], digits[u[j]&0xf]
	}
	s[8], s[13], s[18], s[23] = '-', '-', '-', '-'
	return append(b, s[:]...)
}
