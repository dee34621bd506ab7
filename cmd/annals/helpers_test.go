package main

import (
	"bytes"
	"context"
	"regexp"
	"strings"
	"sync"
	"testing"

	"github.com/annalsdb/annals"
	"github.com/annalsdb/annals/filestore"
)

// testOpener chooses the store the tests run against: the real filestore, as the binary
// opens it.
var testOpener opener = fileOpener

// An opener returns the Main.Open for one test. With shared false, each Run may open and
// close the store itself (nil: Main's default, filestore.Open(dir, nil)); with shared true,
// Runs that overlap (tail and append) must share one open store.
type opener func(t *testing.T, shared bool) func(dir string) (annals.Store, error)

func fileOpener(t *testing.T, shared bool) func(string) (annals.Store, error) {
	if !shared {
		return nil
	}
	return sharedStores(t, func(dir string) (annals.Store, error) { return filestore.Open(dir, nil) })
}

// sharedStores opens one store per data directory with open, on first use, and hands it to
// every Run; Run's Close leaves it open, and the test's cleanup closes it.
func sharedStores(t *testing.T, open func(string) (annals.Store, error)) func(string) (annals.Store, error) {
	var (
		mu     sync.Mutex
		stores = make(map[string]annals.Store)
	)
	t.Cleanup(func() {
		mu.Lock()
		defer mu.Unlock()
		for dir, s := range stores {
			if err := s.Close(); err != nil {
				t.Errorf("close store %s: %v", dir, err)
			}
		}
	})
	return func(dir string) (annals.Store, error) {
		mu.Lock()
		defer mu.Unlock()
		s, ok := stores[dir]
		if !ok {
			var err error
			if s, err = open(dir); err != nil {
				return nil, err
			}
			stores[dir] = s
		}
		return keepOpen{s}, nil
	}
}

// keepOpen is a store whose Close does nothing.
type keepOpen struct{ annals.Store }

func (keepOpen) Close() error { return nil }

// env is a data directory and the way the tests' Runs open it.
type env struct {
	t    *testing.T
	dir  string
	open func(string) (annals.Store, error)
}

func newEnv(t *testing.T) *env {
	return &env{t: t, dir: t.TempDir(), open: testOpener(t, false)}
}

// newSharedEnv is newEnv for tests whose Runs overlap.
func newSharedEnv(t *testing.T) *env {
	return &env{t: t, dir: t.TempDir(), open: testOpener(t, true)}
}

type result struct {
	stdout, stderr string
	err            error
	code           int    // the exit status main would give
	line           string // the error line main would print; "" on success
}

// run runs the command line args (with --data set to e's directory) with stdin as input.
func (e *env) run(ctx context.Context, stdin string, args ...string) result {
	e.t.Helper()
	var stdout, stderr bytes.Buffer
	return e.runTo(ctx, &stdout, &stderr, stdin, args...)
}

func (e *env) runTo(ctx context.Context, stdout, stderr interface {
	Write([]byte) (int, error)
	String() string
}, stdin string, args ...string) result {
	m := &Main{
		Stdin:  strings.NewReader(stdin),
		Stdout: stdout,
		Stderr: stderr,
		Args:   append([]string{"--data", e.dir}, args...),
		Getenv: func(string) string { return "" },
		Open:   e.open,
	}
	err := m.Run(ctx)
	r := result{stdout: stdout.String(), stderr: stderr.String(), err: err}
	if err != nil {
		r.code, r.line = exitCode(err), errorLine(err)
	}
	return r
}

// ok runs args and fails the test unless the command succeeds; it returns its stdout.
func (e *env) ok(stdin string, args ...string) string {
	e.t.Helper()
	r := e.run(context.Background(), stdin, args...)
	if r.err != nil {
		e.t.Fatalf("annals %s: %s (exit %d)", strings.Join(args, " "), r.line, r.code)
	}
	return r.stdout
}

// withStore opens the store of e for a direct look or change, outside any Run.
func (e *env) withStore(fn func(annals.Store)) {
	e.t.Helper()
	m := &Main{Open: e.open, dataDir: e.dir}
	if err := m.withStore(context.Background(), false, func(s annals.Store) error { fn(s); return nil }); err != nil {
		e.t.Fatal(err)
	}
}

var (
	timeRE     = regexp.MustCompile(`\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z`)
	idRE       = regexp.MustCompile(`"id":"[0-9a-f-]{36}"`)
	positionRE = regexp.MustCompile(`"position":\d+`)
)

// normalize replaces the times in out with TIME and, when ids is true, the ids with ID.
func normalize(out string, ids bool) string {
	out = timeRE.ReplaceAllString(out, "TIME")
	if ids {
		out = idRE.ReplaceAllString(out, `"id":"ID"`)
	}
	return out
}

// syncBuffer is a bytes.Buffer safe for one writer and concurrent readers.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

func lines(s string) []string {
	s = strings.TrimSuffix(s, "\n")
	if s == "" {
		return nil
	}
	return strings.Split(s, "\n")
}
