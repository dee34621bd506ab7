package rules

import (
	"time"

	"github.com/annalsdb/annals"
)

// VisibleFrom returns the lowest revision of s that reads may return under meta, before
// maxAge: the highest of the stream's base (its soft delete), meta.TruncateBefore and, with
// meta.MaxCount, Next-MaxCount, but never more than s.Next. Capping at the end matters to
// subscriptions, which start there: with truncateBefore beyond the end of the stream, a
// subscription delivers the events appended after it starts (see [SubscribeStart]).
//
// maxAge hides the events recorded at or before [AgeCutoff]; since times never decrease along
// the log, those come before all the others, and the backend finds the first revision it
// leaves with [Young].
func VisibleFrom(s *Stream, meta *annals.StreamMetadata) uint64 {
	lo := max(s.Base, meta.TruncateBefore)
	if meta.MaxCount > 0 && s.Next > meta.MaxCount {
		lo = max(lo, s.Next-meta.MaxCount)
	}
	return min(lo, s.Next)
}

// AgeCutoff returns the time at or before which meta.MaxAge hides events, as of now; ok is
// false when meta has no maxAge.
func AgeCutoff(meta *annals.StreamMetadata, now time.Time) (cutoff time.Time, ok bool) {
	if meta.MaxAge <= 0 {
		return time.Time{}, false
	}
	return now.Add(-meta.MaxAge), true
}

// Young reports whether an event recorded at t is left visible by the age cutoff (from
// [AgeCutoff]; the zero time means none): it is recorded strictly after it.
func Young(t, cutoff time.Time) bool {
	return cutoff.IsZero() || t.After(cutoff)
}

// SubscribeStart returns the first revision a subscription to stream s asked to start at from
// ([annals.End] for the end) delivers: from, moved up to [VisibleFrom] (the stream's soft
// deletion and metadata choose where it starts, once; from there on it delivers every event),
// or s.Next for [annals.End]. The backend also leaves out, from the events stored when the
// subscription starts, those that maxAge hides then ([AgeCutoff]).
func SubscribeStart(s *Stream, meta *annals.StreamMetadata, from uint64) uint64 {
	if from == annals.End {
		from = s.Next
	}
	return max(from, VisibleFrom(s, meta))
}
