package groups

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/annalsdb/annals"
)

// This file holds the shapes of the events a group is kept in, and the reads that load them.

// checkpointRecord is the data of a [CheckpointEventType] event: every event of the group's
// creation Created before Checkpoint (a position on $all, a revision on a stream) is settled.
type checkpointRecord struct {
	Created    uint64 `json:"created"`
	Checkpoint uint64 `json:"checkpoint"`
}

// replayedRecord is the data of a [ReplayedEventType] event: every parked event of the
// group's creation Created below revision Replayed of its parked stream was replayed and
// settled.
type replayedRecord struct {
	Created  uint64 `json:"created"`
	Replayed uint64 `json:"replayed"`
}

// parkedRecord is the metadata of a [ParkedEventType] event: where the original was, and why
// it was parked. Its data is the original's data, its content type the original's.
type parkedRecord struct {
	Created     uint64      `json:"created"`
	ID          annals.UUID `json:"id"`
	Stream      string      `json:"stream"`
	Type        string      `json:"type"`
	Revision    uint64      `json:"revision"`
	Position    uint64      `json:"position"`
	Time        time.Time   `json:"time"`
	ContentType string      `json:"contentType"`
	// Metadata is the original's metadata when it is JSON; MetadataBytes when it is not.
	Metadata      json.RawMessage `json:"metadata,omitempty"`
	MetadataBytes []byte          `json:"metadataBytes,omitempty"`
	Reason        string          `json:"reason,omitempty"`
}

// parkedEvent returns the event id that parks e for the group's creation created.
func parkedEvent(id annals.UUID, created uint64, e *annals.RecordedEvent, reason string) (annals.Event, error) {
	rec := parkedRecord{
		Created: created, ID: e.ID, Stream: e.Stream, Type: e.Type, Revision: e.Revision,
		Position: e.Position, Time: e.Time, ContentType: e.ContentType, Reason: reason,
	}
	if len(e.Metadata) > 0 {
		if json.Valid(e.Metadata) {
			rec.Metadata = e.Metadata
		} else {
			rec.MetadataBytes = e.Metadata
		}
	}
	meta, err := json.Marshal(rec)
	if err != nil {
		return annals.Event{}, fmt.Errorf("encode parked event: %w", err)
	}
	return annals.Event{
		ID: id, Type: ParkedEventType, ContentType: e.ContentType,
		Data: e.Data, Metadata: meta,
	}, nil
}

// unparked returns the original event of a parked one, and the creation it was parked for.
func unparked(p *annals.RecordedEvent) (annals.RecordedEvent, uint64, error) {
	var rec parkedRecord
	if err := json.Unmarshal(p.Metadata, &rec); err != nil {
		return annals.RecordedEvent{}, 0, fmt.Errorf("%w: parked event %d of %s: %v", annals.ErrCorrupt, p.Revision, p.Stream, err)
	}
	meta := rec.MetadataBytes
	if len(rec.Metadata) > 0 {
		meta = bytes.Clone(rec.Metadata)
	}
	return annals.RecordedEvent{
		ID: rec.ID, Stream: rec.Stream, Type: rec.Type, ContentType: rec.ContentType,
		Data: p.Data, Metadata: meta, Revision: rec.Revision, Position: rec.Position, Time: rec.Time,
	}, rec.Created, nil
}

// decodeStrict decodes data into v, refusing unknown fields.
func decodeStrict(data []byte, v any) error {
	d := json.NewDecoder(bytes.NewReader(data))
	d.DisallowUnknownFields()
	return d.Decode(v)
}

// definitionEvent returns the event of [SettingsStream] that records def with type typ.
func definitionEvent(typ string, def Definition) (annals.Event, error) {
	data, err := json.Marshal(def)
	if err != nil {
		return annals.Event{}, fmt.Errorf("encode group definition: %w", err)
	}
	return annals.Event{ID: annals.NewUUID(), Type: typ, Data: data}, nil
}

// decodeDefinition decodes an event of [SettingsStream]. A created event's Created is its own
// position.
func decodeDefinition(e *annals.RecordedEvent) (Definition, error) {
	var def Definition
	if err := decodeStrict(e.Data, &def); err != nil {
		return def, fmt.Errorf("%w: %s event %d of %s: %v", annals.ErrCorrupt, e.Type, e.Revision, e.Stream, err)
	}
	if e.Type == CreatedEventType {
		def.Created = e.Position
	}
	return def, nil
}

