package relay

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/annalsdb/annals"
	"github.com/annalsdb/annals/internal/testwait"
	"github.com/annalsdb/annals/projection"
)

// countStream counts the events of $all whose stream starts with prefix.
func countPrefix(t testing.TB, s annals.Store, prefix string) int {
	t.Helper()
	n := 0
	for _, err := range s.ReadAll(context.Background(), &annals.ReadOptions{Filter: &annals.Filter{StreamPrefixes: []string{prefix}}}) {
		if err != nil {
			t.Fatal(err)
		}
		n++
	}
	return n
}

// System streams and the toolkit's streams are not published, and the relay's own checkpoint
// writes do not make it write again: idle, its checkpoint stream stops growing.
func TestRelaySkipsSystemStreamsWithoutFeedback(t *testing.T) {
	eachStore(t, func(t *testing.T, s annals.Store) {
		ctx := context.Background()
		user := appendUser(t, s, 10, 2)
		if _, err := s.SetMetadata(ctx, "cart-0", annals.Any, annals.StreamMetadata{MaxCount: 100}); err != nil {
			t.Fatal(err)
		}
		cps := projection.NewCheckpoints[struct{}](s, nil)
		if err := cps.Update(ctx, "other", 0, 0, 5, func(struct{}) error { return nil }); err != nil {
			t.Fatal(err)
		}
		user = append(user, appendUser(t, s, 10, 2)...)
		p := newTestPub(t)
		r := newRelay(t, s, p, testOptions(t, "orders")) // checkpoints every millisecond
		start(t, r)
		waitAcked(t, p, user)
		lastUser := user[len(user)-1].Position
		testwait.Until(t, "the checkpoint passes the user events", func() bool {
			return storedCheckpoint(t, s, "orders") >= lastUser
		})
		for _, m := range p.logged() {
			if strings.HasPrefix(m.stream, "$") || strings.HasPrefix(m.stream, "annals.") {
				t.Errorf("published an event of %s", m.stream)
			}
		}
		if got := len(p.logged()); got != len(user) {
			t.Errorf("published %d messages, want the %d user events", got, len(user))
		}
		// Idle for many checkpoint intervals: the relay reads its own checkpoint events (Head
		// follows them) without writing again. The relay's pass over each of them is waited
		// for, and the loop goes on until fifty intervals have passed.
		written := countPrefix(t, s, projection.CheckpointStreamPrefix+"relay-orders")
		began := time.Now()
		for i := range int64(50) { // one pass a checkpoint interval (1 ms), on a schedule
			testwait.Pace(t.Context(), began, i, 1000)
			head := lastPosition(t, s)
			testwait.Until(t, "the relay reads up to the head", func() bool { return r.Status().Acked >= head })
		}
		if now := countPrefix(t, s, projection.CheckpointStreamPrefix+"relay-orders"); now > written+1 {
			t.Errorf("idle relay: its checkpoint stream grew from %d to %d events", written, now)
		}
		st := r.Status()
		if st.Lag != 0 || st.InFlight != 0 || st.LagSeconds != 0 {
			t.Errorf("idle status: lag %d, inFlight %d, lagSeconds %v; want zeros", st.Lag, st.InFlight, st.LagSeconds)
		}
	})
}

// A filter that names a toolkit or system prefix publishes those streams.
func TestRelayPublishesNamedSystemStreams(t *testing.T) {
	eachStore(t, func(t *testing.T, s annals.Store) {
		ctx := context.Background()
		appendUser(t, s, 5, 1)
		if _, err := s.SetMetadata(ctx, "cart-0", annals.Any, annals.StreamMetadata{MaxCount: 100}); err != nil {
			t.Fatal(err)
		}
		toolkit := appendTo(t, s, 5, func(int) string { return "annals.audit-1" })
		opts := testOptions(t, "audit")
		opts.Filter = &annals.Filter{StreamPrefixes: []string{"annals.audit", "$meta-"}}
		p := newTestPub(t)
		start(t, newRelay(t, s, p, opts))
		waitAcked(t, p, toolkit)
		testwait.Until(t, "the metadata event published", func() bool {
			for _, m := range p.ackedMsgs() {
				if m.stream == annals.MetaStream("cart-0") {
					return true
				}
			}
			return false
		})
		for _, m := range p.logged() {
			if strings.HasPrefix(m.stream, "cart-") || strings.Contains(m.stream, "relay-audit") {
				t.Errorf("published an event of %s, which the filter leaves out", m.stream)
			}
		}
	})
}

func lastPosition(t testing.TB, s annals.Store) uint64 {
	t.Helper()
	for ev, err := range s.ReadAll(context.Background(), &annals.ReadOptions{Backwards: true, From: annals.End, Limit: 1}) {
		if err != nil {
			t.Fatal(err)
		}
		return ev.Position
	}
	return 0
}
