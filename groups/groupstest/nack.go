package groupstest

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/annalsdb/annals"
	"github.com/annalsdb/annals/groups"
	"github.com/annalsdb/annals/internal/testwait"
)

func nack(t *testing.T, c groups.Consumer, n groups.Nack, ids ...annals.UUID) {
	t.Helper()
	if err := c.Nack(context.Background(), n, ids...); err != nil {
		t.Fatalf("Nack(%+v): %v", n, err)
	}
}

func testNackRetry(t *testing.T, env *Env) {
	svc := env.Service
	stream := uniq("retry-")
	name := uniq("g")
	create(t, svc, name, fast(stream))
	c := join(t, svc, name, &groups.JoinOptions{Window: 1})
	ids := appendN(t, env, stream, "R", 2)
	m := receive(t, c)
	if m.Event.ID != ids[0] || m.Retries != 0 {
		t.Fatalf("first delivery: %s retries %d", m.Event.ID, m.Retries)
	}
	nack(t, c, groups.Nack{Action: groups.Retry, Reason: "try again"}, m.Event.ID)
	m = receive(t, c)
	if m.Event.ID != ids[0] || m.Retries != 1 {
		t.Fatalf("after a retry nack: got %s retries %d, want %s retries 1", m.Event.ID, m.Retries, ids[0])
	}
	ack(t, c, m.Event.ID)
	if m = receive(t, c); m.Event.ID != ids[1] {
		t.Fatalf("after the ack: got %s, want %s", m.Event.ID, ids[1])
	}
	ack(t, c, m.Event.ID)
	if i := info(t, svc, name); i.Retries != 1 || i.Acked != 2 {
		t.Fatalf("Info: retries %d acked %d, want 1 and 2", i.Retries, i.Acked)
	}
}

func testNackDelay(t *testing.T, env *Env) {
	svc := env.Service
	stream := uniq("delay-")
	name := uniq("g")
	create(t, svc, name, fast(stream))
	c := join(t, svc, name, &groups.JoinOptions{Window: 1})
	ids := appendN(t, env, stream, "D", 2)
	m := receive(t, c)
	delay := 200 * time.Millisecond
	nacked := time.Now()
	nack(t, c, groups.Nack{Action: groups.Retry, Delay: delay}, m.Event.ID)
	// The other event is not held up by the delayed one.
	if m2 := receive(t, c); m2.Event.ID != ids[1] {
		t.Fatalf("got %s, want the second event %s while the first waits", m2.Event.ID, ids[1])
	} else {
		ack(t, c, m2.Event.ID)
	}
	m = receive(t, c)
	if m.Event.ID != ids[0] || m.Retries != 1 {
		t.Fatalf("delayed retry: got %s retries %d", m.Event.ID, m.Retries)
	}
	if waited := time.Since(nacked); waited < delay {
		t.Fatalf("delayed retry came back after %v, before its delay of %v", waited, delay)
	}
	ack(t, c, m.Event.ID)
}

