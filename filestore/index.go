package filestore

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/annalsdb/annals"
	"github.com/cockroachdb/pebble/v2"
)

// The indexes live in Pebble under one-byte key prefixes. Every entry is derived from the log,
// so the whole database can be deleted and rebuilt from it. Index entries point at runs of
// consecutive records of one group (an append's events, or consecutive events of one category
// or type), so an append of many events costs a few keys, not one per event.
//
//	s stream 0x00 first-revision → first-position, offset, count   (a stream's events)
//	c category 0x00 first-position → offset, count                 (a category's events)
//	t type 0x00 first-position → offset, count                     (an event type's events)
//	p first-position → offset                                      (each group)
//	m stream → base, flags, metadata offset                        (stream state)
//	w → next position, log end, last time                          (what the index covers)
//
// Numbers are big endian in keys (so they sort) and little endian in values. Stream ids, types
// and categories hold no control characters, so 0x00 ends them unambiguously.
const (
	prefixStream    = 's'
	prefixCategory  = 'c'
	prefixType      = 't'
	prefixGroup     = 'p'
	prefixState     = 'm'
	prefixWatermark = 'w'
)

var watermarkKey = []byte{prefixWatermark}

func nameKey(prefix byte, name string, n uint64) []byte {
	k := make([]byte, 0, 2+len(name)+8)
	k = append(k, prefix)
	k = append(k, name...)
	k = append(k, 0)
	return binary.BigEndian.AppendUint64(k, n)
}

// nameBounds returns the key range holding every entry of name under prefix.
func nameBounds(prefix byte, name string) (lower, upper []byte) {
	lower = append(append([]byte{prefix}, name...), 0)
	upper = append(append([]byte{prefix}, name...), 1)
	return lower, upper
}

func groupKey(pos uint64) []byte {
	return binary.BigEndian.AppendUint64([]byte{prefixGroup}, pos)
}

func stateKey(stream string) []byte { return append([]byte{prefixState}, stream...) }

// run is the value of s, c and t entries: where a run of consecutive records starts.
type run struct {
	firstPos uint64
	offset   uint64
	count    uint32
}

func (r run) encode() []byte {
	b := make([]byte, 20)
	binary.LittleEndian.PutUint64(b, r.firstPos)
	binary.LittleEndian.PutUint64(b[8:], r.offset)
	binary.LittleEndian.PutUint32(b[16:], r.count)
	return b
}

func decodeRun(b []byte) (run, error) {
	if len(b) != 20 {
		return run{}, fmt.Errorf("%w: index entry of %d bytes, want 20 (rebuild the index: delete the index directory)", annals.ErrCorrupt, len(b))
	}
	return run{
		firstPos: binary.LittleEndian.Uint64(b),
		offset:   binary.LittleEndian.Uint64(b[8:]),
		count:    binary.LittleEndian.Uint32(b[16:]),
	}, nil
}

// streamIndexState is the stored state of a stream beyond its events.
type streamIndexState struct {
	base         uint64 // first revision of the current incarnation (after a soft delete)
	tombstonePos uint64 // position of the $tombstone event; 0 for none
	metaOffset   uint64 // log offset of the latest $metadata record; 0 for none
}

// tombstonedAt reports whether the stream is tombstoned as of position pos.
func (s streamIndexState) tombstonedAt(pos uint64) bool {
	return s.tombstonePos != 0 && s.tombstonePos <= pos
}

func (s streamIndexState) encode() []byte {
	b := make([]byte, 24)
	binary.LittleEndian.PutUint64(b, s.base)
	binary.LittleEndian.PutUint64(b[8:], s.tombstonePos)
	binary.LittleEndian.PutUint64(b[16:], s.metaOffset)
	return b
}

