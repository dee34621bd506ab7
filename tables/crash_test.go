package tables_test

import (
	"bufio"
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/annalsdb/annals/filestore"
	"github.com/annalsdb/annals/projection"
	"github.com/annalsdb/annals/tables"
	"github.com/google/go-cmp/cmp"
)

// The kill test runs a projection runner (and a writer) in a child process (this test binary,
// re-executed with ANNALS_PROJECTION_CRASH_DIR set), SIGKILLs it mid-stream, and restarts it;
// at the end the read model must equal the single-pass fold of the log: a replayed event
// would be counted twice, a lost one missing.

const projectionCrashEnv = "ANNALS_PROJECTION_CRASH_DIR"

func TestProjectionCrashChild(t *testing.T) {
	dir := os.Getenv(projectionCrashEnv)
	if dir == "" {
		t.Skip("runs only as the child of TestProjectionSurvivesSIGKILL")
	}
	s, err := filestore.Open(filepath.Join(dir, "events"), nil)
	if err != nil {
		fmt.Println("error", err)
		os.Exit(3)
	}
	db, err := tables.Open(filepath.Join(dir, "tables"), nil)
	if err != nil {
		fmt.Println("error", err)
		os.Exit(3)
	}
	c := newCounter(t, db)
	r, err := projection.NewRunner(s, db, c.projection(), &projection.RunnerOptions{MaxBatch: 16})
	if err != nil {
		fmt.Println("error", err)
		os.Exit(3)
	}
	go func() { // live writes while the runner catches up
		for {
			if _, err := tryAppendEvents(s, 10, 7); err != nil {
				fmt.Println("error", err)
				os.Exit(3)
			}
		}
	}()
	go func() {
		for {
			cp, _ := db.Checkpoint(context.Background(), "counter", 0)
			fmt.Println("checkpoint", cp)
			time.Sleep(2 * time.Millisecond) // the child's report rate; the test waits on the reports
		}
	}()
	err = r.Run(context.Background())
	fmt.Println("error", err)
	os.Exit(4)
}

func TestProjectionSurvivesSIGKILL(t *testing.T) {
	if testing.Short() {
		t.Skip("crash test skipped in -short mode")
	}
	seed := uint64(time.Now().UnixNano())
	t.Logf("seed %d", seed)
	rng := rand.New(rand.NewPCG(seed, seed))
	dir := t.TempDir()
	// A backlog the child is killed in the middle of.
	s, err := filestore.Open(filepath.Join(dir, "events"), nil)
	if err != nil {
		t.Fatal(err)
	}
	appendEvents(t, s, 20000, 7)
	s.Close()
	var last uint64
	const rounds = 6
	for round := range rounds {
		cmd := exec.Command(os.Args[0], "-test.run=^TestProjectionCrashChild$", "-test.count=1")
		cmd.Env = append(os.Environ(), projectionCrashEnv+"="+dir)
		out, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		cmd.Stderr = os.Stderr
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		lines := make(chan string, 1024)
		go func() {
			sc := bufio.NewScanner(out)
			for sc.Scan() {
				lines <- sc.Text()
			}
			close(lines)
		}()
		// Wait until the child has committed past where the last round left off.
		deadline := time.After(60 * time.Second)
		for progressed := false; !progressed; {
			select {
			case l, ok := <-lines:
				if !ok {
					t.Fatalf("round %d: child exited: %v", round, cmd.Wait())
				}
				if strings.HasPrefix(l, "error") {
					t.Fatalf("round %d: child: %s", round, l)
				}
				if f := strings.Fields(l); len(f) == 2 && f[0] == "checkpoint" {
					cp, _ := strconv.ParseUint(f[1], 10, 64)
					progressed = cp > last
				}
			case <-deadline:
				t.Fatalf("round %d: child made no progress in 60s", round)
			}
		}
		// Kill the child at a random moment after its progress: a chosen crash point, not a wait.
		time.Sleep(time.Duration(rng.IntN(40)) * time.Millisecond)
		if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		for range lines {
		}
		cmd.Wait()
		db, err := tables.Open(filepath.Join(dir, "tables"), nil)
		if err != nil {
			t.Fatalf("round %d: reopen tables: %v", round, err)
		}
		last, _ = db.Checkpoint(context.Background(), "counter", 0)
		db.Close()
		t.Logf("round %d: killed at checkpoint %d", round, last)
	}
	// Finish in this process and compare with a single pass.
	s, err = filestore.Open(filepath.Join(dir, "events"), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	db := openDB(t, filepath.Join(dir, "tables"))
	c := newCounter(t, db)
	r, _ := projection.NewRunner(s, db, c.projection(), nil)
	runInBackground(t, r)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	head := lastPos(t, s)
	if err := r.WaitFor(ctx, head); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(singlePass(t, s), c.rows(t)); diff != "" {
		t.Fatalf("read model after %d SIGKILLs differs from a single pass (-want +got):\n%s", rounds, diff)
	}
}