func testNackPark(t *testing.T, env *Env) {
	svc := env.Service
	stream := uniq("park-")
	name := uniq("g")
	create(t, svc, name, fast(stream))
	c := join(t, svc, name, nil)
	ids := appendN(t, env, stream, "P", 2)
	m := receive(t, c)
	nack(t, c, groups.Nack{Action: groups.Park, Reason: "poison"}, m.Event.ID)
	m2 := receive(t, c)
	if m2.Event.ID != ids[1] {
		t.Fatalf("got %s after parking, want %s", m2.Event.ID, ids[1])
	}
	ack(t, c, m2.Event.ID)
	testwait.UntilNil(t, "the parked event counted", func() error {
		i := info(t, svc, name)
		if i.Parked != 1 || i.ParkedTotal != 1 || i.InFlight != 0 || i.Buffered != 0 {
			return fmt.Errorf("parked %d, parked total %d, in flight %d, buffered %d", i.Parked, i.ParkedTotal, i.InFlight, i.Buffered)
		}
		return nil
	})
	if env.Reader != nil {
		var found bool
		for e, err := range env.Reader.ReadStream(context.Background(), groups.ParkedStream(name), nil) {
			if err != nil {
				t.Fatalf("read %s: %v", groups.ParkedStream(name), err)
			}
			found = e.Type == groups.ParkedEventType && string(e.Data) == `{"n":0}`
		}
		if !found {
			t.Fatalf("the parked stream does not hold a copy of the parked event")
		}
	}
	n, err := svc.ReplayParked(context.Background(), name, 0)
	if err != nil || n != 1 {
		t.Fatalf("ReplayParked = %d, %v; want 1", n, err)
	}
	r := receive(t, c)
	if r.Event.ID != ids[0] || !r.Parked || r.Retries != 0 || r.Event.Stream != stream || r.Event.Revision != 0 || string(r.Event.Data) != `{"n":0}` {
		t.Fatalf("replayed: %+v, want the original event with Parked set", r)
	}
	ack(t, c, r.Event.ID)
	testwait.UntilNil(t, "the replayed event settled", func() error {
		if i := info(t, svc, name); i.Parked != 0 || i.InFlight != 0 {
			return fmt.Errorf("parked %d, in flight %d", i.Parked, i.InFlight)
		}
		return nil
	})
	if n, err := svc.ReplayParked(context.Background(), name, 0); err != nil || n != 0 {
		t.Fatalf("second ReplayParked = %d, %v; want 0", n, err)
	}
}

func testNackSkip(t *testing.T, env *Env) {
	svc := env.Service
	stream := uniq("skip-")
	name := uniq("g")
	create(t, svc, name, fast(stream))
	c := join(t, svc, name, &groups.JoinOptions{Window: 1})
	ids := appendN(t, env, stream, "S", 2)
	m := receive(t, c)
	nack(t, c, groups.Nack{Action: groups.Skip}, m.Event.ID)
	if m = receive(t, c); m.Event.ID != ids[1] {
		t.Fatalf("after skip: got %s, want %s", m.Event.ID, ids[1])
	}
	ack(t, c, m.Event.ID)
	more := appendN(t, env, stream, "S", 1)
	if m = receive(t, c); m.Event.ID != more[0] {
		t.Fatalf("got %s, want %s (a skipped event is not delivered again)", m.Event.ID, more[0])
	}
	ack(t, c, m.Event.ID)
	if i := info(t, svc, name); i.Skipped != 1 || i.Retries != 0 {
		t.Fatalf("Info: skipped %d retries %d", i.Skipped, i.Retries)
	}
}

func testMessageTimeout(t *testing.T, env *Env) {
	svc := env.Service
	stream := uniq("timeout-")
	name := uniq("g")
	s := fast(stream)
	s.MessageTimeout = 150 * time.Millisecond
	create(t, svc, name, s)
	c := join(t, svc, name, nil)
	// The timeout runs from the event's entry into the consumer's queue, which comes after the
	// append: the time since before the append is at least the timeout when the event comes
	// back, in process and over the network alike. (The first receipt comes later than that
	// entry, over the network by the transit: measured from it the wait would look short.)
	delivered := time.Now()
	ids := appendN(t, env, stream, "T", 1)
	m := receive(t, c)
	// Not acked: it comes back after the timeout, a retry.
	m = receive(t, c)
	if m.Event.ID != ids[0] || m.Retries != 1 {
		t.Fatalf("after the timeout: got %s retries %d", m.Event.ID, m.Retries)
	}
	if d := time.Since(delivered); d < s.MessageTimeout {
		t.Fatalf("redelivered after %v, before the timeout of %v", d, s.MessageTimeout)
	}
	ack(t, c, m.Event.ID)
	if i := info(t, svc, name); i.Retries != 1 {
		t.Fatalf("Info: retries %d, want 1", i.Retries)
	}
}

