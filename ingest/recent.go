package ingest

import "github.com/annalsdb/annals"

// place is where a message was read.
type place struct {
	source string
	offset uint64
}

// recent remembers the event ids of the last messages seen (at most size), with where each
// was read, forgetting the oldest first. A message is a duplicate when its id was seen at
// another place: the same message delivered again at its own place is not, because its
// first delivery may not have been appended (a failed batch), and the progress records
// decide for it. It is used by one goroutine at a time (the Run under way).
type recent struct {
	size int
	at   map[annals.UUID]place
	ring []annals.UUID // ids in the order remembered; next is the oldest once full
	next int
}

func newRecent(size int) *recent {
	return &recent{size: size, at: map[annals.UUID]place{}}
}

// seenElsewhere reports whether id was seen at a place other than p, and remembers it at p
// when it was not seen at all.
func (r *recent) seenElsewhere(id annals.UUID, p place) bool {
	if q, ok := r.at[id]; ok {
		return q != p
	}
	if len(r.ring) < r.size {
		r.ring = append(r.ring, id)
	} else {
		delete(r.at, r.ring[r.next])
		r.ring[r.next] = id
		r.next = (r.next + 1) % r.size
	}
	r.at[id] = p
	return false
}