func decodeStreamIndexState(b []byte) (streamIndexState, error) {
	if len(b) != 24 {
		return streamIndexState{}, fmt.Errorf("%w: stream state of %d bytes, want 24 (rebuild the index: delete the index directory)", annals.ErrCorrupt, len(b))
	}
	return streamIndexState{
		base:         binary.LittleEndian.Uint64(b),
		tombstonePos: binary.LittleEndian.Uint64(b[8:]),
		metaOffset:   binary.LittleEndian.Uint64(b[16:]),
	}, nil
}

// watermark records how much of the log the index covers.
type watermark struct {
	nextPos   uint64 // position the next event will get
	end       uint64 // log offset just past the last indexed group
	lastNanos int64  // time of the last indexed event
}

func (w watermark) encode() []byte {
	b := make([]byte, 24)
	binary.LittleEndian.PutUint64(b, w.nextPos)
	binary.LittleEndian.PutUint64(b[8:], w.end)
	binary.LittleEndian.PutUint64(b[16:], uint64(w.lastNanos))
	return b
}

func readWatermark(db *pebble.DB) (w watermark, found bool, err error) {
	v, closer, err := db.Get(watermarkKey)
	if errors.Is(err, pebble.ErrNotFound) {
		return watermark{nextPos: 1}, false, nil
	}
	if err != nil {
		return w, false, err
	}
	defer closer.Close()
	if len(v) != 24 {
		return w, false, fmt.Errorf("%w: index watermark of %d bytes (rebuild the index: delete the index directory)", annals.ErrCorrupt, len(v))
	}
	return watermark{
		nextPos:   binary.LittleEndian.Uint64(v),
		end:       binary.LittleEndian.Uint64(v[8:]),
		lastNanos: int64(binary.LittleEndian.Uint64(v[16:])),
	}, true, nil
}

// getStreamState reads the stored state of stream; a stream never seen has the zero state.
func getStreamState(r pebble.Reader, stream string) (streamIndexState, error) {
	v, closer, err := r.Get(stateKey(stream))
	if errors.Is(err, pebble.ErrNotFound) {
		return streamIndexState{}, nil
	}
	if err != nil {
		return streamIndexState{}, err
	}
	defer closer.Close()
	return decodeStreamIndexState(v)
}

// indexBuilder turns groups of the log into index entries, in one Pebble batch. It serves
// both the live indexer and recovery.
type indexBuilder struct {
	db     *pebble.DB
	batch  *pebble.Batch
	states map[string]streamIndexState // states changed in this batch
	mark   watermark
}

func newIndexBuilder(db *pebble.DB, mark watermark) *indexBuilder {
	return &indexBuilder{db: db, batch: db.NewBatch(), states: map[string]streamIndexState{}, mark: mark}
}

func (ix *indexBuilder) state(stream string) (streamIndexState, error) {
	if st, ok := ix.states[stream]; ok {
		return st, nil
	}
	return getStreamState(ix.db, stream)
}

// addGroup indexes a group decoded by decodeGroup, at log offset off. Its first position must
// be the next one expected. An error leaves the builder unusable: the caller must not commit.
func (ix *indexBuilder) addGroup(h groupHeader, recs []rawRecord, off uint64) error {
	end := off + uint64(groupHeaderSize) + uint64(h.bodyLen)
	if len(recs) == 0 {
		ix.mark.end = end
		return nil
	}
	for i := range recs {
		if want := ix.mark.nextPos + uint64(i); recs[i].pos != want {
			return fmt.Errorf("%w: record %d of the group at log offset %d has position %d, want %d", annals.ErrCorrupt, i, off, recs[i].pos, want)
		}
	}
	ix.batch.Set(groupKey(h.firstPos), binary.LittleEndian.AppendUint64(nil, off), nil)
	streams, cats, types := runBuilder{prefix: prefixStream}, runBuilder{prefix: prefixCategory}, runBuilder{prefix: prefixType}
	recOff := off + groupHeaderSize
	for i := range recs {
		rec := &recs[i]
		streams.add(ix.batch, rec.stream, rec, recOff)
		cats.add(ix.batch, []byte(annals.Category(string(rec.stream))), rec, recOff)
		types.add(ix.batch, rec.typ, rec, recOff)
		if err := ix.trackState(rec, recOff); err != nil {
			return err
		}
		recOff += uint64(rec.size)
		ix.mark.nextPos++
		ix.mark.lastNanos = rec.nanos
	}
	streams.flush(ix.batch)
	cats.flush(ix.batch)
	types.flush(ix.batch)
	ix.mark.end = end
	return nil
}