func testMaxRetries(t *testing.T, env *Env) {
	svc := env.Service
	stream := uniq("max-")
	name := uniq("g")
	s := fast(stream)
	s.MaxRetries = 2
	create(t, svc, name, s)
	c := join(t, svc, name, nil)
	ids := appendN(t, env, stream, "M", 1)
	for want := range 3 {
		m := receive(t, c)
		if m.Event.ID != ids[0] || m.Retries != want {
			t.Fatalf("delivery %d: %s retries %d", want, m.Event.ID, m.Retries)
		}
		nack(t, c, groups.Nack{Action: groups.Retry}, m.Event.ID)
	}
	testwait.UntilNil(t, "the event parked after max retries", func() error {
		if i := info(t, svc, name); i.Parked != 1 {
			return fmt.Errorf("parked %d", i.Parked)
		}
		return nil
	})
	n, err := svc.ReplayParked(context.Background(), name, 1)
	if err != nil || n != 1 {
		t.Fatalf("ReplayParked = %d, %v; want 1", n, err)
	}
	m := receive(t, c)
	if m.Event.ID != ids[0] || !m.Parked || m.Retries != 0 {
		t.Fatalf("replayed: %s parked %v retries %d", m.Event.ID, m.Parked, m.Retries)
	}
	ack(t, c, m.Event.ID)

	// MaxRetries -1 parks on the first failure.
	name2 := uniq("g")
	s.MaxRetries = -1
	create(t, svc, name2, s)
	c2 := join(t, svc, name2, nil)
	m = receive(t, c2)
	nack(t, c2, groups.Nack{Action: groups.Retry}, m.Event.ID)
	testwait.UntilNil(t, "parked on the first failure", func() error {
		if i := info(t, svc, name2); i.Parked != 1 || i.InFlight != 0 {
			return fmt.Errorf("parked %d in flight %d", i.Parked, i.InFlight)
		}
		return nil
	})
}

func testReplayMany(t *testing.T, env *Env) {
	svc := env.Service
	stream := uniq("many-")
	name := uniq("g")
	s := fast(stream)
	s.Buffer = 5
	create(t, svc, name, s)
	c := join(t, svc, name, nil)
	ids := appendN(t, env, stream, "M", 12)
	for range ids {
		m := receive(t, c)
		nack(t, c, groups.Nack{Action: groups.Park}, m.Event.ID)
	}
	testwait.UntilNil(t, "12 events parked", func() error {
		if i := info(t, svc, name); i.Parked != 12 {
			return fmt.Errorf("parked %d", i.Parked)
		}
		return nil
	})
	ctx := context.Background()
	if n, err := svc.ReplayParked(ctx, name, 3); err != nil || n != 3 {
		t.Fatalf("ReplayParked(3) = %d, %v", n, err)
	}
	if n, err := svc.ReplayParked(ctx, name, 0); err != nil || n != 9 {
		t.Fatalf("ReplayParked(0) after 3 = %d, %v; want the 9 others, though the buffer holds 5", n, err)
	}
	for i, id := range ids {
		m := receive(t, c)
		if m.Event.ID != id || !m.Parked {
			t.Fatalf("replay %d: got %s (parked %v), want %s", i, m.Event.ID, m.Parked, id)
		}
		ack(t, c, m.Event.ID)
	}
	testwait.UntilNil(t, "nothing parked", func() error {
		if i := info(t, svc, name); i.Parked != 0 || i.InFlight != 0 || i.Buffered != 0 {
			return fmt.Errorf("parked %d, in flight %d, buffered %d", i.Parked, i.InFlight, i.Buffered)
		}
		return nil
	})
	if n, err := svc.ReplayParked(ctx, name, 0); err != nil || n != 0 {
		t.Fatalf("ReplayParked after all = %d, %v; want 0", n, err)
	}
}
