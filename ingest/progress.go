package ingest

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/annalsdb/annals"
	"github.com/annalsdb/annals/lease"
	"github.com/annalsdb/annals/projection"
)

// ProgressEventType is the type of the events of the progress streams.
const ProgressEventType = "IngestProgress"

// record is the progress of one source (see the package doc): every message at or before Done
// (when HasDone) has its event durable; those after Done and up to Next may have been
// appended at positions from Since on (0: from the record's own position); those after Next
// were not appended.
type record struct {
	Done    uint64 `json:"done"`
	HasDone bool   `json:"hasDone"`
	Next    uint64 `json:"next"`
	// Since is set when the record carries on the window of an earlier record whose messages
	// were not all appended yet: the position of that earlier record.
	Since uint64 `json:"since,omitempty"`
	// Holder and Token are the lease the record was written under, if any.
	Holder string `json:"holder,omitempty"`
	Token  uint64 `json:"token,omitempty"`
}

// progress is a record as stored: where it is, to continue from it.
type progress struct {
	rec    record
	exists bool
	rev    uint64 // revision of the record's event
	pos    uint64 // position of the record's event
}

// window returns the offsets (after, upTo] whose messages may have been appended after the
// position since, and whether there are any.
func (p progress) window() (w window) {
	if !p.exists {
		return window{}
	}
	r := p.rec
	w = window{after: r.Done, hasAfter: r.HasDone, upTo: r.Next, since: r.Since}
	if w.since == 0 {
		w.since = p.pos
	}
	w.open = !r.HasDone || r.Next > r.Done
	return w
}

// window is the offsets of a source whose messages may be in their streams after since.
type window struct {
	open     bool
	after    uint64
	hasAfter bool
	upTo     uint64
	since    uint64
}

// holds reports whether offset is in the window.
func (w window) holds(offset uint64) bool {
	return w.open && (!w.hasAfter || offset > w.after) && offset <= w.upTo
}

// progressStream returns the name of the progress stream of source. It returns an error
// matching annals.ErrInvalidArgument when that is not a valid stream id.
func (in *Ingest) progressStream(source string) (string, error) {
	stream := ProgressStreamPrefix + in.opts.Name + "-" + source
	if err := annals.ValidateStreamID(stream); err != nil {
		return "", fmt.Errorf("progress stream of source %q: %w", source, err)
	}
	return stream, nil
}

// readProgress reads the record of the progress stream.
func (in *Ingest) readProgress(ctx context.Context, stream string) (progress, error) {
	for ev, err := range in.store.ReadStream(ctx, stream, &annals.ReadOptions{Backwards: true, From: annals.End, Limit: 1}) {
		if errors.Is(err, annals.ErrStreamNotFound) {
			return progress{}, nil
		}
		if err != nil {
			return progress{}, fmt.Errorf("read %s: %w", stream, err)
		}
		p := progress{exists: true, rev: ev.Revision, pos: ev.Position}
		dec := json.NewDecoder(bytes.NewReader(ev.Data))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&p.rec); err != nil || ev.Type != ProgressEventType {
			return progress{}, fmt.Errorf("%w: %s revision %d: not a progress record (type %q): %v", annals.ErrCorrupt, stream, ev.Revision, ev.Type, err)
		}
		return p, nil
	}
	return progress{}, nil
}

// writeProgress appends rec after the record cur of stream (compare-and-set), fenced by the
// lease ctx carries, and returns the new stored record.
func (in *Ingest) writeProgress(ctx context.Context, stream string, cur progress, rec record) (progress, error) {
	if _, ok := in.bounded.Load(stream); !ok {
		if err := projection.KeepLast(ctx, in.store, stream); err != nil {
			return cur, err
		}
		in.bounded.Store(stream, struct{}{})
	}
	expected := annals.NoStream
	if cur.exists {
		expected = annals.Exact(cur.rev)
	}
	if l, ok := lease.FromContext(ctx); ok {
		if in.fencer == nil && (cur.rec.Token > l.Token || cur.rec.Token == l.Token && cur.rec.Holder != l.Holder) {
			return cur, fmt.Errorf("%w: %s was written under token %d of %s, after token %d of %s",
				lease.ErrLost, stream, cur.rec.Token, cur.rec.Holder, l.Token, l.Holder)
		}
		rec.Holder, rec.Token = l.Holder, l.Token
	}
	data, err := json.Marshal(rec)
	if err != nil {
		return cur, fmt.Errorf("encode progress of %s: %w", stream, err)
	}
	res, err := in.append(ctx, stream, expected, annals.Event{Type: ProgressEventType, Data: data})
	if err != nil {
		return cur, err
	}
	return progress{rec: rec, exists: true, rev: res.Revision, pos: res.Position}, nil
}

// append appends events to stream, under the check of the lease ctx carries when the store
// can check it.
func (in *Ingest) append(ctx context.Context, stream string, expected annals.ExpectedRevision, events ...annals.Event) (annals.AppendResult, error) {
	var res annals.AppendResult
	write := func() error {
		var err error
		res, err = in.store.Append(ctx, stream, expected, events...)
		return err
	}
	var err error
	if _, ok := lease.FromContext(ctx); ok && in.fencer != nil {
		err = in.fencer.Fenced(ctx, write)
	} else {
		err = write()
	}
	if err != nil {
		return res, fmt.Errorf("append to %s: %w", stream, err)
	}
	return res, nil
}
