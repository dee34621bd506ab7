package bridge

import (
	"github.com/annalsdb/annals"
)

// DefaultDedupSize is the number of ids a [Dedup] of size 0 remembers.
const DefaultDedupSize = 100_000

// Dedup remembers the last ids it was shown, so that a consumer of an at-least-once bus drops
// a message it already handled: a relay that restarts publishes again the tail it had not
// checkpointed, under the same event ids. It holds at most its size of ids (16 bytes each and
// bookkeeping), forgetting the oldest first. It is safe for concurrent use.
type Dedup struct {
}

// NewDedup returns a Dedup that remembers up to size ids (0 means [DefaultDedupSize]).
func NewDedup(size int) *Dedup {
	panic("unimplemented")
}

// Seen reports whether id was seen before, and remembers it.
func (d *Dedup) Seen(id annals.UUID) bool {
	panic("unimplemented")
}
