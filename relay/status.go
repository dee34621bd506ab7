package relay

import (
	"sync"
	"sync/atomic"
	"time"
)

// Rate measurement: acknowledgements are counted in buckets of rateBucket, and Status.Rate is
// the count of the last rateSpan divided by that span (or by the time since the first
// acknowledgement, when shorter).
const (
	rateBucket  = 500 * time.Millisecond
	rateSpan    = 5 * time.Second
	rateBuckets = int(rateSpan/rateBucket) + 1
)

// headEvery is the least time between two reads of the store's head.
const headEvery = time.Second

// stats are the counters a relay keeps across its spells. Its methods are safe for concurrent
// use.
type stats struct {
	// unticked counts the acknowledgements not yet put into a rate bucket: tick does, at every
	// ackTick-th acknowledgement, and when the checkpoint writer wakes or Status asks.
	unticked atomic.Uint64
	mu       struct {
		sync.Mutex
		published, errors uint64
		lastErr           string
		lastErrTime       time.Time
		// head is the last position of the store known, match the last one that passes the
		// filter.
		head, match uint64
		buckets     [rateBuckets]struct {
			start int64 // bucket number: UnixNano / rateBucket
			n     uint64
		}
		firstAck time.Time
	}
}

// ackTick is how many acknowledgements at most wait in stats.unticked for a tick.
const ackTick = 64

// acked counts one acknowledged event.
func (s *stats) acked() {
	if s.unticked.Add(1)%ackTick == 0 {
		s.tick(time.Now())
	}
}

// tick counts the acknowledgements since the last tick as made at now.
func (s *stats) tick(now time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.tickLocked(now)
}

func (s *stats) tickLocked(now time.Time) {
	n := s.unticked.Swap(0)
	if n == 0 {
		return
	}
	s.mu.published += n
	if s.mu.firstAck.IsZero() {
		s.mu.firstAck = now
	}
	k := now.UnixNano() / int64(rateBucket)
	b := &s.mu.buckets[k%int64(rateBuckets)]
	if b.start != k {
		b.start, b.n = k, 0
	}
	b.n += n
}

// failed counts a publish error (when publish is true) and records err as the last error.
func (s *stats) failed(err error, publish bool, now time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if publish {
		s.mu.errors++
	}
	s.mu.lastErr, s.mu.lastErrTime = err.Error(), now
}

// saw records that the subscription delivered the event at p.
func (s *stats) saw(p uint64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.mu.head = max(s.mu.head, p)
	s.mu.match = max(s.mu.match, p)
}

// sawHead records the store's last position, and its last that passes the filter.
func (s *stats) sawHead(head, match uint64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.mu.head = max(s.mu.head, head)
	s.mu.match = max(s.mu.match, match)
}

// fill sets the fields of st that stats keep, and Lag from st.Acked.
func (s *stats) fill(st *Status, now time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.tickLocked(now)
	st.Published, st.Errors = s.mu.published, s.mu.errors
	st.LastError, st.LastErrorTime = s.mu.lastErr, s.mu.lastErrTime
	st.Head = max(s.mu.head, st.Acked)
	if s.mu.match > st.Acked {
		st.Lag = st.Head - st.Acked
	}
	if s.mu.firstAck.IsZero() {
		return
	}
	k := now.UnixNano() / int64(rateBucket)
	var n uint64
	for _, b := range s.mu.buckets {
		if b.start > k-int64(rateBuckets) && b.start <= k {
			n += b.n
		}
	}
	// The buckets cover the current, partial one and the rateBuckets-1 before it.
	span := time.Duration(rateBuckets-1)*rateBucket + time.Duration(now.UnixNano()%int64(rateBucket))
	span = min(span, now.Sub(s.mu.firstAck))
	if span < rateBucket {
		span = rateBucket
	}
	st.Rate = float64(n) / span.Seconds()
}
