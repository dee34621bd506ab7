package projection

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"sync"

	"github.com/annalsdb/annals"
	"github.com/annalsdb/annals/lease"
)

// CheckpointStreamPrefix starts the names of the streams [Checkpoints] appends to: generation
// g of projection p keeps its checkpoints in CheckpointStreamPrefix+p+"@"+g, and the active
// generation in CheckpointStreamPrefix+p. A [Runner] never hands the events of these streams
// to a handler (so that projections do not feed on each other's checkpoints).
const CheckpointStreamPrefix = "annals.projection-"

// Event types of the checkpoint streams.
const (
	CheckpointEventType = "ProjectionCheckpoint"
	ActivatedEventType  = "ProjectionActivated"
)

// CheckpointsOptions configure [NewCheckpoints]. The zero value (and nil) means the defaults.
type CheckpointsOptions[Tx any] struct {
	// Tx returns the value handlers get for a batch of generation gen of name (a client, a
	// directory, …); nil gives them Tx's zero value.
	Tx func(name string, gen uint64) Tx
	// Drop removes the read model of generation gen of name; Reset and Activate call it. Nil
	// means there is nothing to drop.
	Drop func(ctx context.Context, name string, gen uint64) error
}

// Checkpoints is a [Store] for read models that live outside it (a cache, files, a search
// index): it keeps only the checkpoints, as events appended to streams of the event store
// itself, and lets the handlers write their read model directly. The read model's changes and
// the checkpoint are not one transaction, so the guarantee is at-least-once: after a crash
// the events since the last checkpoint are applied again, and handlers must be idempotent
// (an upsert keyed by the event, a "last position applied" stored with each row, …).
//
// Checkpoints are appended to the streams named by [CheckpointStreamPrefix]; the runner does
// not apply their events (nor those of their metadata streams), and does not write a
// checkpoint for a batch made only of them. Each of these streams gets the metadata maxCount 1
// before Checkpoints first writes to it (once per Checkpoints value and stream; the
// other metadata fields are kept), so that it reads as its latest event only and a read of
// it costs one event however many batches were committed; the log keeps every event.
//
// # Fencing
//
// When the context of an Update carries a lease ([lease.NewContext]; a [Runner] under a lease
// does this), the checkpoint event records the lease's holder and token, and the append is
// fenced. An event store that keeps leases and has a Fenced method (memstore, filestore,
// pgstore, and the client, whose server checks the lease of each append) runs the append under
// the check of the lease by its keeper, so the lease must be the event store's (a Runner's
// default keeper over Checkpoints): a holder that lost it cannot write a checkpoint. Over an
// event store without one, Checkpoints fences by order instead: an Update whose token is older
// than the one the stored checkpoint was written under is refused with an error matching
// [lease.ErrLost] before fn runs; tokens grow with every acquisition and a Runner writes a
// checkpoint as soon as it takes the lease, so the holder it replaced cannot move the
// checkpoint any more (the expected revision of the append makes the check and the write one
// step). Its handlers' writes to the read model are not fenced (they are not in the store):
// at-least-once, as above.
//
// All methods are safe for concurrent use. Errors are the event store's, wrapped.
type Checkpoints[Tx any] struct {
	events  CheckpointStore
	opts    CheckpointsOptions[Tx]
	bounded sync.Map // stream name → struct{}: its metadata is known to hold maxCount 1
}

type checkpointData struct {
	Checkpoint uint64 `json:"checkpoint"`
	// Holder and Token are the lease the checkpoint was written under, if any.
	Holder string `json:"holder,omitempty"`
	Token  uint64 `json:"token,omitempty"`
}

type activatedData struct {
	Generation uint64 `json:"generation"`
}

// CheckpointStore is what [Checkpoints] uses of an event store: it reads and appends its
// checkpoint streams, and bounds them with stream metadata. Every [annals.Store] is one.
type CheckpointStore interface {
	annals.ReadAppender
	annals.MetadataReader
	annals.MetadataWriter
}

