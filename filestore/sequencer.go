package filestore

import (
	"encoding/json"
	"fmt"
	"sync/atomic"
	"time"

	"github.com/annalsdb/annals"
	"github.com/annalsdb/annals/internal/rules"
)

// streamState is what the sequencer knows of a stream.
type streamState struct {
	next       uint64 // the revision the next event gets
	base       uint64 // first revision of the current incarnation; the stream exists iff next > base
	tombstoned bool
	lastID     annals.UUID // id of the event at next-1
	lastPos    uint64      // position of the last event written to the stream or its meta stream
	// pending holds the ids and positions of the stream's last events that may not be indexed
	// yet: those at revisions next-len(pending) … next-1.
	pending []idPos
}

type idPos struct {
	id  annals.UUID
	pos uint64
}

// sequencer is the first stage; its fields belong to its goroutine.
type sequencer struct {
	s         *Store
	cache     map[string]*streamState
	nextPos   uint64
	lastNanos int64
	cur       *segment
	writeOff  atomic.Uint64 // log offset of the next write (read by the zeroer)
	written   atomic.Uint64 // bytes written since open (read by the zeroer)
	// pendingIDs counts the entries of the cached states' pending lists.
	pendingIDs int
	carry      *request // a request that did not fit the last group
}

const maxGroupBytes = 1 << 20

func (q *sequencer) init(s *Store, mark watermark) {
	q.s = s
	q.cache = make(map[string]*streamState)
	q.nextPos = mark.nextPos
	q.lastNanos = mark.lastNanos
	segs := *s.segs.Load()
	q.cur = segs[len(segs)-1]
	q.writeOff.Store(max(mark.end, q.cur.base))
	s.zero.init(q.cur, int64(q.writeOff.Load()-q.cur.base))
}

func (q *sequencer) run() {
	defer q.s.closeQueue()
	for {
		r := q.carry
		q.carry = nil
		if r == nil {
			select {
			case r = <-q.s.reqs:
			case <-q.s.closing:
				q.refuseQueued()
				return
			}
		}
		// Only between groups: a request being decided holds states that must stay.
		if len(q.cache) >= q.s.opts.CachedStreams {
			q.evict()
		}
		if q.pendingIDs > maxPendingIDs {
			for _, st := range q.cache {
				q.prunePending(st)
			}
		}
		g, err := q.newGroup(r.size)
		if err != nil {
			r.answer(annals.AppendResult{}, err)
			continue
		}
		q.add(g, r)
	fill:
		for len(g.buf) < maxGroupBytes {
			select {
			case r := <-q.s.reqs:
				if g.end()+uint64(r.size) > q.cur.end() {
					q.carry = r
					break fill
				}
				q.add(g, r)
			default:
				break fill
			}
		}
		q.flush(g)
	}
}

// refuseQueued answers the requests still queued at Close.
func (q *sequencer) refuseQueued() {
	for {
		select {
		case r := <-q.s.reqs:
			r.answer(annals.AppendResult{}, annals.ErrClosed)
		default:
			return
		}
	}
}

// newGroup starts a group in the current segment, or in a new one when need bytes do not fit.
func (q *sequencer) newGroup(need int) (*group, error) {
	if err := q.s.failed(); err != nil {
		return nil, err
	}
	off := q.writeOff.Load()
	if off+uint64(groupHeaderSize+need) > q.cur.end() {
		if err := q.rotate(); err != nil {
			return nil, q.s.fail(err)
		}
		off = q.writeOff.Load()
	}
	if now := time.Now().UnixNano(); now > q.lastNanos {
		q.lastNanos = now
	}
	buf := make([]byte, groupHeaderSize, max(4096, groupHeaderSize+need))
	return &group{seg: q.cur, off: off, buf: buf}, nil
}

// rotate waits until the current segment is synced entirely, then starts a new one. Only the
// last segment can therefore hold a torn tail.
func (q *sequencer) rotate() error {
	if err := q.s.waitDurable(q.writeOff.Load()); err != nil {
		return err
	}
	seg, err := q.s.createSegment(q.cur.end())
	if err != nil {
		return err
	}
	q.cur = seg
	q.writeOff.Store(seg.base)
	q.s.zero.switchTo(seg)
	return nil
}

// add decides r and, unless it is refused or repeats an earlier append, adds its events to g.
// Its answer, whether a result or a refusal, waits for g: the state it was decided against
// may come from groups still in flight, and no answer may reveal a write that a crash could
// still take back.
func (q *sequencer) add(g *group, r *request) {
	if err := q.s.failed(); err != nil {
		r.answer(annals.AppendResult{}, err)
		return
	}
	res, err := q.decide(g, r)
	g.acks = append(g.acks, ack{r: r, res: res, err: err})
}

