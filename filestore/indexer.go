package filestore

import (
	"context"
)

// indexLoop is the last stage. It closes indexDone when it returns.
func (s *Store) indexLoop() {
	defer close(s.indexDone)
	h := s.head.Load()
	ix := newIndexBuilder(s.db, watermark{nextPos: h.pos + 1, end: h.end})
	for {
		// Take whatever is waiting: one larger Pebble batch costs less than several.
		batch, ok := s.syncq.takeIndexBatch()
		if !ok {
			return
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
		s.publishHead(&head{pos: ix.mark.nextPos - 1, end: ix.mark.end, changed: make(chan struct{})})
	}
}

// readHead starts a read or subscription in the order of checks every store keeps: the
// error of its options (inputErr), then ctx, then the store's visible head.
func (s *Store) readHead(ctx context.Context, inputErr error) (*head, error) {
	if inputErr != nil {
		return nil, inputErr
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	return s.visibleHead(ctx)
}

// visibleHead returns a head that includes every append answered so far, waiting (briefly:
// the indexer runs right behind the syncs) for the indexer to catch up.
func (s *Store) visibleHead(ctx context.Context) (*head, error) {
	target := s.acked.Load()
	for {
		if p := s.indexFatal.Load(); p != nil {
			return nil, *p
		}
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