// NewCheckpoints returns a Checkpoints over the event store events.
func NewCheckpoints[Tx any](events CheckpointStore, opts *CheckpointsOptions[Tx]) *Checkpoints[Tx] {
	c := &Checkpoints[Tx]{events: events}
	if opts != nil {
		c.opts = *opts
	}
	return c
}

func (c *Checkpoints[Tx]) genStream(name string, gen uint64) string {
	return CheckpointStreamPrefix + name + "@" + strconv.FormatUint(gen, 10)
}

// last returns the last event of stream, if any.
func (c *Checkpoints[Tx]) last(ctx context.Context, stream string) (annals.RecordedEvent, bool, error) {
	for ev, err := range c.events.ReadStream(ctx, stream, &annals.ReadOptions{Backwards: true, From: annals.End, Limit: 1}) {
		if err != nil {
			if isNotFound(err) {
				return annals.RecordedEvent{}, false, nil
			}
			return annals.RecordedEvent{}, false, fmt.Errorf("read %s: %w", stream, err)
		}
		return ev, true, nil
	}
	return annals.RecordedEvent{}, false, nil
}

// Generation implements [Store.Generation].
func (c *Checkpoints[Tx]) Generation(ctx context.Context, name string) (uint64, error) {
	ev, ok, err := c.last(ctx, CheckpointStreamPrefix+name)
	if err != nil || !ok {
		return 0, err
	}
	var d activatedData
	if err := json.Unmarshal(ev.Data, &d); err != nil {
		return 0, fmt.Errorf("%w: %s event %d: %w", annals.ErrCorrupt, ev.Stream, ev.Revision, err)
	}
	return d.Generation, nil
}

// Checkpoint implements [Store.Checkpoint].
func (c *Checkpoints[Tx]) Checkpoint(ctx context.Context, name string, gen uint64) (uint64, error) {
	d, _, err := c.checkpoint(ctx, c.genStream(name, gen))
	return d.Checkpoint, err
}

// checkpoint returns the checkpoint stream holds and the revision to append after it.
func (c *Checkpoints[Tx]) checkpoint(ctx context.Context, stream string) (checkpointData, annals.ExpectedRevision, error) {
	ev, ok, err := c.last(ctx, stream)
	if err != nil || !ok {
		return checkpointData{}, annals.NoStream, err
	}
	var d checkpointData
	if err := json.Unmarshal(ev.Data, &d); err != nil {
		return checkpointData{}, annals.NoStream, fmt.Errorf("%w: %s event %d: %w", annals.ErrCorrupt, ev.Stream, ev.Revision, err)
	}
	return d, annals.Exact(ev.Revision), nil
}

// Update implements [Store.Update]: it reads the checkpoint, compares it with from, runs fn,
// then appends the new checkpoint with the expected revision of the checkpoint it read
// (durable when Update returns, as every append). A failed fn appends nothing, but what it
// wrote stays. The compare-and-set is the append's: a refused update normally does not call
// fn, but when another runner appends its checkpoint between the read and the append, fn has
// run and its writes stay (at-least-once, as after a crash) while the checkpoint does not
// move and Update returns the [*CheckpointConflictError].
func (c *Checkpoints[Tx]) Update(ctx context.Context, name string, gen uint64, from, to uint64, fn func(Tx) error) error {
	stream := c.genStream(name, gen)
	stored, expected, err := c.checkpoint(ctx, stream)
	if err != nil {
		return err
	}
	l, fenced := lease.FromContext(ctx)
	f, storeFences := c.events.(fencer)
	if fenced && !storeFences && (stored.Token > l.Token || stored.Token == l.Token && stored.Holder != l.Holder) {
		return fmt.Errorf("%w: projection %q generation %d: the checkpoint was written under token %d of %s, after token %d of %s",
			lease.ErrLost, name, gen, stored.Token, stored.Holder, l.Token, l.Holder)
	}
	if err := CheckUpdate(name, gen, stored.Checkpoint, from, to); err != nil {
		return err
	}
	var tx Tx
	if c.opts.Tx != nil {
		tx = c.opts.Tx(name, gen)
	}
	if err := fn(tx); err != nil {
		return err
	}
	next := checkpointData{Checkpoint: to}
	if fenced {
		next.Holder, next.Token = l.Holder, l.Token
	}
	if fenced && storeFences {
		err = f.Fenced(ctx, func() error { return c.write(ctx, stream, expected, next) })
	} else {
		err = c.write(ctx, stream, expected, next)
	}
	if errors.Is(err, annals.ErrWrongExpectedVersion) {
		stored, _, rerr := c.checkpoint(ctx, stream)
		if rerr != nil {
			return errors.Join(err, rerr)
		}
		return &CheckpointConflictError{Projection: name, Generation: gen, Expected: from, Actual: stored.Checkpoint}
	}
	return err
}

