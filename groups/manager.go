package groups

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sort"
	"sync"
	"time"

	"github.com/annalsdb/annals"
	"github.com/annalsdb/annals/lease"
)

// Store is what a [Manager] needs of an event store: read, append, follow, and write its own
// system streams.
type Store interface {
	annals.ReadAppendSubscriber
	annals.SystemAppender
}

// Options configure a [Manager]. A nil *Options means the defaults.
type Options struct {
	// Logger receives the manager's logs; default slog.Default().
	Logger *slog.Logger
	// Leases, when set, makes each group active in one Manager at a time among those on the
	// same store that share the keeper: the one holding the lease [LeasePrefix] + the group's
	// name. See the Manager's documentation. Nil: every group is active here (one Manager per
	// store).
	Leases lease.Keeper
	// Holder names this Manager as a holder of leases; default [lease.NewHolder]. Only with
	// Leases.
	Holder string
	// LeaseTTL is the time to live of the groups' leases; default [lease.DefaultTTL], between
	// [lease.MinTTL] and [lease.MaxTTL]. A Manager that dies is replaced about LeaseTTL after
	// its last renewal. Only with Leases.
	LeaseTTL time.Duration
}

// LeasePrefix starts the name of the lease that makes a group active in a Manager with
// [Options.Leases]: LeasePrefix + the group's name.
const LeasePrefix = "$group-"

// Manager runs the consumer groups of one store in process. It implements [Service]; its
// methods are safe for concurrent use.
//
// It follows [SettingsStream], so that a group created, updated or deleted by another Manager
// on the same store (two servers on one PostgreSQL database) is created, updated or deleted
// here too.
//
// # Several Managers on one store
//
// Without [Options.Leases], every Manager delivers every event of a group to its own
// consumers: run one Manager per store. With Leases, a group is active in one Manager at a
// time: the one that holds the group's lease ([LeasePrefix] + name), renewed every third of
// its time to live. Only the active Manager reads the group's events, delivers them, writes
// its checkpoint and parks events; its writes carry the lease ([lease.NewContext]) and run
// under the keeper's check when the keeper has a Fenced method (lease.Memory, memstore,
// filestore, pgstore), so that a Manager that lost the lease cannot move the checkpoint. The
// other Managers stand by: consumers may join any Manager, and on a standby they stay joined
// and wait (Receive blocks) until it becomes active. A Manager that loses the lease (a renewal
// refused, or none accepted before [lease.Lease.Deadline]) stops delivering at once and forgets
// the group's events in flight and buffered (acks of them get [ErrNotInFlight]); the next
// holder delivers them again from the checkpoint. Close writes the checkpoints and releases
// the leases, so that another Manager takes over at once. ReplayParked runs on the active
// Manager only; on a standby it returns an error matching [lease.ErrHeld].
//
// Lock order: defMu, then a group's replayMu, then mu, then a group's mu, then the locks of
// its supervisor (which calls back into the group, taking its mu, only from Run's goroutine
// with no lock of the group held).
type Manager struct {
	store  Store
	log    *slog.Logger
	leases lease.Keeper // nil: every group is active
	fencer fencer       // leases' Fenced method, if it has one
	holder string
	ttl    time.Duration
	ctx    context.Context // the lifetime of the follower (each group is stopped by its end)
	cancel context.CancelFunc
	wg     sync.WaitGroup // the follower

	// defMu serializes the changes of definitions: the writes to SettingsStream and their
	// application, by the calls of this manager and by the follower. It is held over that I/O.
	defMu sync.Mutex
	next  uint64 // the next revision of SettingsStream to apply; guarded by defMu

	mu struct {
		sync.Mutex
		groups map[string]*group
		closed bool
	}
}

