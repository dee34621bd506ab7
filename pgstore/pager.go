package pgstore

import (
	"context"

	"github.com/annalsdb/annals"
)

// page is one page of a read, or the error that ended it.
type page struct {
	events []annals.RecordedEvent
	more   bool
	err    error
}

// pager fetches the pages of a read one after the other in a goroutine of its own, one page
// ahead of the consumer, so that the database produces the next page while the consumer
// handles the current one. At most three pages are in memory: the consumer's, one waiting,
// one being fetched. Its owner must call stop, which ends the goroutine and waits for it.
type pager struct {
	pages  chan page
	cancel context.CancelFunc
	done   chan struct{}
}

// startPager calls next until it reports no more pages or fails, handing each page on. next
// runs in the pager's goroutine only.
func startPager(ctx context.Context, next func(ctx context.Context) (evs []annals.RecordedEvent, more bool, err error)) *pager {
	ctx, cancel := context.WithCancel(ctx)
	p := &pager{pages: make(chan page, 1), cancel: cancel, done: make(chan struct{})}
	go func() {
		defer close(p.done)
		defer close(p.pages)
		for {
			evs, more, err := next(ctx)
			select {
			case p.pages <- page{events: evs, more: more, err: err}:
			case <-ctx.Done():
				return
			}
			if !more || err != nil {
				return
			}
		}
	}()
	return p
}

// stop ends the pager's goroutine and waits for it.
func (p *pager) stop() {
	p.cancel()
	<-p.done
}

// fetchFunc fetches the next page of a read and says whether there may be more after it.
type fetchFunc = func(ctx context.Context) (evs []annals.RecordedEvent, more bool, err error)

// drain hands the events of fetch's pages to emit, in order, until a page says there are no
// more: the first page fetched here, the rest by a pager running one page ahead. emit returns
// false to stop. drain returns true when the pages ran out, false when emit stopped it or it
// yielded an error (ctx's, [annals.ErrClosed], or the read's wrapped with op). fetch's state
// may be read once drain returned.
func (s *Store) drain(ctx context.Context, op string, fetch fetchFunc, emit func(annals.RecordedEvent) bool, yield func(annals.RecordedEvent, error) bool) bool {
	evs, more, err := fetch(ctx)
	var p *pager
	defer func() {
		if p != nil {
			p.stop()
		}
	}()
	for {
		if err != nil {
			yield(annals.RecordedEvent{}, s.fail(ctx, op, err))
			return false
		}
		for _, e := range evs {
			if err := ctx.Err(); err != nil {
				yield(annals.RecordedEvent{}, err)
				return false
			}
			if !emit(e) {
				return false
			}
		}
		if !more {
			return true
		}
		if p == nil {
			p = startPager(ctx, fetch)
		}
		pg, ok := <-p.pages
		if !ok { // the pager stopped on ctx
			yield(annals.RecordedEvent{}, s.fail(ctx, op, ctx.Err()))
			return false
		}
		evs, more, err = pg.events, pg.more, pg.err
	}
}
