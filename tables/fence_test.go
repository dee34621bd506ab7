package tables_test

import (
	"context"
	"fmt"
	"strconv"
	"testing"

	"github.com/annalsdb/annals"
	"github.com/annalsdb/annals/internal/fencetest"
	"github.com/annalsdb/annals/memstore"
	"github.com/annalsdb/annals/tables"
)

// TestFencing: a runner over tables whose lease was taken over while it was paused in its
// handler cannot commit when it resumes: the DB checks the lease with the checkpoint, under
// the lock of the commit (lease.Memory.Fenced), and refuses it. See internal/fencetest.
func TestFencing(t *testing.T) {
	fencetest.Run(t, func(t *testing.T) fencetest.Kind[*tables.Tx] {
		s := memstore.New(nil)
		t.Cleanup(func() { s.Close() })
		db := openDB(t, t.TempDir())
		applied, err := tables.NewTable[[]int](db, fencetest.Name, "applied")
		if err != nil {
			t.Fatal(err)
		}
		return fencetest.Kind[*tables.Tx]{
			Log: s,
			Replica: func(int) fencetest.Replica[*tables.Tx] {
				return fencetest.Replica[*tables.Tx]{Events: s, Target: db, Keeper: db}
			},
			Record: func(_ context.Context, tx *tables.Tx, replica int, ev annals.RecordedEvent) error {
				key := fmt.Sprintf("%020d", ev.Position)
				by, _, err := applied.Read(tx, key)
				if err != nil {
					return err
				}
				return applied.Put(tx, key, append(by, replica))
			},
			Applied: func(t *testing.T) map[uint64][]int {
				out := map[uint64][]int{}
				err := applied.Scan(t.Context(), "", "", func(key string, by []int) bool {
					p, err := strconv.ParseUint(key, 10, 64)
					if err != nil {
						t.Fatalf("key %q: %v", key, err)
					}
					out[p] = by
					return true
				})
				if err != nil {
					t.Fatal(err)
				}
				return out
			},
			PauseInHandler: true,
		}
	})
}
