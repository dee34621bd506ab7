package filestore

import (
	"context"
	"iter"
	"strings"

	"github.com/annalsdb/annals"
	"github.com/annalsdb/annals/internal/rules"
	"github.com/cockroachdb/pebble/v2"
)

// ListStreams implements [annals.Store.ListStreams].
func (s *Store) ListStreams(ctx context.Context, opts *annals.ListOptions) iter.Seq2[annals.StreamInfo, error] {
	return func(yield func(annals.StreamInfo, error) bool) {
		o, err := rules.ListOptions(opts)
		if _, err := s.readHead(ctx, err); err != nil {
			yield(annals.StreamInfo{}, err)
			return
		}
		after := o.After
		left := o.Limit
		for {
			batch, more, err := s.listBatch(ctx, o.Prefix, after)
			if err != nil {
				yield(annals.StreamInfo{}, err)
				return
			}
			for _, info := range batch {
				if !yield(info, nil) {
					return
				}
				if left > 0 {
					if left--; left == 0 {
						return
					}
				}
				after = info.Stream
			}
			if !more {
				return
			}
		}
	}
}

// listBatch lists up to readBatch existing user streams after the stream id after.
func (s *Store) listBatch(ctx context.Context, prefix, after string) ([]annals.StreamInfo, bool, error) {
	if err := ctx.Err(); err != nil {
		return nil, false, err
	}
	if err := s.readLock(); err != nil {
		return nil, false, err
	}
	defer s.readUnlock()
	h := s.head.Load()
	it, err := s.db.NewIter(&pebble.IterOptions{LowerBound: stateKey(prefix), UpperBound: []byte{prefixState + 1}})
	if err != nil {
		return nil, false, err
	}
	defer it.Close()
	valid := it.First()
	if after != "" {
		valid = it.SeekGE(append(stateKey(after), 0))
	}
	var out []annals.StreamInfo
	for ; valid; valid = it.Next() {
		stream := string(it.Key()[1:])
		if !strings.HasPrefix(stream, prefix) {
			return out, false, nil
		}
		if strings.HasPrefix(stream, "$") {
			continue
		}
		st, err := decodeStreamIndexState(it.Value())
		if err != nil {
			return out, false, err
		}
		next, err := s.visibleNext(stream, h)
		if err != nil {
			return out, false, err
		}
		if st.tombstonedAt(h.pos) || next <= st.base {
			continue
		}
		out = append(out, annals.StreamInfo{Stream: stream, Revision: next - 1, Count: next - st.base})
		if len(out) == readBatch {
			return out, true, nil
		}
	}
	return out, false, it.Error()
}