// decide checks r against the stream's state, with the shared rules (package rules), and
// writes its events into g. A repeated append writes nothing and returns the first result, and
// a refused one returns its error; both are answered with g all the same, so never before the
// state they report is durable.
func (q *sequencer) decide(g *group, r *request) (annals.AppendResult, error) {
	st, err := q.state(r.stream)
	if err != nil {
		return annals.AppendResult{}, err
	}
	rs := st.rule(r.stream)
	if r.kind == kindAppend {
		stored := func(from uint64, n int) ([]annals.UUID, []uint64, error) {
			found, err := q.idsAt(st, r.stream, from, uint64(n))
			ids, positions := make([]annals.UUID, len(found)), make([]uint64, len(found))
			for i, f := range found {
				ids[i], positions[i] = f.id, f.pos
			}
			return ids, positions, err
		}
		res, write, err := rules.Append(&rs, r.expected, r.events, stored)
		if !write {
			return res, err
		}
		return q.write(g, r.stream, st, r.events), nil
	}
	meta := annals.MetaStream(r.stream)
	mst, err := q.state(meta)
	if err != nil {
		return annals.AppendResult{}, err
	}
	var ev annals.Event
	switch r.kind {
	case kindSetMetadata:
		mrs := mst.rule(meta)
		if err := rules.SetMetadata(&rs, &mrs, r.expected); err != nil {
			return annals.AppendResult{}, err
		}
		ev = r.events[0]
	case kindDelete:
		if err := rules.Delete(&rs, r.expected); err != nil {
			return annals.AppendResult{}, err
		}
		data, _ := json.Marshal(deletedData{Revision: st.next - 1})
		ev = annals.Event{ID: annals.NewUUID(), Type: annals.DeletedEventType, ContentType: annals.ContentTypeJSON, Data: data}
		st.base = st.next
	case kindTombstone:
		if err := rules.Tombstone(&rs, r.expected); err != nil {
			return annals.AppendResult{}, err
		}
		ev = annals.Event{ID: annals.NewUUID(), Type: annals.TombstoneEventType, ContentType: annals.ContentTypeJSON, Data: []byte("{}")}
		st.tombstoned = true
	default:
		panic("filestore: unknown request kind")
	}
	res := q.write(g, meta, mst, []annals.Event{ev})
	st.lastPos = res.Position
	return res, nil
}

// rule is the state of the stream named name as the shared rules see it.
func (st *streamState) rule(name string) rules.Stream {
	return rules.Stream{Name: name, Next: st.next, Base: st.base, Tombstoned: st.tombstoned, LastID: st.lastID}
}

// idsAt returns the ids and positions of the stream's events at revisions from … from+n-1,
// which exist.
func (q *sequencer) idsAt(st *streamState, stream string, from, n uint64) ([]idPos, error) {
	out := make([]idPos, 0, n)
	firstPending := st.next - uint64(len(st.pending))
	if from < firstPending {
		err := q.s.scanStream(stream, from, min(from+n, firstPending), func(rec *rawRecord) bool {
			out = append(out, idPos{rec.id, rec.pos})
			return true
		})
		if err != nil {
			return nil, err
		}
	}
	for rev := max(from, firstPending); rev < from+n; rev++ {
		out = append(out, st.pending[rev-firstPending])
	}
	if uint64(len(out)) != n {
		return nil, fmt.Errorf("%w: stream %q: index lacks revisions %d to %d", annals.ErrCorrupt, stream, from, from+n-1)
	}
	return out, nil
}

// write encodes events as the next ones of stream into g.
func (q *sequencer) write(g *group, stream string, st *streamState, events []annals.Event) annals.AppendResult {
	q.prunePending(st)
	for i := range events {
		e := &events[i]
		g.buf = appendRecord(g.buf, q.nextPos, st.next, q.lastNanos, stream, e)
		st.pending = append(st.pending, idPos{e.ID, q.nextPos})
		q.pendingIDs++
		st.lastID = e.ID
		st.lastPos = q.nextPos
		g.lastPos = q.nextPos
		st.next++
		q.nextPos++
		g.count++
	}
	return annals.AppendResult{Revision: st.next - 1, Position: q.nextPos - 1}
}

// prunePending forgets the pending events that are now indexed.
func (q *sequencer) prunePending(st *streamState) {
	visible := q.s.head.Load().pos
	i := 0
	for i < len(st.pending) && st.pending[i].pos <= visible {
		i++
	}
	if i == len(st.pending) {
		st.pending = nil // let a large append's ids go
	} else if i > 0 {
		st.pending = append(st.pending[:0], st.pending[i:]...)
	}
	q.pendingIDs -= i
}

// state returns the sequencer's state of stream, loading it from the index on first use.
func (q *sequencer) state(stream string) (*streamState, error) {
	if st, ok := q.cache[stream]; ok {
		return st, nil
	}
	stored, err := getStreamState(q.s.db, stream)
	if err != nil {
		return nil, fmt.Errorf("read stream state: %w", err)
	}
	st := &streamState{base: stored.base, tombstoned: stored.tombstonePos != 0}
	last, found, err := q.s.lastRun(stream)
	if err != nil {
		return nil, err
	}
	if found {
		st.next = last.firstRev + uint64(last.count)
		st.lastPos = last.firstPos + uint64(last.count) - 1
		if err := q.s.scanStream(stream, st.next-1, st.next, func(rec *rawRecord) bool {
			st.lastID = rec.id
			return true
		}); err != nil {
			return nil, err
		}
	}
	q.cache[stream] = st
	return st, nil
}

// evict drops about half of the cached states whose events are all indexed.
func (q *sequencer) evict() {
	visible := q.s.head.Load().pos
	target := len(q.cache) / 2
	for name, st := range q.cache {
		if len(q.cache) <= target {
			return
		}
		if st.lastPos <= visible {
			q.pendingIDs -= len(st.pending)
			delete(q.cache, name)
		}
	}
}

// maxPendingIDs bounds the ids of indexed events that cached states may keep before the
// sequencer sweeps them all (a state is otherwise pruned only when its stream is written).
const maxPendingIDs = 1 << 16

// flush writes g to the log and passes it on to the syncer.
func (q *sequencer) flush(g *group) {
	if g.count > 0 {
		putGroupHeader(g.buf, groupHeader{
			bodyLen:  uint32(len(g.buf) - groupHeaderSize),
			count:    g.count,
			synced:   q.s.durable.Load(),
			firstPos: g.lastPos - uint64(g.count) + 1,
		})
		q.writeOff.Store(g.end())
		q.written.Add(uint64(len(g.buf)))
	} else {
		g.buf = g.buf[:0]
	}
	q.s.pushGroup(g)
}
