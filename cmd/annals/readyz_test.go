package main

import (
	"bytes"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/annalsdb/annals"
	"github.com/annalsdb/annals/memstore"
	"github.com/annalsdb/annals/server"
)

// fullStore is a memstore whose Ready method reports a full disk, as filestore's does.
type fullStore struct {
	annals.Store
}

func (fullStore) Ready() error { return errors.New("append: no space left on device (secret detail)") }

// TestReadyz checks /readyz: ok for a ready store; 503 for a store whose Ready method says it
// cannot append, with the reason in the log and not in the answer; 503 once shutdown began.
func TestReadyz(t *testing.T) {
	mem := memstore.New(nil)
	defer mem.Close()
	for _, tt := range []struct {
		name   string
		store  annals.Store
		ready  bool
		status int
		logged string
	}{
		{"Ready", mem, true, http.StatusOK, ""},
		{"DiskFull", fullStore{mem}, true, http.StatusServiceUnavailable, "no space left on device"},
		{"ShuttingDown", mem, false, http.StatusServiceUnavailable, ""},
	} {
		t.Run(tt.name, func(t *testing.T) {
			var logs bytes.Buffer
			log := slog.New(slog.NewTextHandler(&logs, nil))
			srv := server.New(tt.store, &server.Options{Logger: log})
			defer srv.Close()
			var ready atomic.Bool
			ready.Store(tt.ready)
			hs := httptest.NewServer(routes(srv, nil, server.NewMetrics(nil), &ready, log))
			defer hs.Close()
			res, err := http.Get(hs.URL + "/readyz")
			if err != nil {
				t.Fatal(err)
			}
			b, _ := io.ReadAll(res.Body)
			res.Body.Close()
			if res.StatusCode != tt.status {
				t.Errorf("status: got %d %q, want %d", res.StatusCode, b, tt.status)
			}
			if strings.Contains(string(b), "secret") {
				t.Errorf("answer %q shows the store's error", b)
			}
			if !strings.Contains(logs.String(), tt.logged) {
				t.Errorf("log does not have %q:\n%s", tt.logged, logs.String())
			}
		})
	}
}

// switchStore is a memstore whose Ready method fails while full is set.
type switchStore struct {
	annals.Store
	full atomic.Bool
}

func (s *switchStore) Ready() error {
	if s.full.Load() {
		return errors.New("append: no space left on device")
	}
	return nil
}

// TestReadyzLogsChanges checks that /readyz logs when readiness changes, not on every probe:
// three failed probes log one warning, and the probe after the store recovers logs that it is
// ready again.
func TestReadyzLogsChanges(t *testing.T) {
	mem := memstore.New(nil)
	defer mem.Close()
	store := &switchStore{Store: mem}
	store.full.Store(true)
	var logs syncBuffer
	log := slog.New(slog.NewTextHandler(&logs, nil))
	srv := server.New(store, &server.Options{Logger: log})
	defer srv.Close()
	var ready atomic.Bool
	ready.Store(true)
	hs := httptest.NewServer(routes(srv, nil, server.NewMetrics(nil), &ready, log))
	defer hs.Close()
	probe := func(want int) {
		t.Helper()
		res, err := http.Get(hs.URL + "/readyz")
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
		if res.StatusCode != want {
			t.Errorf("status: got %d, want %d", res.StatusCode, want)
		}
	}
	for range 3 {
		probe(http.StatusServiceUnavailable)
	}
	store.full.Store(false)
	probe(http.StatusOK)
	probe(http.StatusOK)
	if n := strings.Count(logs.String(), "readyz: not ready"); n != 1 {
		t.Errorf("three failed probes logged %d warnings, want 1:\n%s", n, logs.String())
	}
	if n := strings.Count(logs.String(), "readyz: ready again"); n != 1 {
		t.Errorf("recovery logged %d times, want 1:\n%s", n, logs.String())
	}
}
