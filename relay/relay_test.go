package relay

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/annalsdb/annals"
	"github.com/annalsdb/annals/bridge"
	"github.com/annalsdb/annals/internal/testwait"
	"github.com/annalsdb/annals/memstore"
	"github.com/annalsdb/annals/projection"
	"github.com/annalsdb/annals/supervisor"
)

func TestNewValidates(t *testing.T) {
	s := memstore.New(nil)
	t.Cleanup(func() { s.Close() })
	p := newTestPub(t)
	enc := testEncoder(t)
	for _, tc := range []struct {
		name string
		opts *Options
	}{
		{"nil options", nil},
		{"empty name", &Options{Encoder: enc}},
		{"NUL in name", &Options{Name: "a\x00b", Encoder: enc}},
		{"control character in name", &Options{Name: "a\nb", Encoder: enc}},
		{"zero subject", &Options{Name: "r"}},
		{"empty filter prefix", &Options{Name: "r", Encoder: enc, Filter: &annals.Filter{StreamPrefixes: []string{""}}}},
		{"negative MaxInFlight", &Options{Name: "r", Encoder: enc, MaxInFlight: -1}},
		{"negative MaxInFlightBytes", &Options{Name: "r", Encoder: enc, MaxInFlightBytes: -1}},
		{"negative CheckpointInterval", &Options{Name: "r", Encoder: enc, CheckpointInterval: -time.Second}},
		{"bad backoff", &Options{Name: "r", Encoder: enc, Policy: supervisor.Policy{MinBackoff: time.Second, MaxBackoff: time.Millisecond}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := New(s, p, tc.opts)
			if !errors.Is(err, annals.ErrInvalidArgument) {
				t.Fatalf("New: got %v, want an error matching annals.ErrInvalidArgument", err)
			}
		})
	}
	r, err := New(s, p, &Options{Name: "ok", Encoder: enc})
	if err != nil {
		t.Fatalf("New with valid options: %v", err)
	}
	if r.Name() != "ok" || r.opts.MaxInFlight != DefaultMaxInFlight || r.opts.MaxInFlightBytes != DefaultMaxInFlightBytes ||
		r.opts.CheckpointInterval != DefaultCheckpointInterval {
		t.Errorf("defaults: name %q, options %+v", r.Name(), r.opts)
	}
}

// Every event is published, in log order per stream, and the checkpoint reaches the last one.
func TestRelayPublishesEveryEvent(t *testing.T) {
	eachStore(t, func(t *testing.T, s annals.Store) {
		before := appendUser(t, s, 100, 7)
		p := newTestPub(t)
		r := newRelay(t, s, p, testOptions(t, "orders"))
		start(t, r)
		after := appendUser(t, s, 100, 7) // live, after the catch-up
		evs := append(before, after...)
		waitAcked(t, p, evs)
		checkOrderAcked(t, p.ackedMsgs(), evs)
		if got := len(p.logged()); got != len(evs) {
			t.Errorf("published %d messages, want %d (no failure, so no duplicate)", got, len(evs))
		}
		last := evs[len(evs)-1].Position
		testwait.Until(t, "the checkpoint reaches the last event", func() bool {
			return storedCheckpoint(t, s, "orders") >= last
		})
	})
}

// The stored checkpoint never passes an event that was not acknowledged.
func TestRelayCheckpointWaitsForAcks(t *testing.T) {
	eachStore(t, func(t *testing.T, s annals.Store) {
		p := newTestPub(t)
		r := newRelay(t, s, p, testOptions(t, "orders"))
		run := start(t, r)
		first := appendUser(t, s, 20, 3)
		waitAcked(t, p, first)
		testwait.Until(t, "the checkpoint reaches the acknowledged events", func() bool {
			return storedCheckpoint(t, s, "orders") >= first[len(first)-1].Position
		})
		p.stall()
		stalled := appendUser(t, s, 20, 3)
		testwait.Until(t, "the stalled events published", func() bool { return p.heldCount() == len(stalled) })
		// Events the relay only skips come after the stalled ones; they must not move the
		// checkpoint past them either.
		skipped := appendTo(t, s, 5, func(int) string { return "annals.other" })
		testwait.Until(t, "the relay reads past the skipped events", func() bool {
			return r.Status().Head >= skipped[len(skipped)-1].Position
		})
		if cp := storedCheckpoint(t, s, "orders"); cp >= stalled[0].Position {
			t.Fatalf("checkpoint %d passes the unacknowledged event at %d", cp, stalled[0].Position)
		}
		st := r.Status()
		if st.InFlight != len(stalled) || st.Acked >= stalled[0].Position || st.LagSeconds <= 0 {
			t.Errorf("stalled status: inFlight %d (want %d), acked %d (want < %d), lagSeconds %v (want > 0)",
				st.InFlight, len(stalled), st.Acked, stalled[0].Position, st.LagSeconds)
		}
		// Stopping writes the checkpoint of what was acknowledged, not more.
		if err := run.stop(t); err != nil {
			t.Fatalf("Run: %v", err)
		}
		if cp := storedCheckpoint(t, s, "orders"); cp >= stalled[0].Position {
			t.Fatalf("after Run returned: checkpoint %d passes the unacknowledged event at %d", cp, stalled[0].Position)
		}
		// A new run publishes the unacknowledged tail again, and only it.
		p.release()
		p2 := newTestPub(t)
		start(t, newRelay(t, s, p2, testOptions(t, "orders")))
		waitAcked(t, p2, stalled)
		testwait.Until(t, "the checkpoint passes the skipped events", func() bool {
			return storedCheckpoint(t, s, "orders") >= skipped[len(skipped)-1].Position
		})
		for _, m := range p2.logged() {
			if m.position < stalled[0].Position {
				t.Errorf("the second run published again the acknowledged, checkpointed event at %d", m.position)
			}
		}
	})
}

