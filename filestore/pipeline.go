package filestore

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/annalsdb/annals"
	"github.com/annalsdb/annals/internal/rules"
)

// The write pipeline, three goroutines:
//
//	sequencer: takes requests, checks expectations, assigns revisions, positions and time,
//	           and encodes a group of the appends waiting, which it queues for the syncer
//	syncer:    writes every queued group with one write and makes them durable with one
//	           fdatasync (group commit), then answers their appends, in order, and passes the
//	           groups on; meanwhile the sequencer is already encoding the next groups
//	indexer:   stores their index entries (Pebble, unsynced) and publishes the new head,
//	           which wakes subscribers
//
// An append is answered once its group is durable; reads first wait until the index has caught
// up with every answered append (Store.visibleHead), so a caller always reads its own writes.
// A storage failure in any stage stops the store (see Store.fail): the in-memory state then runs
// ahead of the disk, and only a reopen, which recovers from the log, can make them agree again.

type reqKind uint8

const (
	kindAppend reqKind = iota
	kindSetMetadata
	kindDelete
	kindTombstone
)

type request struct {
	kind     reqKind
	stream   string
	expected annals.ExpectedRevision
	events   []annals.Event // the events of an append, or the $metadata event
	size     int            // encoded size of the events
	done     chan reply
}

type reply struct {
	res annals.AppendResult
	err error
}

func (r *request) answer(res annals.AppendResult, err error) { r.done <- reply{res, err} }

// submit hands r to the sequencer and waits for its answer.
func (s *Store) submit(ctx context.Context, r *request) (annals.AppendResult, error) {
	if err := s.failed(); err != nil {
		return annals.AppendResult{}, err
	}
	if err := ctx.Err(); err != nil {
		return annals.AppendResult{}, err
	}
	r.done = make(chan reply, 1)
	select {
	case s.reqs <- r:
	case <-s.closing:
		return annals.AppendResult{}, annals.ErrClosed
	case <-ctx.Done():
		return annals.AppendResult{}, ctx.Err()
	}
	select {
	case rep := <-r.done:
		return rep.res, rep.err
	case <-ctx.Done():
		return annals.AppendResult{}, ctx.Err()
	case <-s.stopped:
		select {
		case rep := <-r.done:
			return rep.res, rep.err
		default:
			return annals.AppendResult{}, annals.ErrClosed
		}
	}
}

// group is what one write puts in the log.
type group struct {
	seg     *segment
	off     uint64 // log offset of the group
	buf     []byte
	count   uint32
	lastPos uint64
	acks    []ack
}

// ack is the answer a request gets once its group has passed: a result, or a refusal
// (conflict, stream not found or deleted) decided against the state the groups before it
// leave, which must be durable before the refusal reports it.
type ack struct {
	r   *request
	res annals.AppendResult
	err error
}

func (g *group) end() uint64 { return g.off + uint64(len(g.buf)) }

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

func (st *streamState) exists() bool { return st.next > st.base }

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
	toSync     chan *group
	synced     chan struct{} // a signal from the syncer after each sync
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

