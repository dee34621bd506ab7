package process

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"

	"github.com/annalsdb/annals"
)

// CheckpointStreamPrefix starts the names of the streams where runners keep the checkpoint
// of their manager: CheckpointStreamPrefix+Name. A runner never hands the events of these
// streams to a manager.
const CheckpointStreamPrefix = "annals.process-"

// CheckpointEventType is the type of the events of the checkpoint streams.
const CheckpointEventType = "ProcessCheckpoint"

// defaultCheckpointEvery is [RunnerOptions].CheckpointEvery's default.
const defaultCheckpointEvery = 100

// maxCheckpointSize bounds the data of a checkpoint event, well within the stores' default
// event size limit: a manager with more pending deadlines than fit is not checkpointed.
const maxCheckpointSize = 512 << 10

// checkpointData is the data of a checkpoint event: the fold of the manager's journals up to
// the journal event at position Journal of the log.
type checkpointData struct {
	// Journal is the position of the last journal event folded in.
	Journal uint64 `json:"journal"`
	// Position is the last event of the log handled: every event the manager follows up to
	// it is journaled.
	Position uint64 `json:"position"`
	// Pending are the deadlines pending after the journal events folded in.
	Pending []pendingRecord `json:"pending,omitempty"`
}

type pendingRecord struct {
	Instance string `json:"instance"`
	Deadline
}

// ledger is the fold of the manager's journals, in the order of the log, up to the journal
// event at position journal: what a runner resumes from. It is the checkpoint's content, and
// it can only lag the journals (the journals are the truth: an input is handled once because
// its instance's journal holds it, whatever the ledger says).
type ledger struct {
	journal  uint64 // the position of the last journal event folded in
	position uint64 // the last event of the log known handled
	pending  map[pendingKey]Deadline
	revision annals.ExpectedRevision // of the checkpoint stream, as last read or written
}

func (r *Runner[S]) checkpointStream() string { return CheckpointStreamPrefix + r.m.Name }

// followed reports whether ev is an event the manager may follow: not one of its journals,
// nor a checkpoint of a manager.
func (r *Runner[S]) followed(ev annals.RecordedEvent) bool {
	return annals.Category(ev.Stream) != r.m.Name && !strings.HasPrefix(ev.Stream, CheckpointStreamPrefix)
}

// readCheckpoint returns the manager's latest checkpoint (an empty ledger when there is none).
func (r *Runner[S]) readCheckpoint(ctx context.Context) (*ledger, error) {
	l := &ledger{pending: map[pendingKey]Deadline{}, revision: annals.NoStream}
	stream := r.checkpointStream()
	for ev, err := range r.store.ReadStream(ctx, stream, &annals.ReadOptions{Backwards: true, From: annals.End, Limit: 1}) {
		if errors.Is(err, annals.ErrStreamNotFound) {
			return l, nil
		}
		if err != nil {
			return nil, fmt.Errorf("process %q: read the checkpoint: %w", r.m.Name, err)
		}
		if ev.Type != CheckpointEventType {
			return nil, fmt.Errorf("%w: %s@%d has type %q, want %q", ErrCorrupt, ev.Stream, ev.Revision, ev.Type, CheckpointEventType)
		}
		var d checkpointData
		if err := json.Unmarshal(ev.Data, &d); err != nil {
			return nil, fmt.Errorf("%w: %s@%d: %w", ErrCorrupt, ev.Stream, ev.Revision, err)
		}
		l.journal, l.position, l.revision = d.Journal, d.Position, annals.Exact(ev.Revision)
		for _, p := range d.Pending {
			l.pending[pendingKey{p.Instance, p.Name}] = p.Deadline
		}
	}
	return l, nil
}

// catchUp folds into l the journal events written after it, up to the end of the log.
func (r *Runner[S]) catchUp(ctx context.Context, l *ledger) error {
	filter := &annals.Filter{Categories: []string{r.m.Name}}
	for ev, err := range r.store.ReadAll(ctx, &annals.ReadOptions{From: l.journal + 1, Filter: filter}) {
		if err != nil {
			return fmt.Errorf("process %q: read the journals: %w", r.m.Name, err)
		}
		st, err := decodeStep(ev)
		if err != nil {
			return err
		}
		id := ev.Stream[len(r.m.Name)+1:]
		if e := st.Input.Event; e != nil {
			l.position = max(l.position, e.Position)
		}
		applyDeadlines(st, func(name string, d Deadline, set bool) {
			if set {
				l.pending[pendingKey{id, name}] = d
			} else {
				delete(l.pending, pendingKey{id, name})
			}
		})
		l.journal = ev.Position
	}
	return nil
}

