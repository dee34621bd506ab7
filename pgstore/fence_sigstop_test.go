//go:build unix

package pgstore_test

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/annalsdb/annals"
	"github.com/annalsdb/annals/internal/testwait"
	"github.com/annalsdb/annals/lease"
	"github.com/annalsdb/annals/pgstore"
	"github.com/annalsdb/annals/projection"
	"github.com/annalsdb/annals/supervisor"
	"github.com/jackc/pgx/v5"
)

// The runner process of TestProjectionsFencingSIGSTOP: this test binary, re-executed with
// fenceChildEnv set to the store's schema, runs TestFenceChild.
const (
	fenceChildEnv   = "ANNALS_FENCE_CHILD"   // the schema of the store
	fenceTriggerEnv = "ANNALS_FENCE_TRIGGER" // the position of the event the child pauses at
	fenceTTL        = 400 * time.Millisecond
)

// childStore is the child's Projections: on the batch holding the trigger, it says "paused"
// on standard output and waits for a line on standard input (the parent stops the process
// meanwhile), then makes the Update with a context that its supervisor cannot cancel (a
// process whose timers have not fired yet when it resumes), and says what the store answered.
type childStore struct {
	*pgstore.Projections
	trigger uint64
	lines   <-chan string
	once    sync.Once
}

func (s *childStore) Update(ctx context.Context, name string, gen uint64, from, to uint64, fn func(*pgstore.ProjectionTx) error) error {
	hit := false
	if from < s.trigger && s.trigger <= to {
		s.once.Do(func() { hit = true })
	}
	if !hit {
		return s.Projections.Update(ctx, name, gen, from, to, fn)
	}
	fmt.Printf("paused %d %d\n", from, to)
	<-s.lines
	err := s.Projections.Update(context.WithoutCancel(ctx), name, gen, from, to, fn)
	fmt.Printf("verdict lost=%v ctx=%v err=%v\n", errors.Is(err, lease.ErrLost), ctx.Err(), err)
	return err
}

