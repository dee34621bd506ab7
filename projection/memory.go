package projection

import (
	"context"
	"errors"
	"sync"

	"github.com/annalsdb/annals/lease"
)

// Memory is a [Store] that keeps read models of type M in memory: a projection over it has
// the Tx type M, so its handler changes the model directly (M is typically a pointer or a map).
// Nothing survives the process; within it the effect is exactly-once: an Update and its
// checkpoint move together under one lock, and queries (see [Memory.Read]) never see a batch
// half applied.
//
// A failed Update cannot always be undone in memory. When M has a method Clone() M, Update
// runs fn on a clone that replaces the model only when fn succeeds, so a failure leaves the
// model as it was. Without it, fn runs on the model itself: when fn fails with a
// [*HandlerError] (which is how a [Runner] reports the event its handler failed on), Memory
// keeps the events applied before that one and sets the checkpoint just before it, which is
// exact as long as a failing handler changes nothing before it returns its error; on any other
// error it drops the generation (model back to init(), checkpoint 0), so that the runner
// replays it from the log rather than apply an event twice.
//
// Memory is also a [lease.Keeper] (see [lease.Memory]) for the runners of its projections:
// when the context of an Update carries a lease ([lease.NewContext]), Update checks it under
// the same lock as the checkpoint and refuses with an error matching [lease.ErrLost] when it
// is no longer current, and no other holder can take the lease while the Update runs.
//
// All methods are safe for concurrent use and ignore ctx (but for the lease it carries); only
// Update fails, with fn's error, the refusals of [CheckUpdate] or a lost lease.
type Memory[M any] struct {
	keeper
	init func() M
	mu   struct {
		sync.RWMutex
		active map[string]uint64
		gens   map[memKey]*memGen[M]
	}
}

type memKey struct {
	name string
	gen  uint64
}

type memGen[M any] struct {
	model      M
	checkpoint uint64
}

// NewMemory returns an empty Memory; init makes the empty read model of a new generation.
func NewMemory[M any](init func() M) *Memory[M] {
	m := &Memory[M]{init: init}
	m.mu.active = map[string]uint64{}
	m.mu.gens = map[memKey]*memGen[M]{}
	return m
}

var (
	_ Store[int]   = (*Memory[int])(nil)
	_ lease.Keeper = (*Memory[int])(nil)
)

type keeper = lease.Memory

// Generation implements [Store.Generation].
func (m *Memory[M]) Generation(_ context.Context, name string) (uint64, error) {
	m.mu.RLock()
	defer m.mu.RUnlock()
	return m.mu.active[name], nil
}

// Checkpoint implements [Store.Checkpoint].
func (m *Memory[M]) Checkpoint(_ context.Context, name string, gen uint64) (uint64, error) {
	m.mu.RLock()
	defer m.mu.RUnlock()
	if g := m.mu.gens[memKey{name, gen}]; g != nil {
		return g.checkpoint, nil
	}
	return 0, nil
}

// Update implements [Store.Update]; see [Memory] for what a failure keeps. The checkpoint is
// compared with from under the lock, before fn runs: a refused update ([ErrCheckpointMoved])
// does not call fn.
func (m *Memory[M]) Update(ctx context.Context, name string, gen uint64, from, to uint64, fn func(M) error) error {
	return m.keeper.Fenced(ctx, func() error { return m.update(name, gen, from, to, fn) })
}

func (m *Memory[M]) update(name string, gen uint64, from, to uint64, fn func(M) error) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	var stored uint64
	if g := m.mu.gens[memKey{name, gen}]; g != nil {
		stored = g.checkpoint
	}
	if err := CheckUpdate(name, gen, stored, from, to); err != nil {
		return err
	}
	checkpoint := to
	g := m.genLocked(name, gen)
	if c, ok := any(g.model).(interface{ Clone() M }); ok {
		next := c.Clone()
		if err := fn(next); err != nil {
			return err
		}
		g.model, g.checkpoint = next, checkpoint
		return nil
	}
	if err := fn(g.model); err != nil {
		if he, ok := errors.AsType[*HandlerError](err); ok && he.Event.Position > g.checkpoint {
			g.checkpoint = he.Event.Position - 1
		} else {
			g.model, g.checkpoint = m.init(), 0
		}
		return err
	}
	g.checkpoint = checkpoint
	return nil
}

func (m *Memory[M]) genLocked(name string, gen uint64) *memGen[M] {
	k := memKey{name, gen}
	g := m.mu.gens[k]
	if g == nil {
		g = &memGen[M]{model: m.init()}
		m.mu.gens[k] = g
	}
	return g
}

// Reset implements [Store.Reset].
func (m *Memory[M]) Reset(_ context.Context, name string, gen uint64) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	delete(m.mu.gens, memKey{name, gen})
	return nil
}

// Activate implements [Store.Activate].
func (m *Memory[M]) Activate(_ context.Context, name string, gen uint64) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.genLocked(name, gen)
	for k := range m.mu.gens {
		if k.name == name && k.gen != gen {
			delete(m.mu.gens, k)
		}
	}
	m.mu.active[name] = gen
	return nil
}

// Read calls fn with the active generation's read model of name (a fresh init() model when
// there is none yet) and its checkpoint, under a read lock: fn sees the model between two
// Updates, must not change it, and must not call Memory's other methods.
func (m *Memory[M]) Read(name string, fn func(model M, checkpoint uint64)) {
	m.mu.RLock()
	g := m.mu.gens[memKey{name, m.mu.active[name]}]
	if g != nil {
		defer m.mu.RUnlock()
		fn(g.model, g.checkpoint)
		return
	}
	m.mu.RUnlock()
	fn(m.init(), 0)
}
