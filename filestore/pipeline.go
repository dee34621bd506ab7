package filestore

import (
	"context"

	"github.com/annalsdb/annals"
)

// The write pipeline, four goroutines, one file each:
//
//	sequencer: takes requests, checks expectations, assigns revisions, positions and time,
//	           and encodes a group of the appends waiting, which it queues for the syncer
//	           (sequencer.go)
//	syncer:    writes every queued group with one write and makes them durable with one
//	           fdatasync (group commit), then answers their appends, in order, and passes the
//	           groups on; meanwhile the sequencer is already encoding the next groups
//	           (syncer.go)
//	indexer:   stores their index entries (Pebble, unsynced) and publishes the new head,
//	           which wakes subscribers (indexer.go)
//	zeroer:    keeps the log just ahead of the writer filled with written zeros (zeroer.go)
//
// An append is answered once its group is durable; reads first wait until the index has caught
// up with every answered append (Store.visibleHead), so a caller always reads its own writes.
// A storage failure in any stage stops the store (see Store.fail): the in-memory state then runs
// ahead of the disk, and only a reopen, which recovers from the log, can make them agree again.
//
// Locks, and their order: Store.mu (readers against Close) is taken first; syncQueue.mu and
// zeroer.mu are each taken alone, never while the other is held. syncQueue.mu is never held
// around a write or a sync; zeroer.mu is held around the writes it orders (a chunk of zeros,
// and a write of the syncer past the zeros) and nothing else. No lock is held while blocking
// on a channel or on I/O. The syncer and the sequencer hand groups to the indexer by adding
// them to syncQueue's toIndex under syncQueue.mu (so that they arrive in order) and waking it
// without blocking; the indexer takes them under the same lock and commits them to Pebble
// without it. While the groups not yet taken exceed maxIndexBacklog, the syncer waits before
// its next write, which holds the writers back until the indexer catches up; a failure ends
// that wait. Pebble may call the store's event listener and logger with its own mutex held:
// they take syncQueue.mu (through Store.fail) and nothing of Pebble's, so the order is
// Pebble's mutex, then syncQueue.mu. Everything else a stage owns belongs to its goroutine.

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

// submit hands r to the sequencer and waits for its answer. It checks ctx before whether the
// store is open or has failed (the order of checks of package rules).
func (s *Store) submit(ctx context.Context, r *request) (annals.AppendResult, error) {
	if err := ctx.Err(); err != nil {
		return annals.AppendResult{}, err
	}
	if err := s.failed(); err != nil {
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

func (s *Store) start() {
	s.wg.Add(3)
	go func() { defer s.wg.Done(); s.seq.run() }()
	go func() { defer s.wg.Done(); s.syncLoop() }()
	go func() { defer s.wg.Done(); s.zero.run(s) }()
	go s.indexLoop() // closes indexDone; Close waits for it (see Close)
}