// runBuilder gathers consecutive records of one name (stream, category or type) into one index
// entry. A stream run also needs contiguous revisions.
type runBuilder struct {
	prefix             byte
	name               []byte
	firstPos, firstRev uint64
	offset             uint64
	count              uint32
}

func (rb *runBuilder) add(b *pebble.Batch, name []byte, rec *rawRecord, off uint64) {
	if rb.count > 0 && bytes.Equal(rb.name, name) && (rb.prefix != prefixStream || rb.firstRev+uint64(rb.count) == rec.rev) {
		rb.count++
		return
	}
	rb.flush(b)
	*rb = runBuilder{prefix: rb.prefix, name: name, firstPos: rec.pos, firstRev: rec.rev, offset: off, count: 1}
}

func (rb *runBuilder) flush(b *pebble.Batch) {
	if rb.count == 0 {
		return
	}
	if rb.prefix == prefixStream {
		b.Set(nameKey(rb.prefix, string(rb.name), rb.firstRev), run{firstPos: rb.firstPos, offset: rb.offset, count: rb.count}.encode(), nil)
	} else {
		b.Set(nameKey(rb.prefix, string(rb.name), rb.firstPos), run{firstPos: rb.firstPos, offset: rb.offset, count: rb.count}.encode(), nil)
	}
	rb.count = 0
}

// trackState updates the stored state of a stream for the record: creation on its first event,
// and the effect of the system events of its meta stream.
func (ix *indexBuilder) trackState(rec *rawRecord, off uint64) error {
	stream := string(rec.stream)
	if rec.rev == 0 {
		if _, known := ix.states[stream]; !known {
			st, err := ix.state(stream)
			if err != nil {
				return err
			}
			ix.states[stream] = st
		}
	}
	target, isMeta := metaTarget(stream)
	if !isMeta {
		return nil
	}
	st, err := ix.state(target)
	if err != nil {
		return err
	}
	switch string(rec.typ) {
	case annals.MetadataEventType:
		st.metaOffset = off
	case annals.DeletedEventType:
		var d deletedData
		if err := json.Unmarshal(rec.data, &d); err != nil {
			return fmt.Errorf("%w: $deleted event at log offset %d: %w", annals.ErrCorrupt, off, err)
		}
		st.base = d.Revision + 1
	case annals.TombstoneEventType:
		st.tombstonePos = rec.pos
	}
	ix.states[target] = st
	return nil
}

// deletedData is the body of a $deleted event.
type deletedData struct {
	Revision uint64 `json:"revision"`
}

// metaTarget returns the stream whose meta stream is stream, if it is one.
func metaTarget(stream string) (string, bool) {
	const p = "$meta-"
	if len(stream) > len(p) && stream[:len(p)] == p {
		return stream[len(p):], true
	}
	return "", false
}

// commit writes the batch with the states and the watermark, without syncing: the log is the
// durable record, and recovery re-indexes what a crash loses.
func (ix *indexBuilder) commit() error {
	for stream, st := range ix.states {
		ix.batch.Set(stateKey(stream), st.encode(), nil)
	}
	ix.batch.Set(watermarkKey, ix.mark.encode(), nil)
	if err := ix.batch.Commit(pebble.NoSync); err != nil {
		return fmt.Errorf("write index: %w", err)
	}
	ix.batch = ix.db.NewBatch()
	clear(ix.states)
	return nil
}
