package replicatest

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/annalsdb/annals"
	"github.com/annalsdb/annals/internal/testwait"
	"github.com/annalsdb/annals/lease"
)

// The environment of a replica's child process: the test binary, re-executed to run only the
// test named by [Setup].Child, which calls [RunChild].
const (
	// RoleEnv names what the child runs (RoleLogProjection, RoleProcess, or a role of the
	// test's own); it is empty in a normal test run.
	RoleEnv   = "ANNALS_REPLICA_ROLE"
	holderEnv = "ANNALS_REPLICA_HOLDER"
	batchEnv  = "ANNALS_REPLICA_BATCH"
)

// Roles of a child process.
const (
	// RoleLogProjection runs the runner of [NewLogRunner].
	RoleLogProjection = "log-projection"
	// RoleProcess runs the runner of [NewProcessRunner].
	RoleProcess = "process"
)

// ChildRunner makes the runner of a role of the test's own, in a child process: for the
// replica holder, with keeper k and the batch size (or checkpoint interval) batch.
type ChildRunner func(holder string, k lease.Keeper, batch int) (Runner, error)

// RunChild is the body of a replica's child process: it skips the test unless the process is
// one (RoleEnv is set). It opens the store with open, makes the runner of its role (roles
// names the test's own roles, besides [RoleLogProjection] and [RoleProcess], which run over
// the store open returns, with it as the keeper), and runs it until its standard input
// closes (the parent stops it gracefully: the runner releases its lease) or it is killed. The
// test passes after a graceful stop; the process exits with status 3 when anything failed.
func RunChild(t *testing.T, open func() (annals.Store, lease.Keeper, error), roles map[string]ChildRunner) {
	role := os.Getenv(RoleEnv)
	if role == "" {
		t.Skip("runs only as a replica's child process")
	}
	fail := func(format string, args ...any) {
		fmt.Fprintf(os.Stderr, "replica %s: "+format+"\n", append([]any{os.Getenv(holderEnv)}, args...)...)
		os.Exit(3)
	}
	holder := os.Getenv(holderEnv)
	batch, err := strconv.Atoi(os.Getenv(batchEnv))
	if err != nil {
		fail("%s: %v", batchEnv, err)
	}
	store, keeper, err := open()
	if err != nil {
		fail("open the store: %v", err)
	}
	var r Runner
	switch role {
	case RoleLogProjection:
		r, err = NewLogRunner(store, keeper, holder, batch)
	case RoleProcess:
		r, err = NewProcessRunner(store, keeper, holder, batch, nil)
	default:
		newRunner, ok := roles[role]
		if !ok {
			fail("unknown role %q", role)
		}
		r, err = newRunner(holder, keeper, batch)
	}
	if err != nil {
		fail("new runner: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	go func() {
		_, _ = io.Copy(io.Discard, os.Stdin) // until the parent closes it
		cancel()
	}()
	if err := r.Run(ctx); !errors.Is(err, context.Canceled) {
		fail("Run: %v", err)
	}
	if err := store.Close(); err != nil {
		fail("close: %v", err)
	}
}

// ChildStart returns a Start that runs each replica as a child process that runs the test
// setup.Child with the environment setup.Env and the role, holder and batch size (chosen with
// rng) that [RunChild] reads. A replica's Crash kills its process with SIGKILL.
func ChildStart(t *testing.T, rng *rand.Rand, setup Setup, role string) Start {
	return func(holder string, _ Replica) (Replica, error) {
		cmd := exec.Command(os.Args[0], "-test.run=^"+setup.Child+"$", "-test.v=false")
		cmd.Env = append(append(os.Environ(), setup.Env...),
			RoleEnv+"="+role, holderEnv+"="+holder, batchEnv+"="+strconv.Itoa(1+rng.IntN(20)))
		cmd.Stderr = t.Output()
		stdin, err := cmd.StdinPipe()
		if err != nil {
			return nil, err
		}
		if err := cmd.Start(); err != nil {
			return nil, err
		}
		c := &child{cmd: cmd, stdin: stdin, done: make(chan error, 1), timeout: testwait.Timeout(t)}
		go func() { c.done <- cmd.Wait() }()
		t.Cleanup(func() { c.Crash() })
		return c, nil
	}
}

// child is a replica in a child process.
type child struct {
	cmd     *exec.Cmd
	stdin   io.Closer
	done    chan error
	timeout time.Duration
	once    sync.Once
	err     error
}

// Stall does nothing: a child process renews its lease by itself.
func (c *child) Stall() bool { return false }

// Crash kills the process with SIGKILL and waits for it.
func (c *child) Crash() error {
	c.once.Do(func() {
		_ = c.cmd.Process.Kill()
		<-c.done
		c.stdin.Close()
	})
	return nil
}

// Stop closes the process's standard input, which makes it stop its runner and exit, and
// waits for it; it kills it when it does not exit in time.
func (c *child) Stop() error {
	c.once.Do(func() {
		c.stdin.Close()
		select {
		case err := <-c.done:
			if err != nil {
				c.err = fmt.Errorf("replica process: %w", err)
			}
		case <-time.After(c.timeout):
			_ = c.cmd.Process.Kill()
			<-c.done
			c.err = errors.New("replica process did not stop in time: killed")
		}
	})
	return c.err
}
