package main

import (
	"context"
	"path/filepath"
	"strings"
	"testing"

	"github.com/annalsdb/annals"
)

// TestExportLeavesOutGroups checks that the streams of consumer groups, which name positions
// of the log that an import does not keep, stay out of an export, and that the export still
// imports.
func TestExportLeavesOutGroups(t *testing.T) {
	src := newEnv(t)
	src.ok("", "append", "cart-1", "ItemAdded", `{"sku":"A1"}`)
	src.withStore(func(s annals.Store) {
		sa, ok := s.(annals.SystemAppender)
		if !ok {
			t.Skipf("%T does not implement annals.SystemAppender", s)
		}
		for _, stream := range []string{"$groups", "$group-checkpoint-g", "$group-parked-g"} {
			if _, err := sa.AppendSystem(context.Background(), stream, annals.NoStream, annals.Event{Type: "$group-created", Data: []byte(`{"created":2}`)}); err != nil {
				t.Fatal(err)
			}
		}
	})
	src.ok("", "append", "cart-1", "ItemAdded", `{"sku":"B2"}`)
	f := filepath.Join(t.TempDir(), "export.jsonl")
	if got, want := src.ok("", "export", "--out", f), "exported 2 events of 1 stream to "+f+"\n"; got != want {
		t.Errorf("export: got %q, want %q", got, want)
	}
	if exported := readFile(t, f); strings.Contains(exported, "$group") {
		t.Errorf("export holds the events of consumer groups:\n%s", exported)
	}
	dst := newEnv(t)
	if got, want := dst.ok("", "import", "--in", f), "imported 2 events from "+f+": 2 written, 0 already there\n"; got != want {
		t.Errorf("import: got %q, want %q", got, want)
	}
}
