package groups

import (
	"context"
	"errors"
	"log/slog"

	"github.com/annalsdb/annals"
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
}

// Manager runs the consumer groups of one store in process. It implements [Service]; its
// methods are safe for concurrent use.
type Manager struct{}

var errUnimplemented = errors.New("groups: not implemented yet")

// Open loads the groups of store (from [SettingsStream] and their checkpoint streams) and
// starts them. Close stops them.
func Open(ctx context.Context, store Store, opts *Options) (*Manager, error) {
	return nil, errUnimplemented
}

// Close stops every group, writes their checkpoints, and ends their consumers with an error
// matching [annals.ErrClosed]. It is safe to call more than once.
func (m *Manager) Close() error { return errUnimplemented }

func (m *Manager) Create(ctx context.Context, name string, settings Settings) (Definition, error) {
	return Definition{}, errUnimplemented
}
func (m *Manager) Update(ctx context.Context, name string, settings Settings) (Definition, error) {
	return Definition{}, errUnimplemented
}
func (m *Manager) Delete(ctx context.Context, name string) error { return errUnimplemented }
func (m *Manager) List(ctx context.Context) ([]Info, error)      { return nil, errUnimplemented }
func (m *Manager) Info(ctx context.Context, name string) (Info, error) {
	return Info{}, errUnimplemented
}
func (m *Manager) ReplayParked(ctx context.Context, name string, limit int) (int, error) {
	return 0, errUnimplemented
}
func (m *Manager) Join(ctx context.Context, name string, opts *JoinOptions) (Consumer, error) {
	return nil, errUnimplemented
}

var _ Service = (*Manager)(nil)
