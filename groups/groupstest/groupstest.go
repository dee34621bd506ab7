// Package groupstest is the conformance suite of consumer groups: every implementation of
// [groups.Service] (the in-process [groups.Manager] on each backend, the network client
// through the server) runs it, so that a consumer behaves the same whichever it uses.
//
// The suite speaks only [groups.Service], [groups.Consumer], an [annals.Appender] to append
// the events the groups deliver, and optionally an [annals.Reader] to look at the stored
// checkpoint.
package groupstest

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/annalsdb/annals"
	"github.com/annalsdb/annals/groups"
	"github.com/annalsdb/annals/internal/testwait"
)

// Env is what one case of the suite runs on.
type Env struct {
	// Store appends the events the groups deliver.
	Store annals.Appender
	// Service is the implementation under test.
	Service groups.Service
	// Reader, when set, reads the store, to check what the groups keep in it (the cases that
	// need it are skipped without it).
	Reader annals.Reader
	// Restart, when set, stops Service as a server stop would (its consumers end, its
	// checkpoints are written) and returns a new Service on the same store. The restart cases
	// are skipped without it.
	Restart func() groups.Service
}

// Run runs the suite. newEnv returns a fresh environment for each case, with an empty store
// or one that the cases' unique names keep apart; it arranges its own cleanup with t.Cleanup.
func Run(t *testing.T, newEnv func(t *testing.T) *Env) {
	cases := []struct {
		name string
		fn   func(t *testing.T, env *Env)
	}{
		{"Manage", testManage},
		{"ManageErrors", testManageErrors},
		{"DeliverOnce", testDeliverOnce},
		{"RoundRobinSpread", testRoundRobin},
		{"PinnedByStream", testPinnedByStream},
		{"PinnedRebalance", testPinnedRebalance},
		{"PinnedByKey", testPinnedByKey},
		{"NackRetry", testNackRetry},
		{"NackDelay", testNackDelay},
		{"NackPark", testNackPark},
		{"NackSkip", testNackSkip},
		{"MessageTimeout", testMessageTimeout},
		{"MaxRetriesParkAndReplay", testMaxRetries},
		{"NotInFlight", testNotInFlight},
		{"AfterClose", testAfterClose},
		{"CloseMidBatch", testCloseMidBatch},
		{"DeletedWhileJoined", testDeleted},
		{"Restart", testRestart},
		{"CheckpointStored", testCheckpointStored},
		{"StartFromEnd", testStartFromEnd},
		{"StartFromPosition", testStartFromPosition},
		{"FilterOnAll", testFilter},
		{"Randomized", testRandomized},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) { c.fn(t, newEnv(t)) })
	}
}

var unique atomic.Uint64

// uniq returns a name unique in this test binary, with prefix.
func uniq(prefix string) string {
	return fmt.Sprintf("%s%d%d", prefix, time.Now().UnixNano()%1_000_000, unique.Add(1))
}

// appendN appends n events of type typ to stream and returns their ids.
func appendN(t *testing.T, env *Env, stream, typ string, n int) []annals.UUID {
	t.Helper()
	ids := make([]annals.UUID, n)
	evs := make([]annals.Event, n)
	for i := range evs {
		ids[i] = annals.NewUUID()
		evs[i] = annals.Event{ID: ids[i], Type: typ, Data: fmt.Appendf(nil, `{"n":%d}`, i)}
	}
	for len(evs) > 0 {
		k := min(len(evs), 100)
		if _, err := env.Store.Append(context.Background(), stream, annals.Any, evs[:k]...); err != nil {
			t.Fatalf("append to %s: %v", stream, err)
		}
		evs = evs[k:]
	}
	return ids
}

// create creates a group and fails the test on error.
func create(t *testing.T, svc groups.Service, name string, s groups.Settings) groups.Definition {
	t.Helper()
	def, err := svc.Create(context.Background(), name, s)
	if err != nil {
		t.Fatalf("Create(%q): %v", name, err)
	}
	return def
}

// join joins a consumer and closes it when the test ends.
func join(t *testing.T, svc groups.Service, name string, opts *groups.JoinOptions) groups.Consumer {
	t.Helper()
	c, err := svc.Join(context.Background(), name, opts)
	if err != nil {
		t.Fatalf("Join(%q): %v", name, err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// receive receives one message, failing the test when none comes in time.
func receive(t *testing.T, c groups.Consumer) groups.Message {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), testwait.Timeout(t))
	defer cancel()
	m, err := c.Receive(ctx)
	if err != nil {
		t.Fatalf("Receive: %v", err)
	}
	return m
}

// receiveErr waits for Receive to fail and returns its error.
func receiveErr(t *testing.T, c groups.Consumer) error {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), testwait.Timeout(t))
	defer cancel()
	for {
		m, err := c.Receive(ctx)
		if err != nil {
			if errors.Is(err, context.DeadlineExceeded) {
				t.Fatalf("Receive did not fail within %v", testwait.Timeout(t))
			}
			return err
		}
		t.Logf("Receive: still delivering %s", m.Event.ID)
	}
}

func ack(t *testing.T, c groups.Consumer, ids ...annals.UUID) {
	t.Helper()
	if err := c.Ack(context.Background(), ids...); err != nil {
		t.Fatalf("Ack: %v", err)
	}
}

// info returns the group's info, failing the test on error.
func info(t *testing.T, svc groups.Service, name string) groups.Info {
	t.Helper()
	i, err := svc.Info(context.Background(), name)
	if err != nil {
		t.Fatalf("Info(%q): %v", name, err)
	}
	return i
}

// waitSettled waits until the group has nothing in flight or buffered and acked want events
// in all.
func waitSettled(t *testing.T, svc groups.Service, name string, acked uint64) {
	t.Helper()
	testwait.UntilNil(t, "the group to settle", func() error {
		i, err := svc.Info(context.Background(), name)
		if err != nil {
			return err
		}
		if i.InFlight != 0 || i.Buffered != 0 || i.Acked < acked {
			return fmt.Errorf("in flight %d, buffered %d, acked %d of %d", i.InFlight, i.Buffered, i.Acked, acked)
		}
		return nil
	})
}

// mustIs fails the test unless errors.Is(err, target).
func mustIs(t *testing.T, what string, err, target error) {
	t.Helper()
	if !errors.Is(err, target) {
		t.Fatalf("%s: got error %v, want one matching %v", what, err, target)
	}
}

// mustMention fails the test unless err matches annals.ErrInvalidArgument and mentions word.
func mustMention(t *testing.T, what string, err error, word string) {
	t.Helper()
	if !errors.Is(err, annals.ErrInvalidArgument) || !strings.Contains(err.Error(), word) {
		t.Fatalf("%s: got error %v, want an invalid argument naming %q", what, err, word)
	}
}

// fast are settings that make the cases quick: short timeouts and checkpoint interval.
func fast(stream string) groups.Settings {
	return groups.Settings{Stream: stream, MessageTimeout: time.Minute, CheckpointInterval: 10 * time.Millisecond}
}
