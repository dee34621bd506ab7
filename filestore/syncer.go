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
	}
	cond    sync.Cond // on mu: signalled when a group is queued, synced or passed on
	toIndex chan []*group
}

func (q *syncQueue) init(durable, lastPos uint64) {
	q.cond.L = &q.mu
	q.mu.written, q.mu.queued, q.mu.durable, q.mu.lastPos = durable, durable, durable, lastPos
	q.toIndex = make(chan []*group, 64)
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
			close(q.toIndex)
			return
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
	if len(durable) > 0 {
		q.toIndex <- durable
	}
}