func (s *Store) start() {
	s.wg.Add(4)
	go func() { defer s.wg.Done(); s.seq.run() }()
	go func() { defer s.wg.Done(); s.syncLoop() }()
	go func() { defer s.wg.Done(); s.indexLoop(s.syncq.toIndex) }()
	go func() { defer s.wg.Done(); s.zero.run(s) }()
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

// syncQueue hands groups from the sequencer to the syncer, and on to the indexer, in order.
type syncQueue struct {
	mu      sync.Mutex
	cond    sync.Cond
	queue   []*group // groups not yet passed on, in log order
	pending []byte   // the bytes of the queued groups not yet written
	seg     *segment // the segment pending goes to
	pendOff uint64   // the log offset of pending
	written uint64   // log offset after the last group written to the file
	queued  uint64   // log offset after the last group queued
	durable uint64   // log offset up to which the log is synced
	lastPos uint64   // position of the last event of the groups passed on
	// queuedReqs counts the requests in the groups queued; startedReqs is its value when the
	// last sync started, and lastCovered how many requests that sync covered.
	queuedReqs, startedReqs, lastCovered uint64
	closed                               bool // the sequencer has stopped
	toIndex                              chan []*group
}

func (q *syncQueue) init(durable, lastPos uint64) {
	q.cond.L = &q.mu
	q.written, q.queued, q.durable, q.lastPos = durable, durable, durable, lastPos
	q.toIndex = make(chan []*group, 64)
}

// pushGroup queues a group (or an empty one that only carries answers) for the syncer.
func (s *Store) pushGroup(g *group) {
	q := &s.syncq
	q.mu.Lock()
	defer q.mu.Unlock()
	q.queue = append(q.queue, g)
	if g.count > 0 {
		if len(q.pending) == 0 {
			// A new segment is only begun once everything before it is durable, so pending
			// never spans two segments.
			q.seg, q.pendOff = g.seg, g.off
		}
		q.pending = append(q.pending, g.buf...)
		q.queued = g.end()
		q.queuedReqs += uint64(len(g.acks))
	}
	s.passOnLocked()
	q.cond.Broadcast()
}

// closeQueue tells the sync workers that no more groups will come.
func (s *Store) closeQueue() {
	q := &s.syncq
	q.mu.Lock()
	q.closed = true
	q.cond.Broadcast()
	q.mu.Unlock()
}

// waitDurable blocks until the log is synced up to off, or the store has failed.
func (s *Store) waitDurable(off uint64) error {
	q := &s.syncq
	q.mu.Lock()
	defer q.mu.Unlock()
	for q.durable < off {
		if err := s.failed(); err != nil {
			return err
		}
		q.cond.Wait()
	}
	return nil
}

// syncLoop is the syncer: it writes the queued groups with one write and syncs them with one
// fdatasync, while the sequencer goes on queueing the next ones. A completed sync makes every
// group queued before it durable; those are answered at once.
func (s *Store) syncLoop() {
	q := &s.syncq
	q.mu.Lock()
	defer q.mu.Unlock()
	var spare []byte
	for {
		for !q.closed && q.queued <= q.written {
			q.cond.Wait()
		}
		if q.queued <= q.written {
			s.passOnLocked()
			close(q.toIndex)
			return
		}
		q.gatherLocked()
		buf, seg, off := q.pending, q.seg, q.pendOff
		q.pending, spare = spare[:0], nil
		target := q.queued
		q.lastCovered = q.queuedReqs - q.startedReqs
		q.startedReqs = q.queuedReqs
		q.mu.Unlock()
		err := s.failed() // after a failure, write nothing more
		if err == nil {
			if werr := s.zero.write(seg, buf, int64(off-seg.base)); werr != nil {
				err = s.fail(fmt.Errorf("write %s: %w", seg.path, werr))
			}
		}
		if err == nil {
			s.zero.poke()
			err = s.datasync(seg, 0)
		}
		q.mu.Lock()
		spare = buf
		q.written = target
		if err == nil {
			q.durable = target
			s.durable.Store(target)
			s.mark.set(target)
		}
		s.passOnLocked()
		q.cond.Broadcast()
	}
}

// maxGather bounds how long a sync waits for more appends; see gatherLocked.
const maxGather = 200 * time.Microsecond

// gatherLocked waits, briefly, until as many appends are waiting to be synced as the last sync
// covered. The writers that sync answered usually send their next append within tens of
// microseconds; a sync that waits for them covers them all, where one that starts at once
// leaves most of them to the sync after (PostgreSQL's commit_delay, made adaptive). A lone
// writer never waits: one append is all the last sync covered.
func (q *syncQueue) gatherLocked() {
	want := q.lastCovered
	if want <= 1 || q.closed || q.queuedReqs-q.startedReqs >= want {
		return
	}
	deadline := time.Now().Add(maxGather)
	t := time.AfterFunc(maxGather, func() {
		q.mu.Lock()
		q.cond.Broadcast()
		q.mu.Unlock()
	})
	defer t.Stop()
	for !q.closed && q.queuedReqs-q.startedReqs < want && time.Now().Before(deadline) {
		q.cond.Wait()
	}
}

// passOnLocked answers the groups at the front of the queue that are durable, in order, and
// hands them to the indexer; after a failure it answers them all with the error.
func (s *Store) passOnLocked() {
	q := &s.syncq
	failure := s.failed()
	i := 0
	// An empty group only carries the answers to repeated or refused appends, decided against
	// earlier groups: it may pass as soon as they have.
	for i < len(q.queue) && (failure != nil || q.queue[i].count == 0 || q.queue[i].end() <= q.durable) {
		i++
	}
	if i == 0 {
		return
	}
	ready := slices.Clone(q.queue[:i])
	q.queue = append(q.queue[:0], q.queue[i:]...)
	for _, g := range ready {
		if g.count > 0 && g.end() <= q.durable {
			q.lastPos = g.lastPos
		}
	}
	s.acked.Store(q.lastPos)
	var durable []*group
	for _, g := range ready {
		err := failure
		if g.count > 0 && g.end() <= q.durable {
			err = nil // it made it to disk before the failure
		}
		for _, a := range g.acks {
			if err != nil {
				a.r.answer(annals.AppendResult{}, err)
			} else {
				a.r.answer(a.res, a.err)
			}
		}
		if err == nil {
			durable = append(durable, g)
		}
	}
	if len(durable) > 0 {
		q.toIndex <- durable
	}
}

// indexLoop is the last stage.
func (s *Store) indexLoop(in <-chan []*group) {
	h := s.head.Load()
	ix := newIndexBuilder(s.db, watermark{nextPos: h.pos + 1, end: h.end})
	for batch := range in {
		// Take whatever else is waiting: one larger Pebble batch costs less than several.
	more:
		for {
			select {
			case b, ok := <-in:
				if !ok {
					break more
				}
				batch = append(batch, b...)
			default:
				break more
			}
		}
		if s.indexStopped.Load() {
			continue
		}
		// Groups that reached here are durable and answered: they are indexed even when a
		// later failure has stopped the store, so that reads still see them.
		var err error
		for _, g := range batch {
			if g.count == 0 {
				continue
			}
			var h groupHeader
			var recs []rawRecord
			if h, recs, err = decodeGroup(g.buf, g.off); err == nil {
				err = ix.addGroup(h, recs, g.off)
			}
			if err != nil {
				break
			}
		}
		if err == nil {
			err = ix.commit()
		}
		if err != nil {
			s.fail(err)
			s.indexStopped.Store(true)
			continue
		}
		old := s.head.Load()
		s.head.Store(&head{pos: ix.mark.nextPos - 1, end: ix.mark.end, changed: make(chan struct{})})
		close(old.changed)
	}
}

// visibleHead returns a head that includes every append answered so far, waiting (briefly:
// the indexer runs right behind the syncs) for the indexer to catch up.
func (s *Store) visibleHead(ctx context.Context) (*head, error) {
	target := s.acked.Load()
	for {
		h := s.head.Load()
		if h.pos >= target {
			return h, nil
		}
		if s.indexStopped.Load() {
			return nil, s.failed()
		}
		if err := s.wait(ctx, h); err != nil {
			return nil, err
		}
	}
}

// createSegment creates an empty (sparse) segment file at log offset base, syncs it and its
// directory, and adds it to the list.
func (s *Store) createSegment(base uint64) (*segment, error) {
	path := filepath.Join(s.logDir, segmentName(base))
	f, err := s.fs.OpenFile(path, os.O_CREATE|os.O_EXCL|os.O_RDWR, 0o644)
	if err != nil {
		return nil, fmt.Errorf("create segment: %w", err)
	}
	err = f.Truncate(s.opts.SegmentSize)
	if err == nil {
		err = f.Datasync()
	}
	if err == nil {
		err = s.fs.SyncDir(s.logDir)
	}
	if err != nil {
		// A segment shorter than its size must not stay: mapping it and reading past its end
		// would raise SIGBUS. An empty one left by a crash here is removed by the next Open.
		f.Close()
		if rerr := s.fs.Remove(path); rerr == nil {
			s.fs.SyncDir(s.logDir)
		}
		return nil, fmt.Errorf("create segment %s: %w", path, err)
	}
	seg := &segment{base: base, size: s.opts.SegmentSize, path: path, f: f}
	if err := seg.mmap(); err != nil {
		f.Close()
		return nil, err
	}
	if err := seg.openSyncers(s.fs); err != nil {
		seg.close()
		return nil, err
	}
	old := *s.segs.Load()
	segs := append(old[:len(old):len(old)], seg)
	s.segs.Store(&segs)
	return seg, nil
}

// zeroer keeps the part of the current segment just ahead of the writer filled with written
// zeros, so that the fdatasync after a write finds no block allocation to flush (which doubles
// its cost on ext4). It is an optimisation only: a failure stops it, not the store.
type zeroer struct {
	mu   sync.Mutex // held while a chunk of zeros is written, and by writes past upTo
	seg  *segment   // guarded by mu
	upTo atomic.Int64
	wake chan struct{}
}

func (z *zeroer) init(seg *segment, upTo int64) {
	z.seg = seg
	z.upTo.Store(upTo)
	z.wake = make(chan struct{}, 1)
}

func (z *zeroer) switchTo(seg *segment) {
	z.mu.Lock()
	z.seg = seg
	z.upTo.Store(0)
	z.mu.Unlock()
}

func (z *zeroer) current() *segment {
	z.mu.Lock()
	defer z.mu.Unlock()
	return z.seg
}

func (z *zeroer) poke() {
	select {
	case z.wake <- struct{}{}:
	default:
	}
}

// write writes b at off of seg; the zeroer never writes where data may be.
func (z *zeroer) write(seg *segment, b []byte, off int64) error {
	end := off + int64(len(b))
	if end <= z.upTo.Load() {
		_, err := seg.f.WriteAt(b, off)
		return err
	}
	z.mu.Lock()
	defer z.mu.Unlock()
	_, err := seg.f.WriteAt(b, off)
	if err == nil && z.seg == seg && z.upTo.Load() < end {
		z.upTo.Store(end)
	}
	return err
}

func (z *zeroer) run(s *Store) {
	zeros := make([]byte, 1<<20)
	for {
		select {
		case <-z.wake:
		case <-s.closing:
			return
		}
		q := &s.seq
		ahead := int64(min(max(q.written.Load(), 256<<10), 16<<20))
		// Zero in large steps: start only when less than half the distance is left.
		if z.upTo.Load()-int64(q.writeOff.Load()-z.current().base) > ahead/2 {
			continue
		}
		var seg *segment
		for {
			z.mu.Lock()
			seg = z.seg
			from := z.upTo.Load()
			target := min(seg.size, int64(q.writeOff.Load()-seg.base)+ahead)
			if from >= target {
				z.mu.Unlock()
				break
			}
			n := min(int64(len(zeros)), target-from)
			_, err := seg.f.WriteAt(zeros[:n], from)
			if err == nil {
				z.upTo.Store(from + n)
			}
			z.mu.Unlock()
			if err != nil {
				s.log.Warn("annals: could not pre-fill the log with zeros; appends may be slower", "err", err)
				return
			}
		}
		if err := s.datasync(seg, 1); err != nil {
			return
		}
	}
}

// datasync syncs seg through the descriptor of who (0 for the syncer, 1 for the zeroer); a
// failure stops the store. Each has its own descriptor because the kernel reports a write-back
// error once per open file description: a shared one would let the zeroer's sync swallow an
// error and the syncer's report success for lost data.
func (s *Store) datasync(seg *segment, who int) error {
	if err := seg.syncers[who].Datasync(); err != nil {
		return s.fail(fmt.Errorf("fdatasync %s: %w", seg.path, err))
	}
	return s.failed()
}
