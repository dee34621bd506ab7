package transportbench

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"

	"github.com/annalsdb/annals"
	"github.com/annalsdb/annals/internal/testwait"
	"github.com/annalsdb/annals/memstore"
)

// TestTransports checks that every transport answers every append of many goroutines
// sharing one stream with that append's own result, conflicts included.
func TestTransports(t *testing.T) {
	st := memstore.New(nil)
	defer st.Close()
	srv := startServers(t, st)
	for _, tr := range transports {
		t.Run(tr.name, func(t *testing.T) {
			c, err := tr.dial(srv)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			const goroutines, appends = 16, 20
			// A result lost or sent to the wrong append fails the test at the deadline.
			ctx, cancel := context.WithTimeout(t.Context(), testwait.Timeout(t))
			defer cancel()
			var wg sync.WaitGroup
			for g := range goroutines {
				wg.Go(func() {
					if err := appendInOrder(ctx, c, fmt.Sprintf("%s-%d", tr.name, g), appends); err != nil {
						t.Error(err)
					}
				})
			}
			wg.Wait()
		})
	}
}

// appendInOrder appends n events one by one to stream, each expecting the revision the last
// one returned, and checks each result; after each, an append expecting the stream not to
// exist must conflict.
func appendInOrder(ctx context.Context, c *client, stream string, n int) error {
	evs := benchEvents(1)
	expected, last := annals.NoStream, uint64(0)
	for i := range uint64(n) {
		res, err := c.Append(ctx, stream, expected, evs...)
		if err != nil {
			return fmt.Errorf("%s append %d: %w", stream, i, err)
		}
		if res.Revision != i || (i > 0 && res.Position <= last) {
			return fmt.Errorf("%s append %d: got revision %d position %d (last position %d)", stream, i, res.Revision, res.Position, last)
		}
		expected, last = annals.Exact(res.Revision), res.Position
		if _, err := c.Append(ctx, stream, annals.NoStream, evs...); !errors.Is(err, annals.ErrWrongExpectedVersion) {
			return fmt.Errorf("%s append %d expecting no stream: got %v, want a conflict", stream, i, err)
		}
	}
	return nil
}
