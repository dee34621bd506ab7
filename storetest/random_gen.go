package storetest

// The random inputs of the operations: streams, expectations, events, filters, metadata and
// read options. Each draws from the run's one random source, in a fixed order, so that a seed
// replays the same sequence.

import (
	"encoding/binary"
	"encoding/json"
	"fmt"
	"math"
	"strings"
	"time"

	"github.com/annalsdb/annals"
)

func (r *randomRun) chance(percent int) bool { return r.rng.IntN(100) < percent }

func pick[T any](r *randomRun, xs ...T) T { return xs[r.rng.IntN(len(xs))] }

func (r *randomRun) uuid() annals.UUID {
	var u annals.UUID
	binary.LittleEndian.PutUint64(u[:8], r.rng.Uint64())
	binary.LittleEndian.PutUint64(u[8:], r.rng.Uint64()|1)
	u[6] = u[6]&0x0f | 0x40
	u[8] = u[8]&0x3f | 0x80
	return u
}

func (r *randomRun) stream() string {
	if r.chance(3) {
		r.created++
		s := fmt.Sprintf("%s-n%d", pick(r, "acct", "cart", "new"), r.created)
		r.streams = append(r.streams, s)
		return s
	}
	return pick(r, r.streams...)
}

func (r *randomRun) expected(stream string) annals.ExpectedRevision {
	known, ok := r.known[stream]
	if !ok {
		known = annals.NoStream
	}
	switch r.rng.IntN(12) {
	case 0, 1:
		return annals.Any
	case 2:
		return annals.NoStream
	case 3:
		return annals.StreamExists
	case 4:
		if rev, ok := known.Revision(); ok {
			return annals.Exact(rev + 1)
		}
		return annals.Exact(0)
	case 5:
		return annals.Exact(uint64(r.rng.IntN(8)))
	case 6:
		if rev, ok := known.Revision(); ok && rev > 0 {
			return annals.Exact(rev - 1)
		}
	}
	return known
}

func (r *randomRun) events() []annals.Event {
	evs := make([]annals.Event, 1+r.rng.IntN(pick(r, 2, 3, 5)))
	for i := range evs {
		e := annals.Event{ID: r.uuid(), Type: pick(r, "A", "B", "C")}
		switch r.rng.IntN(10) {
		case 0:
			e.ContentType = "text/plain"
			e.Data = []byte("plain text")
		case 1:
			e.ContentType = annals.ContentTypeJSON
		default:
			e.Data = fmt.Appendf(nil, `{"v":%d}`, r.rng.IntN(1000))
		}
		if r.chance(30) {
			e.Metadata = fmt.Appendf(nil, `{"corr":%d}`, r.rng.IntN(1000))
		}
		evs[i] = e
	}
	return evs
}

func (r *randomRun) filter() *annals.Filter {
	if r.chance(50) {
		return nil
	}
	f := &annals.Filter{}
	some := func(xs ...string) []string {
		var out []string
		for range 1 + r.rng.IntN(2) {
			out = append(out, pick(r, xs...))
		}
		return out
	}
	if r.chance(40) {
		f.StreamPrefixes = some("acct", "cart-", "cart", "o", "$meta-", "x", "new", "acct-n")
	}
	if r.chance(40) {
		f.Categories = some("acct", "cart", "order", "x", "$meta", "new")
	}
	if r.chance(50) {
		f.EventTypes = some("A", "B", "C", annals.MetadataEventType, annals.DeletedEventType, annals.TombstoneEventType)
	}
	return f
}

func (r *randomRun) metadata() annals.StreamMetadata {
	var m annals.StreamMetadata
	if r.chance(50) {
		m.MaxCount = uint64(1 + r.rng.IntN(4))
	}
	if r.chance(40) {
		m.TruncateBefore = uint64(r.rng.IntN(8))
		if r.chance(30) {
			m.TruncateBefore = uint64(30 + r.rng.IntN(100)) // beyond the end of the stream
		}
	}
	if r.chance(20) {
		// Either hides nothing during a run, or everything written before the read (see
		// settle): the results stay deterministic.
		m.MaxAge = pick(r, 24*time.Hour, tinyAge)
	}
	if r.chance(30) {
		m.Custom = fmt.Appendf(nil, `{"owner":"team-%d","tags":["a","b"]}`, r.rng.IntN(5))
	}
	if r.chance(4) {
		// Near the event size limit, on either side of it: the event that records the metadata
		// holds the type, the content type and the JSON around the custom value too.
		n := annals.DefaultMaxEventSize - 200 + r.rng.IntN(400)
		m.Custom = json.RawMessage(`"` + strings.Repeat("m", n) + `"`)
	}
	if r.chance(15) {
		m.ACL = &annals.ACL{Read: []string{"r"}, Write: []string{pick(r, "w", "admin")}}
	}
	return m
}

func eventIDs(evs []annals.Event) []string {
	var out []string
	for _, e := range evs {
		out = append(out, e.ID.String()[:8])
	}
	return out
}

// readOptions returns random read options over a range of about n revisions or positions.
func (r *randomRun) readOptions(n uint64) *annals.ReadOptions {
	if r.chance(20) {
		return nil
	}
	o := &annals.ReadOptions{Backwards: r.chance(35)}
	o.From = uint64(r.rng.IntN(int(n) + 3))
	if o.Backwards && r.chance(50) {
		o.From = annals.End
	}
	if r.chance(50) {
		o.Limit = 1 + r.rng.IntN(5)
		if r.chance(5) {
			o.Limit = pick(r, math.MaxInt32+1, math.MaxInt)
		}
	}
	if r.chance(25) {
		o.Until = uint64(1 + r.rng.IntN(int(n)+3))
	}
	o.Filter = r.filter()
	return o
}

// metadataExpected returns a random expectation for a SetMetadata of stream.
func (r *randomRun) metadataExpected(stream string) annals.ExpectedRevision {
	var e annals.ExpectedRevision
	switch r.rng.IntN(5) {
	case 0, 1:
		_, e, _ = r.oracle.GetMetadata(r.t.Context(), stream)
	case 2:
		e = annals.Any
	case 3:
		e = pick(r, annals.NoStream, annals.StreamExists)
	default:
		e = annals.Exact(uint64(r.rng.IntN(4)))
	}
	return e
}