// Open loads the groups of store (from [SettingsStream] and their checkpoint streams) and
// starts them. Close stops them. It returns the store's errors, and one matching
// [annals.ErrCorrupt] when a stored definition does not decode.
func Open(ctx context.Context, store Store, opts *Options) (*Manager, error) {
	var o Options
	if opts != nil {
		o = *opts
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.Leases != nil {
		if o.Holder == "" {
			o.Holder = lease.NewHolder()
		}
		if o.LeaseTTL == 0 {
			o.LeaseTTL = lease.DefaultTTL
		}
		if err := lease.Validate(LeasePrefix+"x", o.Holder, o.LeaseTTL); err != nil {
			return nil, fmt.Errorf("%w: groups: options: %w", annals.ErrInvalidArgument, err)
		}
	} else if o.Holder != "" || o.LeaseTTL != 0 {
		return nil, fmt.Errorf("%w: groups: options: Holder and LeaseTTL are only for Leases", annals.ErrInvalidArgument)
	}
	m := &Manager{store: store, log: o.Logger, leases: o.Leases, holder: o.Holder, ttl: o.LeaseTTL}
	m.fencer, _ = o.Leases.(fencer)
	m.mu.groups = make(map[string]*group)
	defs := make(map[string]Definition)
	for e, err := range store.ReadStream(ctx, SettingsStream, nil) {
		if errors.Is(err, annals.ErrStreamNotFound) {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("groups: read %s: %w", SettingsStream, err)
		}
		m.next = e.Revision + 1
		def, err := decodeDefinition(&e)
		if err != nil {
			return nil, fmt.Errorf("groups: %w", err)
		}
		old, ok := defs[def.Name]
		switch e.Type {
		case CreatedEventType:
			defs[def.Name] = def
		case UpdatedEventType:
			if ok && old.Created == def.Created {
				defs[def.Name] = def
			}
		case DeletedEventType:
			if ok && old.Created == def.Created {
				delete(defs, def.Name)
			}
		}
	}
	m.ctx, m.cancel = context.WithCancel(context.Background())
	for _, def := range defs {
		st, err := loadState(ctx, store, def, true)
		if err != nil {
			m.cancel()
			m.closeGroups()
			return nil, fmt.Errorf("groups: load group %q: %w", def.Name, err)
		}
		g, err := newGroup(m, def, st)
		if err != nil {
			m.cancel()
			m.closeGroups()
			return nil, fmt.Errorf("groups: load group %q: %w", def.Name, err)
		}
		g.start(context.Background())
		m.mu.groups[def.Name] = g
	}
	m.wg.Add(1)
	go func() { defer m.wg.Done(); m.follow(m.ctx) }()
	return m, nil
}

// Close stops every group, writes their checkpoints, and ends their consumers with an error
// matching [annals.ErrClosed]. It is safe to call more than once.
func (m *Manager) Close() error {
	m.mu.Lock()
	if m.mu.closed {
		m.mu.Unlock()
		return nil
	}
	m.mu.closed = true
	m.mu.Unlock()
	m.cancel()
	m.wg.Wait()
	m.closeGroups()
	return nil
}

var errManagerClosed = fmt.Errorf("%w: groups: manager closed", annals.ErrClosed)

func (m *Manager) closeGroups() {
	m.mu.Lock()
	gs := make([]*group, 0, len(m.mu.groups))
	for _, g := range m.mu.groups {
		gs = append(gs, g)
	}
	m.mu.Unlock()
	var wg sync.WaitGroup
	for _, g := range gs {
		wg.Add(1)
		go func() { defer wg.Done(); g.end(errManagerClosed, true) }()
	}
	wg.Wait()
}

// follow applies the changes of SettingsStream written by others (and, harmlessly, by this
// manager) until ctx is done.
func (m *Manager) follow(ctx context.Context) {
	backoff := 50 * time.Millisecond
	for ctx.Err() == nil {
		m.defMu.Lock()
		from := m.next
		m.defMu.Unlock()
		var failed error
		for e, err := range m.store.SubscribeStream(ctx, SettingsStream, &annals.SubscribeOptions{From: from}) {
			if err != nil {
				failed = err
				break
			}
			m.defMu.Lock()
			if e.Revision >= m.next {
				failed = m.applyLocked(ctx, &e)
			}
			m.defMu.Unlock()
			if failed != nil {
				break
			}
			backoff = 50 * time.Millisecond
		}
		if ctx.Err() != nil {
			return
		}
		if errors.Is(failed, annals.ErrClosed) {
			m.log.Warn("groups: the store is closed; the manager stops following the group definitions", "err", failed)
			return
		}
		m.log.Warn("groups: following the group definitions failed; retrying", "err", failed, "after", backoff)
		select {
		case <-ctx.Done():
			return
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, 5*time.Second)
	}
}

// applyLocked applies an event of SettingsStream, at revision m.next or later; defMu is held.
func (m *Manager) applyLocked(ctx context.Context, e *annals.RecordedEvent) error {
	def, err := decodeDefinition(e)
	if err != nil {
		m.log.Error("groups: skipping a group definition that does not decode", "err", err)
		m.next = e.Revision + 1
		return nil
	}
	m.mu.Lock()
	g := m.mu.groups[def.Name]
	m.mu.Unlock()
	switch e.Type {
	case CreatedEventType:
		if g != nil && g.created == def.Created {
			break
		}
		st, err := loadState(ctx, m.store, def, true)
		if err != nil {
			return fmt.Errorf("load group %q: %w", def.Name, err)
		}
		if g != nil {
			m.removeGroup(g)
		}
		ng, err := newGroup(m, def, st)
		if err != nil {
			return fmt.Errorf("load group %q: %w", def.Name, err)
		}
		m.mu.Lock()
		if m.mu.closed {
			m.mu.Unlock()
			return errManagerClosed
		}
		ng.start(context.Background())
		m.mu.groups[def.Name] = ng
		m.mu.Unlock()
	case UpdatedEventType:
		if g != nil && g.created == def.Created {
			g.update(def.Settings)
		}
	case DeletedEventType:
		if g != nil && g.created == def.Created {
			m.removeGroup(g)
		}
	}
	m.next = e.Revision + 1
	return nil
}

// removeGroup stops g as deleted and forgets it.
func (m *Manager) removeGroup(g *group) {
	m.mu.Lock()
	if m.mu.groups[g.name] == g {
		delete(m.mu.groups, g.name)
	}
	m.mu.Unlock()
	g.end(fmt.Errorf("%w: %q", ErrGroupDeleted, g.name), false)
}

// catchUpLocked applies the changes of SettingsStream this manager has not applied yet;
// defMu is held.
func (m *Manager) catchUpLocked(ctx context.Context) error {
	for e, err := range m.store.ReadStream(ctx, SettingsStream, &annals.ReadOptions{From: m.next}) {
		if errors.Is(err, annals.ErrStreamNotFound) {
			return nil
		}
		if err != nil {
			return err
		}
		if err := m.applyLocked(ctx, &e); err != nil {
			return err
		}
	}
	return nil
}

// expectedLocked is the expected revision of SettingsStream after what was applied.
func (m *Manager) expectedLocked() annals.ExpectedRevision {
	if m.next == 0 {
		return annals.NoStream
	}
	return annals.Exact(m.next - 1)
}

// group returns the running group name.
func (m *Manager) group(name string) (*group, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.mu.closed {
		return nil, errManagerClosed
	}
	g := m.mu.groups[name]
	if g == nil {
		return nil, fmt.Errorf("%w: %q", ErrGroupNotFound, name)
	}
	return g, nil
}

// writeDefinition appends an event of type typ for def to SettingsStream and applies it,
// calling check first and again after catching up with the writes of others (a conflict);
// defMu is held. It returns the definition as applied.
func (m *Manager) writeDefinitionLocked(ctx context.Context, typ string, check func() (Definition, error)) (Definition, error) {
	for attempt := 0; ; attempt++ {
		m.mu.Lock()
		closed := m.mu.closed
		m.mu.Unlock()
		if closed {
			return Definition{}, errManagerClosed
		}
		def, err := check()
		if err != nil {
			return Definition{}, err
		}
		ev, err := definitionEvent(typ, def)
		if err != nil {
			return Definition{}, err
		}
		res, err := m.store.AppendSystem(ctx, SettingsStream, m.expectedLocked(), ev)
		if errors.Is(err, annals.ErrWrongExpectedVersion) && attempt < 10 {
			if err := m.catchUpLocked(ctx); err != nil {
				return Definition{}, fmt.Errorf("groups: read %s: %w", SettingsStream, err)
			}
			continue
		}
		if err != nil {
			return Definition{}, fmt.Errorf("groups: write %s: %w", SettingsStream, err)
		}
		rec := annals.RecordedEvent{ID: ev.ID, Stream: SettingsStream, Type: typ, Data: ev.Data, Revision: res.Revision, Position: res.Position}
		if typ == CreatedEventType {
			def.Created = res.Position
		}
		if err := m.applyLocked(ctx, &rec); err != nil {
			return def, err
		}
		return def, nil
	}
}

// Create implements [Service.Create]. A [FromEnd] start is resolved when the group is
// created: the definition records the position (or revision) after the last event then.
func (m *Manager) Create(ctx context.Context, name string, settings Settings) (Definition, error) {
	if err := ValidateName("group", name); err != nil {
		return Definition{}, err
	}
	if err := settings.Validate(); err != nil {
		return Definition{}, err
	}
	if err := checkOwnStreams(name, &settings); err != nil {
		return Definition{}, err
	}
	s := settings.WithDefaults()
	m.defMu.Lock()
	defer m.defMu.Unlock()
	return m.writeDefinitionLocked(ctx, CreatedEventType, func() (Definition, error) {
		m.mu.Lock()
		_, exists := m.mu.groups[name]
		n := len(m.mu.groups)
		m.mu.Unlock()
		if exists {
			return Definition{}, fmt.Errorf("%w: %q", ErrGroupExists, name)
		}
		if n >= MaxGroups {
			return Definition{}, fmt.Errorf("%w: the store has %d", ErrTooManyGroups, MaxGroups)
		}
		if s.Start.Kind == FromEnd {
			end, err := endOf(ctx, m.store, &s)
			if err != nil {
				return Definition{}, fmt.Errorf("groups: find the end of %s: %w", s.Stream, err)
			}
			s.Start = Start{Kind: FromPosition, From: end}
		}
		return Definition{Name: name, Settings: s}, nil
	})
}

// checkOwnStreams refuses a group that follows its own checkpoint or parked stream.
func checkOwnStreams(name string, s *Settings) error {
	if s.Stream == CheckpointStream(name) || s.Stream == ParkedStream(name) {
		return fmt.Errorf("%w: group settings: stream: group %q cannot follow its own stream %s", annals.ErrInvalidArgument, name, s.Stream)
	}
	return nil
}

// Update implements [Service.Update]. The stream and the filter cannot change (an error
// matching [annals.ErrInvalidArgument] names them); the start is kept.
func (m *Manager) Update(ctx context.Context, name string, settings Settings) (Definition, error) {
	if err := ValidateName("group", name); err != nil {
		return Definition{}, err
	}
	if err := settings.Validate(); err != nil {
		return Definition{}, err
	}
	m.defMu.Lock()
	defer m.defMu.Unlock()
	return m.writeDefinitionLocked(ctx, UpdatedEventType, func() (Definition, error) {
		g, err := m.group(name)
		if err != nil {
			return Definition{}, err
		}
		g.mu.Lock()
		old := g.mu.def
		g.mu.Unlock()
		if settings.Stream != old.Settings.Stream {
			return Definition{}, fmt.Errorf("%w: group settings: stream: a group's stream cannot change (%s to %s)", annals.ErrInvalidArgument, old.Settings.Stream, settings.Stream)
		}
		if !sameFilter(settings.Filter, old.Settings.Filter) {
			return Definition{}, fmt.Errorf("%w: group settings: filter: a group's filter cannot change", annals.ErrInvalidArgument)
		}
		s := settings.WithDefaults()
		s.Start = old.Settings.Start
		return Definition{Name: name, Settings: s, Created: old.Created}, nil
	})
}

func sameFilter(a, b *annals.Filter) bool {
	if a == nil || b == nil {
		return (a == nil || isEmptyFilter(a)) && (b == nil || isEmptyFilter(b))
	}
	eq := func(x, y []string) bool {
		if len(x) != len(y) {
			return false
		}
		for i := range x {
			if x[i] != y[i] {
				return false
			}
		}
		return true
	}
	return eq(a.StreamPrefixes, b.StreamPrefixes) && eq(a.Categories, b.Categories) && eq(a.EventTypes, b.EventTypes)
}

func isEmptyFilter(f *annals.Filter) bool {
	return len(f.StreamPrefixes) == 0 && len(f.Categories) == 0 && len(f.EventTypes) == 0
}

// Delete implements [Service.Delete].
func (m *Manager) Delete(ctx context.Context, name string) error {
	if err := ValidateName("group", name); err != nil {
		return err
	}
	m.defMu.Lock()
	defer m.defMu.Unlock()
	_, err := m.writeDefinitionLocked(ctx, DeletedEventType, func() (Definition, error) {
		g, err := m.group(name)
		if err != nil {
			return Definition{}, err
		}
		g.mu.Lock()
		defer g.mu.Unlock()
		return g.mu.def, nil
	})
	return err
}

// List implements [Service.List].
func (m *Manager) List(ctx context.Context) ([]Info, error) {
	m.mu.Lock()
	if m.mu.closed {
		m.mu.Unlock()
		return nil, errManagerClosed
	}
	gs := make([]*group, 0, len(m.mu.groups))
	for _, g := range m.mu.groups {
		gs = append(gs, g)
	}
	m.mu.Unlock()
	sort.Slice(gs, func(i, j int) bool { return gs[i].name < gs[j].name })
	out := make([]Info, 0, len(gs))
	for _, g := range gs {
		info, err := g.info(ctx)
		if errors.Is(err, ErrGroupNotFound) {
			continue // deleted since it was listed
		}
		if err != nil {
			return nil, err
		}
		out = append(out, info)
	}
	return out, nil
}

// Info implements [Service.Info].
func (m *Manager) Info(ctx context.Context, name string) (Info, error) {
	if err := ValidateName("group", name); err != nil {
		return Info{}, err
	}
	g, err := m.group(name)
	if err != nil {
		return Info{}, err
	}
	return g.info(ctx)
}

// ReplayParked implements [Service.ReplayParked].
func (m *Manager) ReplayParked(ctx context.Context, name string, limit int) (int, error) {
	if err := ValidateName("group", name); err != nil {
		return 0, err
	}
	if limit < 0 {
		return 0, fmt.Errorf("%w: replay limit %d is negative", annals.ErrInvalidArgument, limit)
	}
	g, err := m.group(name)
	if err != nil {
		return 0, err
	}
	return g.replayParked(ctx, limit)
}

// Join implements [Service.Join].
func (m *Manager) Join(ctx context.Context, name string, opts *JoinOptions) (Consumer, error) {
	if err := ValidateName("group", name); err != nil {
		return nil, err
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	g, err := m.group(name)
	if err != nil {
		return nil, err
	}
	return g.join(opts)
}

var _ Service = (*Manager)(nil)
