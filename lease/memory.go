package lease

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"sync"
	"time"
)

// Memory is a [Keeper] that keeps its leases in the process: the embedded stores and the
// server keep theirs in one. Nothing survives the process; after a restart every name is
// free.
//
// Its tokens grow across restarts too, as long as the clock does not go back: a new token is
// the larger of the last one given plus one and the clock's time in nanoseconds since 1970,
// so that a store that compares tokens by order (projection.Checkpoints) sees a token given
// after a restart as newer than one given before it.
//
// [Memory.Fenced] runs a write under the check of a lease, for stores in the same process
// that hold their read model beside the leases: they embed a Memory (its zero value is ready
// and reads time.Now) to be a Keeper. All methods are safe for concurrent use. A Memory must
// not be copied after first use.
type Memory struct {
	now func() time.Time
	// mu: Acquire, Renew and Release write-lock it; Fenced read-locks it for the whole of its
	// write, so that a takeover waits for the fenced writes under way and every later one
	// sees it.
	mu sync.RWMutex
	// leases holds the last lease given on every name (released: no holder, expired), so
	// that a name keeps its tokens growing and Fenced knows the names it gave.
	leases map[string]Lease
	last   uint64
}

// NewMemory returns an empty Memory that reads the time from now (nil: time.Now).
func NewMemory(now func() time.Time) *Memory {
	if now == nil {
		now = time.Now
	}
	return &Memory{now: now}
}

func (m *Memory) clock() time.Time {
	if m.now == nil {
		return time.Now()
	}
	return m.now()
}

// Acquire implements [Keeper.Acquire].
func (m *Memory) Acquire(ctx context.Context, name, holder string, ttl time.Duration) (Lease, error) {
	if err := Validate(name, holder, ttl); err != nil {
		return Lease{}, err
	}
	if err := ctx.Err(); err != nil {
		return Lease{}, err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	now := m.clock()
	cur, held := m.leases[name]
	next := max(m.last+1, uint64(max(now.UnixNano(), 0)))
	l, err := Grant(cur, held, name, holder, ttl, now, next)
	if err != nil {
		return Lease{}, err
	}
	if l.Token == next {
		m.last = next
	}
	if m.leases == nil {
		m.leases = make(map[string]Lease)
	}
	m.leases[name] = l
	return l, nil
}

// Renew implements [Keeper.Renew].
func (m *Memory) Renew(ctx context.Context, l Lease) (Lease, error) {
	if err := ValidateHeld(l); err != nil {
		return Lease{}, err
	}
	if err := ctx.Err(); err != nil {
		return Lease{}, err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	now := m.clock()
	cur, held := m.leases[l.Name]
	held = held && cur.Holder != "" // a released lease keeps its entry, without a holder
	if err := Check(cur, held, l, now, true); err != nil {
		return Lease{}, err
	}
	cur.Expires = now.Add(cur.TTL)
	m.leases[l.Name] = cur
	return cur, nil
}

// Release implements [Keeper.Release].
func (m *Memory) Release(ctx context.Context, l Lease) error {
	if err := ValidateHeld(l); err != nil {
		return err
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if cur, held := m.leases[l.Name]; held && cur.Token == l.Token && cur.Holder == l.Holder {
		cur.Holder, cur.Expires = "", time.Time{}
		m.leases[l.Name] = cur
	}
	return nil
}

// Leases implements [Keeper.Leases].
func (m *Memory) Leases(ctx context.Context, prefix string) ([]Lease, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	m.mu.RLock()
	defer m.mu.RUnlock()
	now := m.clock()
	var out []Lease
	for name, l := range m.leases {
		if strings.HasPrefix(name, prefix) && now.Before(l.Expires) {
			out = append(out, l)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, nil
}

// Fenced runs write when ctx carries no lease (see [NewContext]), or when the lease it
// carries is current and has not expired ([Check]); then no other holder can take the lease
// until write returns. Otherwise it returns an error matching [ErrLost] and does not call
// write. A lease on a name m never gave (another keeper's, or one given before a restart) is
// not current here: the keeper of a runner's lease must be the store that checks its writes.
// write must not call Acquire, Renew or Release of m.
func (m *Memory) Fenced(ctx context.Context, write func() error) error {
	l, ok := FromContext(ctx)
	if !ok {
		return write()
	}
	m.mu.RLock()
	defer m.mu.RUnlock()
	cur, known := m.leases[l.Name]
	if !known {
		return fmt.Errorf("%w: lease %q token %d of %s was not given by this keeper (the keeper of a runner's lease must be the store that checks its writes, or it restarted)",
			ErrLost, l.Name, l.Token, l.Holder)
	}
	if err := Check(cur, cur.Holder != "", l, m.clock(), false); err != nil {
		return err
	}
	return write()
}
