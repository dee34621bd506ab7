package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/annalsdb/annals/client"
	"github.com/annalsdb/annals/server"
	"golang.org/x/crypto/bcrypt"
)

// built is the annals binary the process tests run, built once per test run.
var built struct {
	sync.Once
	dir, bin string
	err      error
}

func TestMain(m *testing.M) {
	code := m.Run()
	if built.dir != "" {
		os.RemoveAll(built.dir)
	}
	os.Exit(code)
}

// annalsBinary builds the binary (once) and returns its path.
func annalsBinary(t testing.TB) string {
	t.Helper()
	if testing.Short() {
		t.Skip("builds the binary and starts server processes")
	}
	built.Do(func() {
		if built.dir, built.err = os.MkdirTemp("", "annals-test-bin-"); built.err != nil {
			return
		}
		built.bin = filepath.Join(built.dir, "annals")
		out, err := exec.Command("go", "build", "-o", built.bin, ".").CombinedOutput()
		if err != nil {
			built.err = fmt.Errorf("go build: %v\n%s", err, out)
		}
	})
	if built.err != nil {
		t.Fatal(built.err)
	}
	return built.bin
}

// serverProc is an "annals serve" process.
type serverProc struct {
	t    *testing.T
	cmd  *exec.Cmd
	url  string
	logs *syncBuffer
	done chan struct{} // closed when the process has exited; err is then its Wait error
	err  error
}

// cleanEnv is the environment without ANNALS_ variables, plus env.
func cleanEnv(env ...string) []string {
	var out []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "ANNALS_") {
			out = append(out, kv)
		}
	}
	return append(out, env...)
}

// startServer starts "annals --data data serve" on a free loopback port, with JSON logs and
// args, and waits until it serves. The process is killed at the end of the test if it still
// runs.
func startServer(t *testing.T, data string, env []string, args ...string) *serverProc {
	t.Helper()
	bin := annalsBinary(t)
	cmd := exec.Command(bin, append([]string{"--data", data, "serve", "--listen", "127.0.0.1:0", "--log-format", "json"}, args...)...)
	cmd.Env = cleanEnv(env...)
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	p := &serverProc{t: t, cmd: cmd, logs: &syncBuffer{}, done: make(chan struct{})}
	urls := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stderr)
		sc.Buffer(make([]byte, 1<<16), 1<<20)
		for sc.Scan() {
			line := sc.Text()
			p.logs.Write([]byte(line + "\n"))
			var rec struct{ Msg, URL string }
			if json.Unmarshal([]byte(line), &rec) == nil && rec.Msg == servingLogMessage {
				urls <- rec.URL
			}
		}
		io.Copy(io.Discard, stderr)
		p.err = cmd.Wait()
		close(p.done)
	}()
	select {
	case p.url = <-urls:
	case <-p.done:
		t.Fatalf("annals serve ended before serving: %v\n%s", p.err, p.logs.String())
	case <-time.After(30 * time.Second):
		cmd.Process.Kill()
		t.Fatalf("annals serve did not serve within 30s\n%s", p.logs.String())
	}
	t.Cleanup(func() {
		select {
		case <-p.done:
		default:
			p.cmd.Process.Kill()
			<-p.done
		}
	})
	return p
}

// stop sends SIGTERM and waits for a clean exit.
func (p *serverProc) stop() {
	p.t.Helper()
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		p.t.Fatal(err)
	}
	select {
	case <-p.done:
	case <-time.After(60 * time.Second):
		p.cmd.Process.Kill()
		<-p.done
		p.t.Fatalf("annals serve did not stop within 60s of SIGTERM\n%s", p.logs.String())
	}
	if p.err != nil {
		p.t.Fatalf("annals serve after SIGTERM: %v\n%s", p.err, p.logs.String())
	}
}

// kill9 sends SIGKILL and waits for the process to end.
func (p *serverProc) kill9() {
	p.t.Helper()
	if err := p.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		p.t.Fatal(err)
	}
	<-p.done
}

// dialServer opens a client of url with token, closed at the end of the test.
func dialServer(t testing.TB, url, token string, opts *client.Options) *client.Client {
	t.Helper()
	if opts == nil {
		opts = &client.Options{}
	}
	opts.Token = token
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	c, err := client.Open(ctx, url, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// testAuth is an auth file for the tests and the tokens and passwords it accepts.
type testAuth struct {
	file                                   string
	adminToken, metricsToken, auditorToken string
	passwords                              map[string]string
}

// writeTestAuth writes an auth file: users alice (admin) and bob (read and write on cart-),
// tokens admin, metrics (scraper) and auditor (a role that no grant names: it gets in only
// where a stream ACL names it).
func writeTestAuth(t *testing.T) testAuth {
	t.Helper()
	a := testAuth{
		file:       filepath.Join(t.TempDir(), "auth.yaml"),
		adminToken: server.NewToken(), metricsToken: server.NewToken(), auditorToken: server.NewToken(),
		passwords: map[string]string{"alice": "alice's secret", "bob": "bob's secret"},
	}
	hash := func(pw string) string {
		h, err := bcrypt.GenerateFromPassword([]byte(pw), bcrypt.MinCost)
		if err != nil {
			t.Fatal(err)
		}
		return string(h)
	}
	yaml := fmt.Sprintf(`# test auth file
roles:
  cart: ["read:cart-", "write:cart-"]
  scraper: ["metrics"]
  auditor: []
users:
  - name: alice
    passwordHash: %q
    roles: [admin]
  - name: bob
    passwordHash: %q
    roles: [cart]
tokens:
  - name: admin-token
    sha256: %s
    roles: [admin]
  - name: prometheus
    sha256: %s
    roles: [scraper]
  - name: auditor-token
    sha256: %s
    roles: [auditor]
`, hash(a.passwords["alice"]), hash(a.passwords["bob"]), server.HashToken(a.adminToken), server.HashToken(a.metricsToken), server.HashToken(a.auditorToken))
	if err := os.WriteFile(a.file, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	return a
}
