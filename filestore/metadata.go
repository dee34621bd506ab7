package filestore

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/annalsdb/annals"
	"github.com/annalsdb/annals/internal/rules"
	"github.com/cockroachdb/pebble/v2"
)

// streamView is what a read needs to know about a stream, as of one head.
type streamView struct {
	next       uint64 // the revision after the last visible one
	state      streamIndexState
	tombstoned bool // as of the head the view was taken at
	meta       annals.StreamMetadata
	// metaRev is the revision of the last event of the meta stream, metaExists whether it has one
	// (left zero unless view was asked for them).
	metaRev    uint64
	metaExists bool
}

// rule is the stream's state as the shared rules see it.
func (v *streamView) rule(stream string) rules.Stream {
	return rules.Stream{Name: stream, Next: v.next, Base: v.state.base, Tombstoned: v.tombstoned}
}

// lowest returns the first revision that reads may return, before maxAge
// ([rules.VisibleFrom]).
func (v *streamView) lowest() uint64 {
	rs := v.rule("")
	return rules.VisibleFrom(&rs, &v.meta)
}

// ageCutoff returns the time at or before which maxAge hides events, as of now
// ([rules.AgeCutoff]), or the zero time.
func (v *streamView) ageCutoff() time.Time {
	cutoff, _ := rules.AgeCutoff(&v.meta, time.Now())
	return cutoff
}

// view reads the stream's state as of head h, with metaRev and metaExists only if withMetaRev
// (GetMetadata needs them; they cost another index lookup). The caller holds the read lock.
func (s *Store) view(stream string, h *head, withMetaRev bool) (streamView, error) {
	var v streamView
	var err error
	if v.state, err = getStreamState(s.db, stream); err != nil {
		return v, err
	}
	v.tombstoned = v.state.tombstonedAt(h.pos)
	if v.next, err = s.visibleNext(stream, h); err != nil {
		return v, err
	}
	if v.state.metaOffset != 0 {
		var jerr error
		if err := s.walkRun(v.state.metaOffset, 1, func(rec *rawRecord) bool {
			jerr = json.Unmarshal(rec.data, &v.meta)
			return true
		}); err != nil {
			return v, err
		}
		if jerr != nil {
			return v, fmt.Errorf("%w: metadata of stream %q at log offset %d: %w", annals.ErrCorrupt, stream, v.state.metaOffset, jerr)
		}
	}
	if !withMetaRev {
		return v, nil
	}
	metaNext, err := s.visibleNext(annals.MetaStream(stream), h)
	if err != nil {
		return v, err
	}
	if metaNext > 0 {
		v.metaRev, v.metaExists = metaNext-1, true
	}
	return v, nil
}

// visibleNext returns the revision after the stream's last event visible at h.
func (s *Store) visibleNext(stream string, h *head) (uint64, error) {
	lo, hi := nameBounds(prefixStream, stream)
	it, err := s.db.NewIter(&pebble.IterOptions{LowerBound: lo, UpperBound: hi})
	if err != nil {
		return 0, err
	}
	defer it.Close()
	for valid := it.Last(); valid; valid = it.Prev() {
		r, err := parseStreamRun(it)
		if err != nil {
			return 0, err
		}
		if r.firstPos <= h.pos {
			return r.firstRev + uint64(r.count), nil
		}
	}
	return 0, it.Error()
}

// GetMetadata implements [annals.Store.GetMetadata].
func (s *Store) GetMetadata(ctx context.Context, stream string) (annals.StreamMetadata, annals.ExpectedRevision, error) {
	if err := annals.ValidateStreamID(stream); err != nil {
		return annals.StreamMetadata{}, 0, err
	}
	if err := ctx.Err(); err != nil {
		return annals.StreamMetadata{}, 0, err
	}
	h, err := s.visibleHead(ctx)
	if err != nil {
		return annals.StreamMetadata{}, 0, err
	}
	if err := s.readLock(); err != nil {
		return annals.StreamMetadata{}, 0, err
	}
	v, err := s.view(stream, h, true)
	s.readUnlock()
	if err != nil {
		return annals.StreamMetadata{}, 0, err
	}
	rs := v.rule(stream)
	if err := rs.Tombstone("get metadata of"); err != nil {
		return annals.StreamMetadata{}, 0, err
	}
	mrs := rules.Stream{Name: annals.MetaStream(stream)}
	if v.metaExists {
		mrs.Next = v.metaRev + 1
	}
	return v.meta, rules.MetadataRevision(&mrs), nil
}
