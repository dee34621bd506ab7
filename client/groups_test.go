package client_test

import (
	"log/slog"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"

	"github.com/annalsdb/annals"
	"github.com/annalsdb/annals/filestore"
	"github.com/annalsdb/annals/groups"
	"github.com/annalsdb/annals/groups/groupstest"
	"github.com/annalsdb/annals/memstore"
	"github.com/annalsdb/annals/server"
)

// swapHandler serves through the handler set last, so that a server can be restarted
// behind one URL (and one client).
type swapHandler struct {
	mu sync.Mutex
	h  http.Handler
}

func (s *swapHandler) set(h http.Handler) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.h = h
}

func (s *swapHandler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	h := s.h
	s.mu.Unlock()
	h.ServeHTTP(w, r)
}

// restartable is a server over a store that a test restarts behind the same URL: Restart
// closes the server (its consumers end, its groups write their checkpoints), closes and
// reopens the store when reopen is set (a filestore on the same directory), and serves a
// new server over it.
type restartable struct {
	t      *testing.T
	mu     sync.Mutex
	store  annals.Store
	srv    *server.Server
	reopen func() annals.Store // nil: keep the store (a memstore)
	h      swapHandler
	url    string
}

func newRestartable(t *testing.T, store annals.Store, reopen func() annals.Store) *restartable {
	r := &restartable{t: t, store: store, reopen: reopen}
	r.start()
	hs := httptest.NewUnstartedServer(&r.h)
	hs.Config.Protocols = h2c()
	hs.Start()
	t.Cleanup(func() {
		r.mu.Lock()
		defer r.mu.Unlock()
		r.srv.Close()
		hs.Close()
		r.store.Close()
	})
	r.url = hs.URL
	return r
}

// start serves a new server over r.store.
func (r *restartable) start() {
	r.srv = server.New(r.store, &server.Options{Logger: slog.New(slog.NewTextHandler(r.t.Output(), nil))})
	r.h.set(r.srv.Handler())
}

func (r *restartable) restart() {
	r.mu.Lock()
	defer r.mu.Unlock()
	if err := r.srv.Close(); err != nil {
		r.t.Errorf("close the server: %v", err)
	}
	if r.reopen != nil {
		if err := r.store.Close(); err != nil {
			r.t.Errorf("close the store: %v", err)
		}
		r.store = r.reopen()
	}
	r.start()
}

func groupsEnv(t *testing.T, r *restartable) *groupstest.Env {
	c := dial(t, r.url, nil)
	return &groupstest.Env{
		Store: c, Service: c.Groups(), Reader: c,
		Restart: func() groups.Service {
			r.restart()
			return c.Groups()
		},
	}
}

func TestGroupsConformanceMemstore(t *testing.T) {
	groupstest.Run(t, func(t *testing.T) *groupstest.Env {
		return groupsEnv(t, newRestartable(t, memstore.New(nil), nil))
	})
}

func TestGroupsConformanceFilestore(t *testing.T) {
	groupstest.Run(t, func(t *testing.T) *groupstest.Env {
		dir := t.TempDir()
		open := func() annals.Store {
			st, err := filestore.Open(dir, nil)
			if err != nil {
				t.Fatal(err)
			}
			return st
		}
		return groupsEnv(t, newRestartable(t, open(), open))
	})
}