// fencer is an event store that keeps leases and can run a write under the check of one (see
// lease.Memory.Fenced, which memstore and filestore embed, pgstore.Store.Fenced, and
// client.Client.Fenced, whose server checks the lease of each append).
type fencer interface {
	Fenced(ctx context.Context, write func() error) error
}

func (c *Checkpoints[Tx]) write(ctx context.Context, stream string, expected annals.ExpectedRevision, d checkpointData) error {
	data, _ := json.Marshal(d)
	return c.append(ctx, stream, expected, annals.Event{Type: CheckpointEventType, Data: data})
}

// append appends ev to the checkpoint stream at the expected revision, bounding the stream
// first.
func (c *Checkpoints[Tx]) append(ctx context.Context, stream string, expected annals.ExpectedRevision, ev annals.Event) error {
	if err := c.bound(ctx, stream); err != nil {
		return err
	}
	if _, err := c.events.Append(ctx, stream, expected, ev); err != nil {
		return fmt.Errorf("append to %s: %w", stream, err)
	}
	return nil
}

// bound makes sure the metadata of stream holds maxCount 1, once per stream.
func (c *Checkpoints[Tx]) bound(ctx context.Context, stream string) error {
	if _, ok := c.bounded.Load(stream); ok {
		return nil
	}
	if err := KeepLast(ctx, c.events, stream); err != nil {
		return err
	}
	c.bounded.Store(stream, struct{}{})
	return nil
}

// Reset implements [Store.Reset]: it calls Drop, then records checkpoint 0.
func (c *Checkpoints[Tx]) Reset(ctx context.Context, name string, gen uint64) error {
	if c.opts.Drop != nil {
		if err := c.opts.Drop(ctx, name, gen); err != nil {
			return fmt.Errorf("drop generation %d of %q: %w", gen, name, err)
		}
	}
	stream := c.genStream(name, gen)
	if _, ok, err := c.last(ctx, stream); err != nil || !ok {
		return err
	}
	return c.write(ctx, stream, annals.Any, checkpointData{})
}

// Activate implements [Store.Activate]: it records gen as the active generation, then drops
// the previously active one (Drop, and its checkpoint back to 0). Unlike the other Stores the
// two steps are not atomic: a crash between them leaves the old read model for Drop to
// remove by hand.
func (c *Checkpoints[Tx]) Activate(ctx context.Context, name string, gen uint64) error {
	old, err := c.Generation(ctx, name)
	if err != nil {
		return err
	}
	data, _ := json.Marshal(activatedData{Generation: gen})
	if err := c.append(ctx, CheckpointStreamPrefix+name, annals.Any, annals.Event{Type: ActivatedEventType, Data: data}); err != nil {
		return fmt.Errorf("activation of %q: %w", name, err)
	}
	if old != gen {
		return c.Reset(ctx, name, old)
	}
	return nil
}

func isNotFound(err error) bool { return errors.Is(err, annals.ErrStreamNotFound) }
