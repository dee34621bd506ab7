package filestore

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/annalsdb/annals"
)

// The crash test runs a writer in a child process (this test binary, re-executed with
// ANNALS_CRASH_DIR set), SIGKILLs it at a random moment, reopens the directory and checks that
// every append the child saw acknowledged is there, exactly as acknowledged, that every append
// is there entirely or not at all, and that positions and revisions run without gaps.

const crashChildEnv = "ANNALS_CRASH_DIR"

// TestCrashChild is the child's body; it does nothing in a normal test run.
func TestCrashChild(t *testing.T) {
	dir := os.Getenv(crashChildEnv)
	if dir == "" {
		t.Skip("runs only as the child of TestCrashRecovery")
	}
	s, err := Open(dir, &Options{SegmentSize: 40 << 20})
	if err != nil {
		fmt.Println("open-error", err)
		os.Exit(3)
	}
	var mu sync.Mutex // one line at a time on stdout
	var wg sync.WaitGroup
	for w := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			stream := fmt.Sprintf("crash-%d", w)
			for i := 0; ; i++ {
				n := 1 + i%3*7 // 1, 8 or 15 events per append
				events := make([]annals.Event, n)
				ids := make([]string, n)
				for j := range events {
					events[j] = annals.Event{ID: annals.NewUUID(), Type: "Tick", Data: []byte(`{"n":` + strconv.Itoa(i) + `}`)}
					ids[j] = events[j].ID.String()
				}
				mu.Lock()
				fmt.Println("try", stream, strings.Join(ids, ","))
				mu.Unlock()
				res, err := s.Append(context.Background(), stream, annals.Any, events...)
				if err != nil {
					mu.Lock()
					fmt.Println("append-error", err)
					mu.Unlock()
					return
				}
				mu.Lock()
				fmt.Println("ack", stream, res.Revision, res.Position, strings.Join(ids, ","))
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	os.Exit(4)
}

type ackedAppend struct {
	stream        string
	revision, pos uint64
	ids           []string
}

func TestCrashRecovery(t *testing.T) {
	if testing.Short() {
		t.Skip("crash test skipped in -short mode")
	}
	seed := uint64(time.Now().UnixNano())
	if v := os.Getenv("ANNALS_SEED"); v != "" {
		seed, _ = strconv.ParseUint(v, 10, 64)
	}
	t.Logf("seed %d (replay with ANNALS_SEED=%d)", seed, seed)
	rng := rand.New(rand.NewPCG(seed, seed))
	dir := t.TempDir()
	var acked []ackedAppend
	var tried [][]string
	const rounds = 12
	for round := range rounds {
		cmd := exec.Command(os.Args[0], "-test.run=^TestCrashChild$", "-test.count=1")
		cmd.Env = append(os.Environ(), crashChildEnv+"="+dir)
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
			sc.Buffer(make([]byte, 1<<20), 1<<20)
			for sc.Scan() {
				lines <- sc.Text()
			}
			close(lines)
		}()
		// Let it run until it has acknowledged a few appends, then a random while more.
		deadline := time.After(30 * time.Second)
		for n := 0; n < 20; {
			select {
			case l, ok := <-lines:
				if !ok {
					t.Fatalf("round %d: child exited early: %v", round, cmd.Wait())
				}
				if strings.HasPrefix(l, "ack") {
					n++
				}
				if strings.HasPrefix(l, "open-error") || strings.HasPrefix(l, "append-error") {
					t.Fatalf("round %d (seed %d): child: %s", round, seed, l)
				}
				acked, tried = parseCrashLine(t, l, acked, tried)
			case <-deadline:
				t.Fatalf("round %d: child acknowledged nothing in 30s", round)
			}
		}
		// Kill the child at a random moment after its first acknowledgement: a chosen crash
		// point, not a wait.
		time.Sleep(time.Duration(rng.IntN(150)) * time.Millisecond)
		if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		for l := range lines {
			acked, tried = parseCrashLine(t, l, acked, tried)
		}
		cmd.Wait()
		verifyAfterCrash(t, dir, seed, round, acked, tried)
	}
	t.Logf("%d rounds, %d appends acknowledged and found after SIGKILL", rounds, len(acked))
}

func parseCrashLine(t *testing.T, l string, acked []ackedAppend, tried [][]string) ([]ackedAppend, [][]string) {
	f := strings.Fields(l)
	switch {
	case len(f) == 3 && f[0] == "try":
		tried = append(tried, strings.Split(f[2], ","))
	case len(f) == 5 && f[0] == "ack":
		rev, _ := strconv.ParseUint(f[2], 10, 64)
		pos, _ := strconv.ParseUint(f[3], 10, 64)
		acked = append(acked, ackedAppend{stream: f[1], revision: rev, pos: pos, ids: strings.Split(f[4], ",")})
	case strings.HasPrefix(l, "open-error"), strings.HasPrefix(l, "append-error"):
		t.Errorf("child: %s", l)
	}
	return acked, tried
}

func verifyAfterCrash(t *testing.T, dir string, seed uint64, round int, acked []ackedAppend, tried [][]string) {
	t.Helper()
	fail := func(format string, args ...any) {
		t.Fatalf("round %d (seed %d): "+format, append([]any{round, seed}, args...)...)
	}
	s, err := Open(dir, &Options{SegmentSize: 40 << 20})
	if err != nil {
		fail("reopen: %v", err)
	}
	type place struct {
		stream   string
		revision uint64
		pos      uint64
	}
	found := map[string]place{}
	next := map[string]uint64{}
	want := uint64(1)
	for ev, err := range s.ReadAll(context.Background(), nil) {
		if err != nil {
			fail("read: %v", err)
		}
		if ev.Position != want {
			fail("position %d, want %d", ev.Position, want)
		}
		if ev.Revision != next[ev.Stream] {
			fail("stream %s revision %d, want %d", ev.Stream, ev.Revision, next[ev.Stream])
		}
		id := ev.ID.String()
		if _, dup := found[id]; dup {
			fail("event %s stored twice", id)
		}
		found[id] = place{ev.Stream, ev.Revision, ev.Position}
		next[ev.Stream]++
		want++
	}
	for _, a := range acked {
		n := uint64(len(a.ids))
		for i, id := range a.ids {
			got, ok := found[id]
			wantPlace := place{a.stream, a.revision - n + 1 + uint64(i), a.pos - n + 1 + uint64(i)}
			if !ok {
				fail("acknowledged event %s (%s@%d) lost", id, a.stream, wantPlace.revision)
			}
			if got != wantPlace {
				fail("acknowledged event %s at %+v, want %+v", id, got, wantPlace)
			}
		}
	}
	for _, ids := range tried {
		present := 0
		for _, id := range ids {
			if _, ok := found[id]; ok {
				present++
			}
		}
		if present != 0 && present != len(ids) {
			fail("append of %d events is there in part (%d)", len(ids), present)
		}
	}
	if err := s.Close(); err != nil {
		fail("close: %v", err)
	}
	if _, err := Check(context.Background(), dir); err != nil && !errors.Is(err, context.Canceled) {
		fail("check: %v", err)
	}
}