// recover reads the manager's checkpoint and the journal events written after it, to find
// where the manager left off in the log and which deadlines are pending.
func (r *Runner[S]) recover(ctx context.Context) error {
	l, err := r.readCheckpoint(ctx)
	if err != nil {
		return err
	}
	checkpointed := l.journal
	if err := r.catchUp(ctx, l); err != nil {
		return err
	}
	r.ledger = l
	r.mu.Lock()
	defer r.mu.Unlock()
	r.mu.pending = maps.Clone(l.pending)
	r.mu.inputs = 0
	if l.journal > checkpointed {
		// Inputs journaled after the checkpoint (by a runner that stopped before it
		// checkpointed them) count as not checkpointed, so that the checkpoint shows them
		// once this runner is idle.
		r.mu.inputs = 1
	}
	r.setPositionLocked(l.position)
	return nil
}

// maybeCheckpoint writes a checkpoint when the runner has handled CheckpointEvery inputs
// (events of the log and deadlines) since the last one.
func (r *Runner[S]) maybeCheckpoint(ctx context.Context) error {
	if r.opts.CheckpointEvery < 0 {
		return nil
	}
	r.mu.Lock()
	n := r.mu.inputs
	r.mu.Unlock()
	if n < r.opts.CheckpointEvery {
		return nil
	}
	return r.checkpoint(ctx)
}

// checkpoint folds the journal events written since the last checkpoint into the ledger and
// appends it to the checkpoint stream, compare-and-set on the stream's revision. When another
// runner of the manager checkpointed meanwhile, the ledger takes its checkpoint if it goes as
// far or further and appends after it otherwise: a checkpoint never goes back.
func (r *Runner[S]) checkpoint(ctx context.Context) error {
	r.mu.Lock()
	handled := r.mu.position
	r.mu.inputs = 0
	r.mu.Unlock()
	l := r.ledger
	if err := r.catchUp(ctx, l); err != nil {
		return err
	}
	// Every event up to handled is journaled, in journal events this runner appended before
	// it read the journals above.
	l.position = max(l.position, handled)
	d := checkpointData{Journal: l.journal, Position: l.position}
	for k, dl := range l.pending {
		d.Pending = append(d.Pending, pendingRecord{Instance: k.instance, Deadline: dl})
	}
	slices.SortFunc(d.Pending, func(a, b pendingRecord) int {
		return strings.Compare(a.Instance+"\x00"+a.Name, b.Instance+"\x00"+b.Name)
	})
	data, err := json.Marshal(d)
	if err != nil {
		return fmt.Errorf("process %q: encode the checkpoint: %w", r.m.Name, err)
	}
	if len(data) > maxCheckpointSize {
		return nil // too many pending deadlines: a restart reads the journals from the last checkpoint
	}
	if err := r.boundCheckpoints(ctx); err != nil {
		return err
	}
	stream := r.checkpointStream()
	for range maxJournalConflicts {
		res, err := r.store.Append(ctx, stream, l.revision, annals.Event{Type: CheckpointEventType, Data: data})
		if err == nil {
			l.revision = annals.Exact(res.Revision)
			return nil
		}
		if errors.Is(err, annals.ErrTooLarge) {
			return nil // over the store's limits: as a checkpoint over maxCheckpointSize
		}
		if !errors.Is(err, annals.ErrWrongExpectedVersion) {
			return fmt.Errorf("process %q: append the checkpoint: %w", r.m.Name, err)
		}
		stored, err := r.readCheckpoint(ctx)
		if err != nil {
			return err
		}
		if stored.journal >= l.journal {
			// Another runner's checkpoint goes as far: take it.
			stored.position = max(stored.position, l.position)
			r.ledger = stored
			return nil
		}
		l.revision = stored.revision
	}
	return nil // others keep checkpointing ahead of this runner: theirs will do
}

// boundCheckpoints gives the checkpoint stream the metadata maxCount 1 (once per runner), so
// that it keeps only its latest checkpoint, when the store keeps stream metadata.
func (r *Runner[S]) boundCheckpoints(ctx context.Context) error {
	if r.bounded {
		return nil
	}
	type metadataStore interface {
		annals.MetadataReader
		annals.MetadataWriter
	}
	ms, ok := r.store.(metadataStore)
	if !ok {
		r.bounded = true
		return nil
	}
	stream := r.checkpointStream()
	for {
		meta, expected, err := ms.GetMetadata(ctx, stream)
		if err != nil {
			return fmt.Errorf("process %q: read the metadata of %s: %w", r.m.Name, stream, err)
		}
		if meta.MaxCount == 1 {
			break
		}
		meta.MaxCount = 1
		_, err = ms.SetMetadata(ctx, stream, expected, meta)
		if err == nil {
			break
		}
		if !errors.Is(err, annals.ErrWrongExpectedVersion) { // else changed meanwhile: look again
			return fmt.Errorf("process %q: set maxCount 1 on %s: %w", r.m.Name, stream, err)
		}
	}
	r.bounded = true
	return nil
}