// isGroupStream reports whether stream is one the groups keep for themselves. A group on $all
// never delivers their events (it would otherwise deliver its own checkpoints).
func isGroupStream(stream string) bool {
	return stream == SettingsStream || strings.HasPrefix(stream, "$group-")
}

// groupState is what is stored about one creation of a group besides its definition.
type groupState struct {
	checkpoint    uint64
	haveCP        bool
	replayed      uint64 // parked revisions below it are settled replays
	cpExpected    annals.ExpectedRevision
	parkedPending uint64 // parked at or after replayed, of this creation, not redundant
	parkedEnd     uint64 // the revision after the last of the parked stream
}

// start returns where the group starts reading the log: the checkpoint, or the start of its
// definition.
func (st *groupState) start(def *Definition) uint64 {
	switch {
	case st.haveCP:
		return st.checkpoint
	case def.Settings.Start.Kind == FromPosition:
		return def.Settings.Start.From
	}
	return 0
}

// redundant tells a parked event that this run of the group will deliver again from the log:
// one parked by an earlier run (below parkedEnd) at or after the checkpoint this run starts
// from, so that its park was never covered by a checkpoint. Replaying it too would deliver it
// twice.
func redundant(def *Definition, st *groupState, parkedRev uint64, orig *annals.RecordedEvent) bool {
	key := orig.Revision
	if def.Settings.Stream == annals.AllStream {
		key = orig.Position
	}
	return parkedRev < st.parkedEnd && key >= st.start(def)
}

// loadState reads the checkpoint stream and the parked stream of def.
func loadState(ctx context.Context, r annals.Reader, def Definition) (groupState, error) {
	st := groupState{cpExpected: annals.NoStream}
	first := true
	haveReplayed := false
	for e, err := range r.ReadStream(ctx, CheckpointStream(def.Name), &annals.ReadOptions{Backwards: true, From: annals.End}) {
		if errors.Is(err, annals.ErrStreamNotFound) {
			break
		}
		if err != nil {
			return st, fmt.Errorf("read %s: %w", CheckpointStream(def.Name), err)
		}
		if first {
			st.cpExpected = annals.Exact(e.Revision)
			first = false
		}
		var created uint64
		switch e.Type {
		case CheckpointEventType:
			var rec checkpointRecord
			if err := decodeStrict(e.Data, &rec); err != nil {
				return st, fmt.Errorf("%w: checkpoint %d of %s: %v", annals.ErrCorrupt, e.Revision, e.Stream, err)
			}
			created = rec.Created
			if created == def.Created && !st.haveCP {
				st.checkpoint, st.haveCP = rec.Checkpoint, true
			}
		case ReplayedEventType:
			var rec replayedRecord
			if err := decodeStrict(e.Data, &rec); err != nil {
				return st, fmt.Errorf("%w: replay marker %d of %s: %v", annals.ErrCorrupt, e.Revision, e.Stream, err)
			}
			created = rec.Created
			if created == def.Created && !haveReplayed {
				st.replayed, haveReplayed = rec.Replayed, true
			}
		default:
			continue
		}
		if created < def.Created || (st.haveCP && haveReplayed) {
			break
		}
	}
	for e, err := range r.ReadStream(ctx, ParkedStream(def.Name), &annals.ReadOptions{From: st.replayed}) {
		if errors.Is(err, annals.ErrStreamNotFound) {
			break
		}
		if err != nil {
			return st, fmt.Errorf("read %s: %w", ParkedStream(def.Name), err)
		}
		st.parkedEnd = e.Revision + 1
		orig, created, err := unparked(&e)
		if err == nil && created == def.Created && !redundant(&def, &st, 0, &orig) {
			st.parkedPending++
		}
	}
	return st, nil
}

// endOf returns the key after the last event the group of s follows: a position on $all (of
// the last event that passes the filter), a revision on a stream; 0 when there is none.
func endOf(ctx context.Context, r annals.Reader, s *Settings) (uint64, error) {
	opts := &annals.ReadOptions{Backwards: true, From: annals.End, Limit: 1}
	var seq func(func(annals.RecordedEvent, error) bool)
	if s.Stream == annals.AllStream {
		opts.Filter = s.Filter
		seq = r.ReadAll(ctx, opts)
	} else {
		seq = r.ReadStream(ctx, s.Stream, opts)
	}
	for e, err := range seq {
		if errors.Is(err, annals.ErrStreamNotFound) || errors.Is(err, annals.ErrStreamDeleted) {
			return 0, nil
		}
		if err != nil {
			return 0, err
		}
		if s.Stream == annals.AllStream {
			return e.Position + 1, nil
		}
		return e.Revision + 1, nil
	}
	return 0, nil
}
