package filestore

import (
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/annalsdb/annals"
)

// syncQueue hands groups from the sequencer to the syncer, and on to the indexer, in order.
type syncQueue struct {
	mu struct {
		sync.Mutex
		queue   []*group // groups not yet passed on, in log order
		pending []byte   // the bytes of the queued groups not yet written
		seg     *segment // the segment pending goes to
		pendOff uint64   // the log offset of pending
		written uint64   // log offset after the last group written to the file
		queued  uint64   // log offset after the last group queued
		durable uint64   // log offset up to which the log is synced
		lastPos uint64   // position of the last event of the groups passed on
		// queuedReqs counts the requests in the groups queued; startedReqs is its value when
		// the last sync started, and lastCovered how many requests that sync covered.
		queuedReqs, startedReqs, lastCovered uint64
		closed                               bool // the sequencer has stopped
		// toIndex holds the groups passed on to the indexer and not yet taken by it, in log
		// order, and toIndexBytes their size; indexEnd is set when no more will come.
		toIndex      []*group
		toIndexBytes int
		indexEnd     bool
	}
	cond sync.Cond // on mu: signalled when a group is queued, synced or passed on, when the
	// indexer takes groups, and when the store fails
	// indexWake has a value when groups were added to toIndex (or indexEnd set) since the
	// indexer last looked; it never blocks whoever adds them.
	indexWake chan struct{}
}

// maxIndexBacklog bounds the bytes of the groups passed on and not yet taken by the indexer:
// beyond it the syncer waits before its next write, which holds the writers back until the
// indexer catches up (or the store fails).
const maxIndexBacklog = 64 << 20

func (q *syncQueue) init(durable, lastPos uint64) {
	q.cond.L = &q.mu
	q.mu.written, q.mu.queued, q.mu.durable, q.mu.lastPos = durable, durable, durable, lastPos
	q.indexWake = make(chan struct{}, 1)
}

// wakeAll wakes every goroutine waiting on the queue's condition, so that it sees a failure.
// The caller must not hold mu.
func (q *syncQueue) wakeAll() {
	q.mu.Lock()
	q.cond.Broadcast()
	q.mu.Unlock()
}

// wakeIndexerLocked tells the indexer that toIndex changed, without blocking.
func (q *syncQueue) wakeIndexerLocked() {
	select {
	case q.indexWake <- struct{}{}:
	default:
	}
}

// takeIndexBatch waits until groups were passed on to the indexer and returns them all, in log
// order; it returns false once the syncer has stopped and every group was taken. It never
// holds mu while it waits.
func (q *syncQueue) takeIndexBatch() ([]*group, bool) {
	for {
		q.mu.Lock()
		if len(q.mu.toIndex) > 0 {
			batch := q.mu.toIndex
			q.mu.toIndex, q.mu.toIndexBytes = nil, 0
			q.cond.Broadcast()
			q.mu.Unlock()
			return batch, true
		}
		end := q.mu.indexEnd
		q.mu.Unlock()
		if end {
			return nil, false
		}
		<-q.indexWake
	}
}

// pushGroup queues a group (or an empty one that only carries answers) for the syncer.
func (s *Store) pushGroup(g *group) {
	q := &s.syncq
	q.mu.Lock()
	defer q.mu.Unlock()
	q.mu.queue = append(q.mu.queue, g)
	if g.count > 0 {
		if len(q.mu.pending) == 0 {
			// A new segment is only begun once everything before it is durable, so pending
			// never spans two segments.
			q.mu.seg, q.mu.pendOff = g.seg, g.off
		}
		q.mu.pending = append(q.mu.pending, g.buf...)
		q.mu.queued = g.end()
		q.mu.queuedReqs += uint64(len(g.acks))
	}
	s.passOnLocked()
	q.cond.Broadcast()
}

// closeQueue tells the sync workers that no more groups will come.
func (s *Store) closeQueue() {
	q := &s.syncq
	q.mu.Lock()
	q.mu.closed = true
	q.cond.Broadcast()
	q.mu.Unlock()
}

// waitDurable blocks until the log is synced up to off, or the store has failed.
func (s *Store) waitDurable(off uint64) error {
	q := &s.syncq
	q.mu.Lock()
	defer q.mu.Unlock()
	for q.mu.durable < off {
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
		for !q.mu.closed && q.mu.queued <= q.mu.written {
			q.cond.Wait()
		}
		if q.mu.queued <= q.mu.written {
			s.passOnLocked()
			q.mu.indexEnd = true
			q.wakeIndexerLocked()
			return
		}
		// Hold the writers back while the indexer is far behind; a failure (such as an index
		// that cannot be written for lack of space) ends the wait, and everything queued is
		// then answered with it.
		for q.mu.toIndexBytes > maxIndexBacklog && s.failed() == nil {
			q.cond.Wait()
		}
		q.gatherLocked()
		buf, seg, off := q.mu.pending, q.mu.seg, q.mu.pendOff
		q.mu.pending, spare = spare[:0], nil
		target := q.mu.queued
		q.mu.lastCovered = q.mu.queuedReqs - q.mu.startedReqs
		q.mu.startedReqs = q.mu.queuedReqs
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
		q.mu.written = target
		if err == nil {
			q.mu.durable = target
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
// covered, or maxGather has passed. The writers that sync answered send their next appends
// soon after; a sync that waits for them covers them all, where one that starts at once
// leaves most of them to the sync after (PostgreSQL's commit_delay, made adaptive). A lone
// writer never waits: one append is all the last sync covered.
func (q *syncQueue) gatherLocked() {
	want := q.mu.lastCovered
	if want <= 1 || q.mu.closed || q.mu.queuedReqs-q.mu.startedReqs >= want {
		return
	}
	deadline := time.Now().Add(maxGather)
	t := time.AfterFunc(maxGather, func() {
		q.mu.Lock()
		q.cond.Broadcast()
		q.mu.Unlock()
	})
	defer t.Stop()
	for !q.mu.closed && q.mu.queuedReqs-q.mu.startedReqs < want && time.Now().Before(deadline) {
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
	for i < len(q.mu.queue) && (failure != nil || q.mu.queue[i].count == 0 || q.mu.queue[i].end() <= q.mu.durable) {
		i++
	}
	if i == 0 {
		return
	}
	ready := slices.Clone(q.mu.queue[:i])
	q.mu.queue = append(q.mu.queue[:0], q.mu.queue[i:]...)
	for _, g := range ready {
		if g.count > 0 && g.end() <= q.mu.durable {
			q.mu.lastPos = g.lastPos
		}
	}
	s.acked.Store(q.mu.lastPos)
	var durable []*group
	for _, g := range ready {
		err := failure
		if g.count > 0 && g.end() <= q.mu.durable {
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
	// The indexer takes them from toIndex: mu is never held while waiting for it.
	for _, g := range durable {
		q.mu.toIndex = append(q.mu.toIndex, g)
		q.mu.toIndexBytes += len(g.buf)
	}
	if len(durable) > 0 {
		q.wakeIndexerLocked()
	}
}