func TestRelayRunIsBusy(t *testing.T) {
	s := memstore.New(nil)
	t.Cleanup(func() { s.Close() })
	r := newRelay(t, s, newTestPub(t), testOptions(t, "busy"))
	start(t, r)
	testwait.Until(t, "Run running", func() bool { return r.Status().State == "running" })
	if err := r.Run(context.Background()); !errors.Is(err, projection.ErrBusy) {
		t.Fatalf("second Run: got %v, want projection.ErrBusy", err)
	}
}

// An event the broker refuses for good stops Run with an error naming it, and the checkpoint
// stays before it.
func TestRelayStopsOnRefusedEvent(t *testing.T) {
	eachStore(t, func(t *testing.T, s annals.Store) {
		evs := appendUser(t, s, 30, 3)
		bad := evs[17]
		p := newTestPub(t)
		p.fault = func(m published) (error, error) {
			if m.id == bad.ID {
				return nil, fmt.Errorf("record too large: %w", errRefusedByTest)
			}
			return nil, nil
		}
		r := newRelay(t, s, p, testOptions(t, "orders"))
		run := start(t, r)
		var err error
		select {
		case err = <-run.done:
			close(run.done)
		case <-time.After(testwait.Timeout(t)):
			t.Fatal("Run did not stop on the refused event")
		}
		pe, ok := errors.AsType[*PublishError](err)
		if !ok || !errors.Is(err, ErrRefused) || !errors.Is(err, errRefusedByTest) {
			t.Fatalf("Run: got %v, want a *PublishError matching ErrRefused and the broker's error", err)
		}
		if pe.Stream != bad.Stream || pe.Revision != bad.Revision || pe.Position != bad.Position || pe.ID != bad.ID || pe.Relay != "orders" {
			t.Errorf("error names %s@%d position %d id %s, want %s@%d position %d id %s",
				pe.Stream, pe.Revision, pe.Position, pe.ID, bad.Stream, bad.Revision, bad.Position, bad.ID)
		}
		if cp := storedCheckpoint(t, s, "orders"); cp >= bad.Position {
			t.Errorf("checkpoint %d passes the refused event at %d", cp, bad.Position)
		}
		st := r.Status()
		if st.State != "failed" || st.Errors == 0 || st.LastError == "" || st.LastErrorTime.IsZero() {
			t.Errorf("status after the refusal: state %q, errors %d, lastError %q at %v", st.State, st.Errors, st.LastError, st.LastErrorTime)
		}
	})
}

// An event that cannot be made into a message (its subject expands to nothing) stops Run
// too, naming it.
func TestRelayStopsOnUnencodableEvent(t *testing.T) {
	s := memstore.New(nil)
	t.Cleanup(func() { s.Close() })
	good := appendUser(t, s, 3, 1)
	bad := appendTo(t, s, 1, func(int) string { return "-nameless" })[0]
	tmpl, err := bridge.ParseTemplate("{category}")
	if err != nil {
		t.Fatal(err)
	}
	opts := testOptions(t, "enc")
	opts.Encoder = bridge.Encoder{Subject: tmpl, Bus: bridge.Kafka}
	p := newTestPub(t)
	err = newRelay(t, s, p, opts).Run(context.Background())
	pe, ok := errors.AsType[*PublishError](err)
	if !ok || !errors.Is(err, ErrRefused) || !errors.Is(err, annals.ErrInvalidArgument) || pe.Position != bad.Position {
		t.Fatalf("Run: got %v, want a *PublishError for the event at %d matching ErrRefused and annals.ErrInvalidArgument", err, bad.Position)
	}
	waitAcked(t, p, good)
	if cp := storedCheckpoint(t, s, "enc"); cp != good[2].Position {
		t.Errorf("checkpoint %d, want %d (the last event before the bad one)", cp, good[2].Position)
	}
}