// TestFenceChild is the body of the runner process; it does nothing in a normal test run.
func TestFenceChild(t *testing.T) {
	schema := os.Getenv(fenceChildEnv)
	if schema == "" {
		t.Skip("runs only as the runner process of TestProjectionsFencingSIGSTOP")
	}
	trigger, err := strconv.ParseUint(os.Getenv(fenceTriggerEnv), 10, 64)
	if err != nil {
		fmt.Println("error", err)
		os.Exit(3)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	s, err := pgstore.Open(ctx, testDatabase(t), &pgstore.Options{Schema: schema, MaxConns: 4})
	if err != nil {
		fmt.Println("error", err)
		os.Exit(3)
	}
	lines := make(chan string)
	go func() {
		sc := bufio.NewScanner(os.Stdin)
		for sc.Scan() {
			lines <- sc.Text()
		}
		cancel() // the parent closed standard input, or died
	}()
	p := pgstore.NewProjections(s, &pgstore.ProjectionsOptions{Setup: fenceSetup})
	r, err := projection.NewRunner(s, projection.Store[*pgstore.ProjectionTx](&childStore{Projections: p, trigger: trigger, lines: lines}), fenceProjection(1),
		&projection.RunnerOptions{MaxBatch: 5, Supervision: supervisor.Policy{Keeper: p, Holder: "child", TTL: fenceTTL,
			OnChange: func(st supervisor.Status) {
				if st.State == supervisor.StandingBy && st.Err != nil {
					fmt.Printf("standing-by lost=%v err=%v\n", errors.Is(st.Err, lease.ErrLost), st.Err)
				}
			}}})
	if err != nil {
		fmt.Println("error", err)
		os.Exit(3)
	}
	err = r.Run(ctx)
	s.Close()
	if !errors.Is(err, context.Canceled) {
		fmt.Println("error", err)
		os.Exit(3)
	}
	os.Exit(0)
}

// parentStore holds the parent's first batch Update until release is closed.
type parentStore struct {
	*pgstore.Projections
	reached chan struct{}
	release chan struct{}
	once    sync.Once
}

func (s *parentStore) Update(ctx context.Context, name string, gen uint64, from, to uint64, fn func(*pgstore.ProjectionTx) error) error {
	if from != to {
		s.once.Do(func() {
			close(s.reached)
			<-s.release
		})
	}
	return s.Projections.Update(ctx, name, gen, from, to, fn)
}

// TestProjectionsFencingSIGSTOP is the fencing test with a real pause: a runner in a child
// process is stopped (SIGSTOP) just before the Update of a batch, past its lease; a runner of
// this process takes the lease over (on the database's clock) and claims the checkpoint; the
// child is resumed (SIGCONT) and makes its Update with a context its supervisor cannot cancel,
// so that only the database's check of the lease can refuse it: the refusal must match
// lease.ErrLost, the checkpoint must not move, the child must stand by, and the read model must
// equal one clean pass, written by the child up to its checkpoint and by this process after.
func TestProjectionsFencingSIGSTOP(t *testing.T) {
	s := openStore(t, nil)
	schema := s.Schema()
	ctx := testwait.Context(t)
	var pos []uint64
	for i := range 40 {
		res, err := s.Append(ctx, fmt.Sprintf("acct-%d", i%3), annals.Any, annals.Event{Type: "Deposited", Data: []byte(`{}`)})
		if err != nil {
			t.Fatal(err)
		}
		pos = append(pos, res.Position)
	}
	head, trigger := pos[len(pos)-1], pos[17]

	cmd := exec.Command(os.Args[0], "-test.run=^TestFenceChild$", "-test.v=false")
	cmd.Env = append(os.Environ(), fenceChildEnv+"="+schema, fenceTriggerEnv+"="+strconv.FormatUint(trigger, 10))
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
	lines := make(chan string, 16)
	exited := make(chan error, 1)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			lines <- sc.Text()
		}
		io.Copy(io.Discard, stdout)
		exited <- cmd.Wait()
	}()
	t.Cleanup(func() {
		syscall.Kill(cmd.Process.Pid, syscall.SIGCONT)
		stdin.Close()
		select {
		case <-exited:
		case <-time.After(10 * time.Second):
			cmd.Process.Kill()
			<-exited
		}
	})
	next := func(prefix string) string {
		t.Helper()
		for {
			l := testwait.Recv(t, "the child to say "+prefix, lines)
			if strings.HasPrefix(l, prefix) {
				return l
			}
			if strings.HasPrefix(l, "error") {
				t.Fatalf("child: %s", l)
			}
		}
	}

	paused := next("paused ")
	var from, to uint64
	if _, err := fmt.Sscanf(paused, "paused %d %d", &from, &to); err != nil {
		t.Fatalf("%q: %v", paused, err)
	}
	if err := syscall.Kill(cmd.Process.Pid, syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	p := pgstore.NewProjections(s, &pgstore.ProjectionsOptions{Setup: fenceSetup})
	before, err := p.Checkpoint(ctx, fenceName, 0)
	if err != nil || before != from {
		t.Fatalf("the child paused before its Update from %d with the checkpoint at %d (%v)", from, before, err)
	}

	// This process takes the lease once the stopped child's runs out, and claims.
	target := &parentStore{Projections: p, reached: make(chan struct{}), release: make(chan struct{})}
	release := sync.OnceFunc(func() { close(target.release) })
	r, err := projection.NewRunner(s, projection.Store[*pgstore.ProjectionTx](target), fenceProjection(2),
		&projection.RunnerOptions{MaxBatch: 5, Supervision: supervisor.Policy{Keeper: p, Holder: "parent", TTL: fenceTTL}})
	if err != nil {
		t.Fatal(err)
	}
	stop := runInBackground(t, r)
	t.Cleanup(release) // before stop, which waits for the runner
	testwait.Recv(t, "this process to take the lease and claim", target.reached)
	if ls, err := p.Leases(ctx, projection.LeasePrefix+fenceName); err != nil || len(ls) != 1 || ls[0].Holder != "parent" {
		t.Fatalf("leases %+v (%v), want one held by parent", ls, err)
	}

	// The child resumes into its Update.
	if _, err := io.WriteString(stdin, "go\n"); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Kill(cmd.Process.Pid, syscall.SIGCONT); err != nil {
		t.Fatal(err)
	}
	verdict := next("verdict ")
	if !strings.HasPrefix(verdict, "verdict lost=true") {
		t.Fatalf("the child's Update after the takeover: %s, want a refusal matching lease.ErrLost", verdict)
	}
	t.Logf("child: %s", verdict)
	if cp, err := p.Checkpoint(ctx, fenceName, 0); err != nil || cp != before {
		t.Fatalf("after the child's refusal the checkpoint is %d (%v), want %d", cp, err, before)
	}
	// The child stands by, for the lost lease: its work ended with the refusal, or with its
	// context, which its supervisor cancelled with lease.ErrLost as the cause when it woke past
	// its deadline.
	if l := next("standing-by "); !strings.HasPrefix(l, "standing-by lost=true") {
		t.Fatalf("child: %s, want it to stand by for its lost lease", l)
	}

	release()
	if err := r.WaitFor(ctx, head); err != nil {
		t.Fatal(err)
	}
	applied := map[uint64][]int{}
	err = p.Read(ctx, fenceName, func(schema string) error {
		rows, err := s.Pool().Query(ctx, "SELECT position, replica FROM "+schema+".applied ORDER BY seq")
		if err != nil {
			return err
		}
		var p int64
		var r int
		_, err = pgx.ForEachRow(rows, []any{&p, &r}, func() error {
			applied[uint64(p)] = append(applied[uint64(p)], r)
			return nil
		})
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	for i, p := range pos {
		want := []int{1}
		if p > before {
			want = []int{2}
		}
		if !slices.Equal(applied[p], want) {
			t.Errorf("event %d (position %d) applied by replicas %v, want %v (1: the child, 2: this process)", i+1, p, applied[p], want)
		}
	}
	if len(applied) != len(pos) {
		t.Errorf("the read model holds %d events, want %d", len(applied), len(pos))
	}
	if err := stop(); !errors.Is(err, context.Canceled) {
		t.Fatalf("Run: %v, want context.Canceled", err)
	}
}
