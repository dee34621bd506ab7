package relay

import (
	"context"
	"fmt"
	"log/slog"
	"testing"
	"time"

	"github.com/annalsdb/annals"
	"github.com/annalsdb/annals/bridge"
	"github.com/annalsdb/annals/internal/teststores"
	"github.com/annalsdb/annals/internal/testwait"
	"github.com/annalsdb/annals/projection"
	"github.com/annalsdb/annals/supervisor"
)

// eachStore runs fn on a fresh memstore, filestore and (when reachable) pgstore.
func eachStore(t *testing.T, fn func(t *testing.T, s annals.Store)) {
	teststores.Each(t, fn)
}

func testEncoder(t testing.TB) bridge.Encoder {
	t.Helper()
	tmpl, err := bridge.ParseTemplate("events.{category}")
	if err != nil {
		t.Fatal(err)
	}
	return bridge.Encoder{Subject: tmpl, Bus: bridge.Kafka}
}

// testOptions are options for tests: fast checkpoints and retries.
func testOptions(t testing.TB, name string) *Options {
	return &Options{
		Name:               name,
		Encoder:            testEncoder(t),
		CheckpointInterval: time.Millisecond,
		Logger:             slog.New(slog.DiscardHandler), // retries are expected here
		Policy:             supervisor.Policy{MinBackoff: time.Millisecond, MaxBackoff: 10 * time.Millisecond},
	}
}

func newRelay(t testing.TB, s Store, p Publisher, opts *Options) *Relay {
	t.Helper()
	r, err := New(s, p, opts)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return r
}

// running is a Run in a goroutine.
type running struct {
	cancel context.CancelFunc
	done   chan error
}

// start runs r until stop or the end of the test.
func start(t testing.TB, r *Relay) *running {
	ctx, cancel := context.WithCancel(context.Background())
	run := &running{cancel: cancel, done: make(chan error, 1)}
	go func() { run.done <- r.Run(ctx) }()
	t.Cleanup(func() { run.stop(t) })
	return run
}

// stop cancels the Run and returns its error (once; later calls return nil).
func (run *running) stop(t testing.TB) error {
	t.Helper()
	run.cancel()
	select {
	case err, ok := <-run.done:
		if ok {
			close(run.done)
		}
		return err
	case <-time.After(testwait.Timeout(t)):
		t.Fatalf("Run did not return after its context was cancelled")
		return nil
	}
}

// appendUser appends n events, one per append, to the streams cart-0 … cart-(streams-1) in
// turn, and returns their positions and ids in order.
func appendUser(t testing.TB, s annals.Store, n, streams int) []annals.RecordedEvent {
	t.Helper()
	return appendTo(t, s, n, func(i int) string { return fmt.Sprintf("cart-%d", i%streams) })
}

func appendTo(t testing.TB, s annals.Store, n int, stream func(i int) string) []annals.RecordedEvent {
	t.Helper()
	ctx := context.Background()
	out := make([]annals.RecordedEvent, 0, n)
	for i := range n {
		ev := annals.Event{ID: annals.NewUUID(), Type: "ItemAdded", Data: []byte(fmt.Sprintf(`{"i":%d}`, i))}
		res, err := s.Append(ctx, stream(i), annals.Any, ev)
		if err != nil {
			t.Fatalf("append %d: %v", i, err)
		}
		out = append(out, annals.RecordedEvent{ID: ev.ID, Stream: stream(i), Revision: res.Revision, Position: res.Position, Type: ev.Type})
	}
	return out
}

// storedCheckpoint reads the relay's checkpoint as the store holds it.
func storedCheckpoint(t testing.TB, s Store, name string) uint64 {
	t.Helper()
	cp, err := projection.NewCheckpoints[struct{}](s, nil).Checkpoint(context.Background(), checkpointPrefix+name, 0)
	if err != nil {
		t.Fatalf("read checkpoint: %v", err)
	}
	return cp
}

// waitAcked waits until every event of evs was acknowledged by p at least once.
func waitAcked(t testing.TB, p *testPub, evs []annals.RecordedEvent) {
	t.Helper()
	testwait.Until(t, fmt.Sprintf("%d events acknowledged", len(evs)), func() bool {
		ids := p.ackedIDs()
		for _, ev := range evs {
			if ids[ev.ID] == 0 {
				return false
			}
		}
		return true
	})
}

// checkOrder checks that the messages of each stream were published in revision order, that
// is, in the order of evs, restarting only after a failure (a restart goes back in the log).
func checkOrderAcked(t testing.TB, acked []published, evs []annals.RecordedEvent) {
	t.Helper()
	pos := make(map[annals.UUID]uint64, len(evs))
	for _, ev := range evs {
		pos[ev.ID] = ev.Position
	}
	last := map[string]uint64{}
	for _, m := range acked {
		p, ok := pos[m.id]
		if !ok {
			t.Errorf("published an unexpected event %s of %q", m.id, m.stream)
			continue
		}
		if p != m.position {
			t.Errorf("event %s: header position %d, want %d", m.id, m.position, p)
		}
		if p <= last[m.stream] {
			t.Errorf("stream %s: event at %d acknowledged after the one at %d", m.stream, p, last[m.stream])
		}
		last[m.stream] = p
	}
}
