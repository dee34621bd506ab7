package tables_test

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/annalsdb/annals/internal/testwait"
	"github.com/annalsdb/annals/tables"
)

// The DB's lock is not held across callbacks: while a List loop body, a Scan fn or an Update
// fn runs, an Activate completes without waiting for the callback (nor does any reader that
// comes after the Activate wait), and the callback can then read the DB without deadlocking
// behind a waiting Activate. A List started before the Activate keeps reading the generation
// it started on.
func TestCallbacksHoldNoLock(t *testing.T) {
	ctx := context.Background()
	db := openDB(t, t.TempDir())
	tb := mustTable[string](t, db, "p", "t")
	for gen, v := range []string{"old", "new"} {
		if err := db.Update(ctx, "p", uint64(gen), 0, 1, func(tx *tables.Tx) error {
			for _, k := range []string{"a", "b", "c"} {
				if err := tb.Put(tx, k, v+"-"+k); err != nil {
					return err
				}
			}
			return nil
		}); err != nil {
			t.Fatal(err)
		}
	}
	gen := uint64(0)
	var pending chan error // an Activate still blocked when its callback gave up on it
	// activateWhile switches "p" to the other generation from another goroutine and waits,
	// with a deadline, for it to complete while the calling callback is still running.
	activateWhile := func(what string) bool {
		t.Helper()
		gen = 1 - gen
		done := make(chan error, 1)
		go func() { done <- db.Activate(ctx, "p", gen) }()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("%s: Activate: %v", what, err)
			}
			return true
		case <-time.After(10 * time.Second):
			t.Errorf("%s: Activate waits for the callback to return", what)
			pending = done // it completes once the callback returns
			return false
		}
	}
	t.Cleanup(func() {
		if pending != nil {
			<-pending
		}
	})
	// The rows of the generation just activated: Activate dropped the other one, so rewrite
	// it for the next switch.
	rewrite := func(g uint64, v string) {
		t.Helper()
		if pending != nil {
			<-pending
			pending = nil
		}
		if err := db.Update(ctx, "p", g, 0, 1, func(tx *tables.Tx) error {
			for _, k := range []string{"a", "b", "c"} {
				if err := tb.Put(tx, k, v+"-"+k); err != nil {
					return err
				}
			}
			return nil
		}); err != nil {
			t.Fatal(err)
		}
	}

	t.Run("List body", func(t *testing.T) {
		var got []string
		for row, err := range tb.List(ctx, nil) {
			if err != nil {
				t.Fatal(err)
			}
			got = append(got, row.Value)
			if row.Key == "a" && activateWhile("List") {
				if v, ok, err := tb.Get(ctx, "a"); err != nil || !ok || v != "new-a" {
					t.Errorf("nested Get: %q, %v, %v; want the new generation's row", v, ok, err)
				}
			}
		}
		// The loop read the generation it started on throughout.
		if want := []string{"old-a", "old-b", "old-c"}; !slices.Equal(got, want) {
			t.Errorf("List across an Activate: %v, want %v", got, want)
		}
	})
	rewrite(0, "old")

	t.Run("Scan fn", func(t *testing.T) {
		var got []string
		err := tb.Scan(ctx, "", "", func(key, v string) bool {
			got = append(got, v)
			if key == "a" && activateWhile("Scan") {
				if n := len(keys(t, tb, nil)); n != 3 {
					t.Errorf("nested List: %d rows, want 3", n)
				}
			}
			return true
		})
		if err != nil {
			t.Fatal(err)
		}
		if want := []string{"new-a", "new-b", "new-c"}; !slices.Equal(got, want) {
			t.Errorf("Scan across an Activate: %v, want %v", got, want)
		}
	})
	rewrite(1, "new")

	t.Run("Update fn", func(t *testing.T) {
		err := db.Update(ctx, "p", 1-gen, 1, 2, func(tx *tables.Tx) error {
			if activateWhile("Update") {
				if _, _, err := tb.Get(ctx, "a"); err != nil {
					t.Errorf("nested Get: %v", err)
				}
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	})
}

// Close waits for a List loop in progress, which then ends normally; later calls are refused.
func TestCloseWaitsForLoops(t *testing.T) {
	ctx := context.Background()
	db, err := tables.Open(t.TempDir(), nil)
	if err != nil {
		t.Fatal(err)
	}
	tb := mustTable[int](t, db, "p", "t")
	if err := db.Update(ctx, "p", 0, 0, 1, func(tx *tables.Tx) error {
		for i, k := range []string{"a", "b", "c"} {
			if err := tb.Put(tx, k, i); err != nil {
				return err
			}
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	closed := make(chan error, 1)
	n := 0
	for _, err := range tb.List(ctx, nil) {
		if err != nil {
			t.Fatal(err)
		}
		if n++; n == 1 {
			go func() { closed <- db.Close() }()
			// Wait until Close has begun: new calls are refused.
			testwait.Until(t, "Close to begin while a List loop runs", func() bool {
				_, err := db.Generation(ctx, "p")
				return err != nil
			})
		}
	}
	if n != 3 {
		t.Errorf("the loop read %d rows while Close waited, want 3", n)
	}
	if err := <-closed; err != nil {
		t.Fatalf("Close: %v", err)
	}
}
