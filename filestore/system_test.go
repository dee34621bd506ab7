package filestore

import (
	"errors"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/annalsdb/annals"
	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
)

// TestSystemStreamsReopen checks that the events of system streams written with AppendSystem
// survive a reopen, also when the index is lost and rebuilt from the log: reads return them,
// their streams go on at the next revision, a retry is still recognised, and ListStreams still
// leaves them out.
func TestSystemStreamsReopen(t *testing.T) {
	for _, rebuild := range []bool{false, true} {
		name := map[bool]string{false: "Index", true: "Rebuilt"}[rebuild]
		t.Run(name, func(t *testing.T) {
			dir := t.TempDir()
			s := openAt(t, dir)
			ctx := t.Context()
			const stream = "$group-checkpoint-x"
			cp := []annals.Event{
				{ID: annals.NewUUID(), Type: "$group-checkpoint", Data: []byte(`{"checkpoint":1}`)},
				{ID: annals.NewUUID(), Type: "$group-checkpoint", Data: []byte(`{"checkpoint":2}`)},
			}
			mustDo(t, "Append", func() error {
				_, err := s.Append(ctx, "cart-1", annals.NoStream, annals.Event{Type: "ItemAdded"})
				return err
			})
			mustDo(t, "AppendSystem", func() error {
				_, err := s.AppendSystem(ctx, stream, annals.NoStream, cp[0])
				return err
			})
			mustDo(t, "AppendSystem", func() error {
				_, err := s.AppendSystem(ctx, "$groups", annals.NoStream, annals.Event{Type: "$group-created"})
				return err
			})
			last, err := s.AppendSystem(ctx, stream, annals.Exact(0), cp[1])
			if err != nil {
				t.Fatalf("AppendSystem: %v", err)
			}
			before := readEverything(t, s, stream)
			if err := s.Close(); err != nil {
				t.Fatalf("Close: %v", err)
			}
			if rebuild {
				if err := os.RemoveAll(filepath.Join(dir, "index")); err != nil {
					t.Fatal(err)
				}
			}

			s = openAt(t, dir)
			after := readEverything(t, s, stream)
			if diff := cmp.Diff(before, after, cmpopts.EquateEmpty()); diff != "" {
				t.Errorf("after reopening (-before +after):\n%s", diff)
			}
			if got := len(after.Stream); got != 2 {
				t.Errorf("ReadStream(%q) after reopening: %d events, want 2", stream, got)
			}
			if got, want := after.Listed, []string{"cart-1"}; !slices.Equal(got, want) {
				t.Errorf("ListStreams after reopening: %q, want %q", got, want)
			}
			if res, err := s.AppendSystem(ctx, stream, annals.Exact(0), cp[1]); err != nil || res != last {
				t.Errorf("repeated AppendSystem after reopening: %+v, %v; want the first result %+v", res, err, last)
			}
			_, err = s.AppendSystem(ctx, stream, annals.Exact(0), annals.Event{Type: "$group-checkpoint"})
			if w, ok := errors.AsType[*annals.WrongExpectedVersionError](err); !ok || w.Actual != annals.Exact(1) {
				t.Errorf("AppendSystem(Exact(0)) after reopening: %v; want a conflict with actual revision 1", err)
			}
			res, err := s.AppendSystem(ctx, stream, annals.Exact(1), annals.Event{Type: "$group-checkpoint"})
			if want := (annals.AppendResult{Revision: 2, Position: last.Position + 1}); err != nil || res != want {
				t.Errorf("AppendSystem(Exact(1)) after reopening: %+v, %v; want %+v", res, err, want)
			}
		})
	}
}

// everything is what the reopen test compares.
type everything struct {
	All, Stream []annals.RecordedEvent
	Listed      []string
}

func readEverything(t *testing.T, s *Store, stream string) everything {
	t.Helper()
	var e everything
	for ev, err := range s.ReadAll(t.Context(), nil) {
		if err != nil {
			t.Fatalf("ReadAll: %v", err)
		}
		e.All = append(e.All, ev)
	}
	for ev, err := range s.ReadStream(t.Context(), stream, nil) {
		if err != nil {
			t.Fatalf("ReadStream(%q): %v", stream, err)
		}
		e.Stream = append(e.Stream, ev)
	}
	for info, err := range s.ListStreams(t.Context(), nil) {
		if err != nil {
			t.Fatalf("ListStreams: %v", err)
		}
		e.Listed = append(e.Listed, info.Stream)
	}
	return e
}

func openAt(t *testing.T, dir string) *Store {
	t.Helper()
	s, err := Open(dir, nil)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func mustDo(t *testing.T, what string, f func() error) {
	t.Helper()
	if err := f(); err != nil {
		t.Fatalf("%s: %v", what, err)
	}
}
