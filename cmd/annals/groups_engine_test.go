package main

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/annalsdb/annals"
	"github.com/annalsdb/annals/groups"
	"github.com/annalsdb/annals/memstore"
)

// groupInfo runs "groups info NAME --json" with args before it and decodes the answer.
func groupInfo(t *testing.T, e *env, name string, args ...string) groups.Info {
	t.Helper()
	var in groups.Info
	out := e.ok("", append(args, "groups", "info", name, "--json")...)
	if err := json.Unmarshal([]byte(out), &in); err != nil {
		t.Fatalf("groups info --json: %v in %q", err, out)
	}
	return in
}

// streamsOf returns the stream@revision of each event line of out (text or JSON lines).
func streamsOf(t *testing.T, out string) []string {
	t.Helper()
	var got []string
	for _, l := range lines(out) {
		if strings.HasPrefix(l, "{") {
			var ev struct {
				Stream   string
				Revision uint64
			}
			if err := json.Unmarshal([]byte(l), &ev); err != nil {
				t.Fatalf("event line %q: %v", l, err)
			}
			got = append(got, fmt.Sprintf("%s@%d", ev.Stream, ev.Revision))
			continue
		}
		f := strings.Fields(l)
		if len(f) < 2 {
			t.Fatalf("event line %q", l)
		}
		got = append(got, f[1])
	}
	return got
}

// TestGroupsLocal runs the commands on a data directory (no --server): each command runs the
// groups in its own process, and what it settles is in the store for the next.
func TestGroupsLocal(t *testing.T) {
	e := newEnv(t)
	e.ok("", "groups", "create", "audit", "--stream", "cart-1", "--strategy", "pinned-by-stream")
	for i := range 3 {
		e.ok("", "append", "cart-1", "ItemAdded", fmt.Sprintf(`{"n":%d}`, i))
	}
	if got := streamsOf(t, e.ok("", "consume", "audit", "--count", "2", "--window", "1")); !slices.Equal(got, []string{"cart-1@0", "cart-1@1"}) {
		t.Errorf("consume --count 2: %v", got)
	}
	if in := groupInfo(t, e, "audit"); in.Checkpoint != 2 || in.Settings.Stream != "cart-1" || in.Settings.Strategy != groups.PinnedByStream {
		t.Errorf("info after two acks: checkpoint %d (want 2), settings %+v", in.Checkpoint, in.Settings)
	}
	if got := streamsOf(t, e.ok("", "consume", "audit", "--count", "1", "--json")); !slices.Equal(got, []string{"cart-1@2"}) {
		t.Errorf("consume in the next process: %v, want the third event", got)
	}
	if out := e.ok("", "groups", "replay-parked", "audit", "--json"); out != `{"group":"audit","replayed":0}`+"\n" {
		t.Errorf("replay-parked: %q", out)
	}
	if out := e.ok("", "groups", "list"); !strings.Contains(out, "audit") || !strings.Contains(out, "pinned-by-stream") {
		t.Errorf("list: %q", out)
	}
	e.ok("", "groups", "delete", "audit")
	if out := e.ok("", "groups", "list"); !strings.HasPrefix(out, "no groups") {
		t.Errorf("list after delete: %q", out)
	}
}

// TestGroupsStoreWithoutGroups: a store that cannot keep groups gets a clear error.
func TestGroupsStoreWithoutGroups(t *testing.T) {
	store := memstore.New(nil)
	t.Cleanup(func() { store.Close() })
	e := &env{t: t, dir: t.TempDir(), open: func(string) (annals.Store, error) { return keepOpen{store}, nil }}
	r := e.run(context.Background(), "", "groups", "list")
	if r.code != 1 || !strings.Contains(r.line, "does not keep consumer groups") {
		t.Errorf("groups list on a store without AppendSystem: exit %d, %q", r.code, r.line)
	}
}
