package filestore

import (
	"encoding/binary"
	"fmt"
	"hash/crc32"
	"time"

	"github.com/annalsdb/annals"
)

// The log is a sequence of groups. A group is what one write puts on disk: a header, then the
// records of the events of one or more whole appends. A group is valid only when its header and
// every record in it check out, so an append is on disk entirely or not at all.
//
// Group header (groupHeaderSize bytes, little endian):
//
//	magic u32 | crc32c of bytes 8..40 u32 | body length u32 | event count u32 |
//	synced offset u64 | first position u64 | reserved u64
//
// "synced offset" is the log offset known durable when the group was written. Recovery uses it
// to tell a torn tail (a crash cut writes that were never acknowledged) from corruption of data
// that had been synced.
//
// Event record:
//
//	payload length u32 | crc32c of payload u32 | payload
//
// payload:
//
//	position u64 | revision u64 | unix nanoseconds i64 | id [16] |
//	stream length u16 | stream | type length u16 | type | content type length u16 | content type |
//	data length u32 | data | metadata length u32 | metadata
const (
	groupMagic      = 0x414e4c47 // "GLNA" on disk
	groupHeaderSize = 40
	recordHeader    = 8
	fixedPayload    = 8 + 8 + 8 + 16 + 2 + 2 + 2 + 4 + 4
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

type groupHeader struct {
	bodyLen  uint32
	count    uint32
	synced   uint64
	firstPos uint64
}

func putGroupHeader(b []byte, h groupHeader) {
	binary.LittleEndian.PutUint32(b[0:], groupMagic)
	binary.LittleEndian.PutUint32(b[8:], h.bodyLen)
	binary.LittleEndian.PutUint32(b[12:], h.count)
	binary.LittleEndian.PutUint64(b[16:], h.synced)
	binary.LittleEndian.PutUint64(b[24:], h.firstPos)
	binary.LittleEndian.PutUint64(b[32:], 0)
	binary.LittleEndian.PutUint32(b[4:], crc32.Checksum(b[8:groupHeaderSize], castagnoli))
}

// parseGroupHeader reads a group header; ok is false when b does not hold a valid one.
func parseGroupHeader(b []byte) (h groupHeader, ok bool) {
	if len(b) < groupHeaderSize || binary.LittleEndian.Uint32(b) != groupMagic ||
		binary.LittleEndian.Uint32(b[4:]) != crc32.Checksum(b[8:groupHeaderSize], castagnoli) {
		return h, false
	}
	return groupHeader{
		bodyLen:  binary.LittleEndian.Uint32(b[8:]),
		count:    binary.LittleEndian.Uint32(b[12:]),
		synced:   binary.LittleEndian.Uint64(b[16:]),
		firstPos: binary.LittleEndian.Uint64(b[24:]),
	}, true
}

// decodeGroup decodes the records of the group g (from validGroup), checking every checksum.
// Its errors are about the bytes (a torn write or damage) and match annals.ErrCorrupt; whether
// the records' positions are the expected ones is the caller's business.
func decodeGroup(g []byte, off uint64) (groupHeader, []rawRecord, error) {
	h, _ := parseGroupHeader(g)
	recs := make([]rawRecord, 0, h.count)
	at := groupHeaderSize
	for i := range h.count {
		rec, err := decodeRecord(g[at:])
		if err != nil {
			return h, nil, fmt.Errorf("%w: record %d of the group at log offset %d: %w", annals.ErrCorrupt, i, off, err)
		}
		recs = append(recs, rec)
		at += rec.size
	}
	if len(recs) > 0 && recs[0].pos != h.firstPos {
		return h, nil, fmt.Errorf("%w: the group at log offset %d says it starts at position %d, its first record has %d", annals.ErrCorrupt, off, h.firstPos, recs[0].pos)
	}
	return h, recs, nil
}

// recordSize is the encoded size of an event record.
func recordSize(stream string, e *annals.Event) int {
	return recordHeader + fixedPayload + len(stream) + len(e.Type) + len(e.ContentType) + len(e.Data) + len(e.Metadata)
}

// appendRecord encodes one event record onto b.
func appendRecord(b []byte, pos, rev uint64, t int64, stream string, e *annals.Event) []byte {
	start := len(b)
	b = append(b, make([]byte, recordHeader)...)
	b = binary.LittleEndian.AppendUint64(b, pos)
	b = binary.LittleEndian.AppendUint64(b, rev)
	b = binary.LittleEndian.AppendUint64(b, uint64(t))
	b = append(b, e.ID[:]...)
	b = binary.LittleEndian.AppendUint16(b, uint16(len(stream)))
	b = append(b, stream...)
	b = binary.LittleEndian.AppendUint16(b, uint16(len(e.Type)))
	b = append(b, e.Type...)
	b = binary.LittleEndian.AppendUint16(b, uint16(len(e.ContentType)))
	b = append(b, e.ContentType...)
	b = binary.LittleEndian.AppendUint32(b, uint32(len(e.Data)))
	b = append(b, e.Data...)
	b = binary.LittleEndian.AppendUint32(b, uint32(len(e.Metadata)))
	b = append(b, e.Metadata...)
	payload := b[start+recordHeader:]
	binary.LittleEndian.PutUint32(b[start:], uint32(len(payload)))
	binary.LittleEndian.PutUint32(b[start+4:], crc32.Checksum(payload, castagnoli))
	return b
}

// rawRecord is a decoded record whose byte fields still point into the log (no copies).
type rawRecord struct {
	pos, rev    uint64
	nanos       int64
	id          annals.UUID
	stream, typ []byte
	contentType []byte
	data, meta  []byte
	size        int // encoded size, header included
}

// errBadRecord is what decodeRecord returns for bytes that are not a valid record; callers
// wrap it with annals.ErrCorrupt and the location.
type errBadRecord string

func (e errBadRecord) Error() string { return string(e) }

// decodeRecord decodes the record at the start of b, checking its checksum.
//
// It returns the record by value: the read loops keep it in a variable on their stack, where
// storing its fields needs no GC write barriers (a pointer to it passed through a callback
// would instead move it to the heap, and cost an allocation per event).
func decodeRecord(b []byte) (rawRecord, error) {
	var r rawRecord
	if len(b) < recordHeader {
		return r, errBadRecord("record header cut short")
	}
	n := int(binary.LittleEndian.Uint32(b))
	if n < fixedPayload || n > len(b)-recordHeader {
		return r, errBadRecord(fmt.Sprintf("record length %d out of range", n))
	}
	p := b[recordHeader : recordHeader+n]
	if crc32.Checksum(p, castagnoli) != binary.LittleEndian.Uint32(b[4:]) {
		return r, errBadRecord("record checksum mismatch")
	}
	r.size = recordHeader + n
	r.pos = binary.LittleEndian.Uint64(p)
	r.rev = binary.LittleEndian.Uint64(p[8:])
	r.nanos = int64(binary.LittleEndian.Uint64(p[16:]))
	copy(r.id[:], p[24:40])
	p = p[40:]
	var ok bool
	if r.stream, p, ok = cut16(p); !ok {
		return r, errBadRecord("record stream cut short")
	}
	if r.typ, p, ok = cut16(p); !ok {
		return r, errBadRecord("record type cut short")
	}
	if r.contentType, p, ok = cut16(p); !ok {
		return r, errBadRecord("record content type cut short")
	}
	if r.data, p, ok = cut32(p); !ok {
		return r, errBadRecord("record data cut short")
	}
	if r.meta, p, ok = cut32(p); !ok || len(p) != 0 {
		return r, errBadRecord("record metadata cut short")
	}
	return r, nil
}

func cut16(p []byte) (field, rest []byte, ok bool) {
	if len(p) < 2 {
		return nil, nil, false
	}
	n := int(binary.LittleEndian.Uint16(p))
	if len(p) < 2+n {
		return nil, nil, false
	}
	return p[2 : 2+n], p[2+n:], true
}

func cut32(p []byte) (field, rest []byte, ok bool) {
	if len(p) < 4 {
		return nil, nil, false
	}
	n := int(binary.LittleEndian.Uint32(p))
	if n < 0 || len(p)-4 < n {
		return nil, nil, false
	}
	return p[4 : 4+n], p[4+n:], true
}

// copier copies records out of the log into RecordedEvents for one read. It shares the
// strings of repeated names (stream ids, types; at most 4096 kept) and carves data out of
// 64 KiB slabs, so that a long read allocates little per event.
type copier struct {
	names map[string]string
	// the last few streams, types and content types returned, checked before the map
	streams, types, contentTypes recentNames
	slab                         []byte
	touched                      byte // the sum of what touch read, so that its reads are kept
}

// recentNames are the last few names of one field that a copier returned. A read of $all
// alternates between a few event types and between the streams of interleaved appends, so a
// handful of them serve most events without hashing.
type recentNames struct {
	names [4]string
	last  int // the index of the name returned last, checked first
	next  int // the index the next new name goes to
}

func newCopier() *copier { return &copier{names: map[string]string{}} }

// name returns b as a string, shared with earlier calls; r holds the field's recent names.
func (c *copier) name(b []byte, r *recentNames) string {
	if r.names[r.last] == string(b) {
		return r.names[r.last]
	}
	for i := range r.names {
		if r.names[i] == string(b) {
			r.last = i
			return r.names[i]
		}
	}
	s, ok := c.names[string(b)]
	if !ok {
		if len(c.names) >= 4096 {
			clear(c.names)
		}
		s = string(b)
		c.names[s] = s
	}
	r.names[r.next] = s
	r.last, r.next = r.next, (r.next+1)%len(r.names)
	return s
}

// bytes returns a copy of b (nil when empty) carved from the current slab.
func (c *copier) bytes(b []byte) []byte {
	if len(b) == 0 {
		return nil
	}
	if len(b) > 4096 {
		return append([]byte(nil), b...)
	}
	if len(c.slab)+len(b) > cap(c.slab) {
		c.slab = make([]byte, 0, 64<<10)
	}
	start := len(c.slab)
	c.slab = append(c.slab, b...)
	return c.slab[start:len(c.slab):len(c.slab)]
}

// event copies r out of the log.
func (c *copier) event(r *rawRecord) annals.RecordedEvent {
	return annals.RecordedEvent{
		ID:          r.id,
		Stream:      c.name(r.stream, &c.streams),
		Type:        c.name(r.typ, &c.types),
		ContentType: c.name(r.contentType, &c.contentTypes),
		Data:        c.bytes(r.data),
		Metadata:    c.bytes(r.meta),
		Revision:    r.rev,
		Position:    r.pos,
		Time:        time.Unix(0, r.nanos).UTC(),
	}
}
