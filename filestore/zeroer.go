package filestore

import (
	"fmt"
	"sync"
	"sync/atomic"
)

// zeroer keeps the part of the current segment just ahead of the writer filled with written
// zeros, so that the fdatasync after a write finds no block allocation to flush: on file
// systems that allocate blocks lazily (ext4, XFS), syncing a write into unwritten space also
// syncs the file's metadata. It is an optimisation only: a failed write of zeros stops the
// zeroer, not the store. A failed sync of the zeros stops the store (see Store.datasync), since
// the kernel may have dropped pages of the log's file with it.
type zeroer struct {
	// mu is held while a chunk of zeros is written, and by writes past upTo.
	mu struct {
		sync.Mutex
		seg *segment
	}
	upTo atomic.Int64
	wake chan struct{}
}

func (z *zeroer) init(seg *segment, upTo int64) {
	z.mu.seg = seg
	z.upTo.Store(upTo)
	z.wake = make(chan struct{}, 1)
}

func (z *zeroer) switchTo(seg *segment) {
	z.mu.Lock()
	z.mu.seg = seg
	z.upTo.Store(0)
	z.mu.Unlock()
}

func (z *zeroer) current() *segment {
	z.mu.Lock()
	defer z.mu.Unlock()
	return z.mu.seg
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
	if err == nil && z.mu.seg == seg && z.upTo.Load() < end {
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
			seg = z.mu.seg
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
