package client_test

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/annalsdb/annals"
	"github.com/annalsdb/annals/client"
	"github.com/annalsdb/annals/filestore"
	"github.com/annalsdb/annals/memstore"
	"github.com/annalsdb/annals/server"
)

// h2c returns the protocols of a test server: HTTP/1 and unencrypted HTTP/2.
func h2c() *http.Protocols {
	var p http.Protocols
	p.SetHTTP1(true)
	p.SetUnencryptedHTTP2(true)
	return &p
}

// serve starts an in-process server over store on a loopback port and returns its URL. The
// server and its listener stop at the end of the test; the store is left to its owner.
func serve(t testing.TB, store annals.Store, opts *server.Options) (string, *server.Server) {
	t.Helper()
	if opts == nil {
		opts = &server.Options{}
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.NewTextHandler(t.Output(), nil))
	}
	srv := server.New(store, opts)
	hs := httptest.NewUnstartedServer(srv.Handler())
	hs.Config.Protocols = h2c()
	hs.Start()
	t.Cleanup(func() {
		srv.Close()
		hs.Close()
	})
	return hs.URL, srv
}

// dial opens a client of url that is closed at the end of the test.
func dial(t testing.TB, url string, opts *client.Options) *client.Client {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := client.Open(ctx, url, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// openMem returns a client of a fresh in-process server over a memstore.
func openMem(t *testing.T) annals.Store {
	st := memstore.New(nil)
	t.Cleanup(func() { st.Close() })
	url, _ := serve(t, st, &server.Options{Backend: "memstore"})
	return dial(t, url, nil)
}

// openFile returns a client of a fresh in-process server over a filestore.
func openFile(t *testing.T) annals.Store {
	st, err := filestore.Open(t.TempDir(), nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	url, _ := serve(t, st, &server.Options{Backend: "filestore"})
	return dial(t, url, nil)
}

// The server process: this test binary, re-executed with serveChildEnv set, runs
// TestServeChild, which serves a store until its standard input closes.
const (
	serveChildEnv = "ANNALS_SERVE_CHILD" // "memstore" or a filestore directory
	serveAddrEnv  = "ANNALS_SERVE_ADDR"  // the address to listen on; default 127.0.0.1:0
	listeningLine = "annals-test-server listening on "
)

// TestServeChild is the body of the server process; it does nothing in a normal test run.
func TestServeChild(t *testing.T) {
	what := os.Getenv(serveChildEnv)
	if what == "" {
		t.Skip("runs only as the server process of the process tests")
	}
	var st annals.Store
	backend := "memstore"
	if what == "memstore" {
		st = memstore.New(nil)
	} else {
		fs, err := filestore.Open(what, nil)
		if err != nil {
			fmt.Println("open-error", err)
			os.Exit(3)
		}
		st, backend = fs, "filestore"
	}
	addr := os.Getenv(serveAddrEnv)
	if addr == "" {
		addr = "127.0.0.1:0"
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		fmt.Println("listen-error", err)
		os.Exit(3)
	}
	srv := server.New(st, &server.Options{Backend: backend, Logger: slog.New(slog.NewTextHandler(os.Stderr, nil))})
	hs := &http.Server{Handler: srv.Handler(), Protocols: h2c()}
	go hs.Serve(ln)
	fmt.Println(listeningLine + "http://" + ln.Addr().String())
	io.Copy(io.Discard, os.Stdin) // until the parent closes it or dies
	srv.Close()
	hs.Close()
	st.Close()
	os.Exit(0)
}

// proc is a server process.
type proc struct {
	cmd   *exec.Cmd
	stdin io.WriteCloser
	url   string
	done  chan error
}

// startProc starts a server process over what (see serveChildEnv) on addr ("" for any
// port) and waits until it listens. The process is stopped at the end of the test.
func startProc(t testing.TB, what, addr string) *proc {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^TestServeChild$")
	cmd.Env = append(os.Environ(), serveChildEnv+"="+what, serveAddrEnv+"="+addr)
	cmd.Stderr = os.Stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	p := &proc{cmd: cmd, stdin: stdin, done: make(chan error, 1)}
	urls := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			if u, ok := strings.CutPrefix(sc.Text(), listeningLine); ok {
				urls <- u
			}
		}
		io.Copy(io.Discard, stdout)
		p.done <- cmd.Wait()
	}()
	select {
	case p.url = <-urls:
	case err := <-p.done:
		t.Fatalf("server process ended before listening: %v", err)
	case <-time.After(30 * time.Second):
		cmd.Process.Kill()
		t.Fatal("server process did not listen within 30s")
	}
	t.Cleanup(p.stop)
	return p
}

// stop ends the process gracefully (closing its standard input), or kills it after 10s.
func (p *proc) stop() {
	p.stdin.Close()
	select {
	case <-p.done:
	case <-time.After(10 * time.Second):
		p.cmd.Process.Kill()
		<-p.done
	}
	p.done <- nil // for a second stop
}

// kill ends the process with SIGKILL and waits for it.
func (p *proc) kill() {
	p.cmd.Process.Kill()
	<-p.done
	p.done <- errors.New("killed")
}
