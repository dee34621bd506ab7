package main

import (
	"bufio"
	"bytes"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestBinary builds the real binary and runs it as a user would, against the real filestore.
func TestBinary(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary")
	}
	bin := filepath.Join(t.TempDir(), "annals")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	data := filepath.Join(t.TempDir(), "data")
	run := func(stdin string, args ...string) (stdout, stderr string, code int) {
		t.Helper()
		cmd := exec.Command(bin, args...)
		cmd.Env = append(os.Environ(), "ANNALS_DATA="+data)
		cmd.Stdin = strings.NewReader(stdin)
		var o, e bytes.Buffer
		cmd.Stdout, cmd.Stderr = &o, &e
		err := cmd.Run()
		if ee, ok := errors.AsType[*exec.ExitError](err); ok {
			code = ee.ExitCode()
		} else if err != nil {
			t.Fatal(err)
		}
		return o.String(), e.String(), code
	}

	failures := []struct {
		args []string
		code int
	}{
		{[]string{"read", "cart-1"}, 1}, // no data directory yet
		{[]string{"read", "--nope"}, 2},
		{[]string{"append", "cart-1"}, 2},
		{[]string{"append", "cart-1", "A", "{"}, 2},
		{[]string{"frobnicate"}, 2},
	}
	for _, f := range failures {
		stdout, stderr, code := run("", f.args...)
		if code != f.code {
			t.Errorf("annals %q: exit status %d, want %d", f.args, code, f.code)
		}
		if !strings.HasPrefix(stderr, "annals: ") || strings.Count(stderr, "\n") != 1 || !strings.HasSuffix(stderr, "\n") {
			t.Errorf("annals %q: stderr %q, want one line starting \"annals: \"", f.args, stderr)
		}
		if strings.Contains(stderr, "goroutine") || strings.Contains(stderr, "panic") {
			t.Errorf("annals %q: stderr shows a crash: %q", f.args, stderr)
		}
		if stdout != "" {
			t.Errorf("annals %q: stdout %q, want nothing", f.args, stdout)
		}
	}

	// ANNALS_DATA names the data directory; the events survive from one process to the next.
	if _, stderr, code := run("", "append", "cart-1", "ItemAdded", `{"sku":"A1"}`); code != 0 {
		t.Fatalf("append: exit %d: %s", code, stderr)
	}
	if stdout, stderr, code := run("", "read", "cart-1"); code != 0 || !strings.Contains(stdout, `cart-1@0  ItemAdded`) {
		t.Fatalf("read: exit %d, stdout %q, stderr %q", code, stdout, stderr)
	}

	// Ctrl-C ends tail with exit status 0.
	cmd := exec.Command(bin, "--data", data, "tail", "cart-1", "--from", "0")
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	lines := make(chan string)
	go func() {
		defer close(lines)
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			lines <- sc.Text()
		}
	}()
	select {
	case l := <-lines: // tail is following: the signal handler is in place
		if !strings.Contains(l, "cart-1@0") {
			t.Errorf("tail printed %q", l)
		}
	case <-time.After(20 * time.Second):
		cmd.Process.Kill()
		t.Fatal("tail printed nothing")
	}
	if err := cmd.Process.Signal(syscall.SIGINT); err != nil {
		t.Fatal(err)
	}
	kill := time.AfterFunc(20*time.Second, func() { cmd.Process.Kill() })
	defer kill.Stop()
	for range lines {
	}
	if err := cmd.Wait(); err != nil {
		t.Errorf("tail after SIGINT: %v, stderr %q; want exit status 0", err, stderr.String())
	}
}
