package groupstest

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"

	"github.com/annalsdb/annals"
	"github.com/annalsdb/annals/groups"
	"github.com/annalsdb/annals/internal/testwait"
)

func testNotInFlight(t *testing.T, env *Env) {
	svc := env.Service
	stream := uniq("nif-")
	name := uniq("g")
	create(t, svc, name, fast(stream))
	c1 := join(t, svc, name, &groups.JoinOptions{Window: 1})
	ids := appendN(t, env, stream, "N", 2)
	m := receive(t, c1)
	c2 := join(t, svc, name, &groups.JoinOptions{Window: 1})
	m2 := receive(t, c2)
	ctx := context.Background()

	mustIs(t, "Ack of an id never delivered", c1.Ack(ctx, annals.NewUUID()), groups.ErrNotInFlight)
	mustIs(t, "Ack of an event in flight to another consumer", c1.Ack(ctx, m2.Event.ID), groups.ErrNotInFlight)
	mustIs(t, "Nack of an event in flight to another consumer", c1.Nack(ctx, groups.Nack{Action: groups.Skip}, m2.Event.ID), groups.ErrNotInFlight)
	// One good id and one bad: the good one is settled, the error names the bad one.
	stray := annals.NewUUID()
	err := c1.Ack(ctx, m.Event.ID, stray)
	mustIs(t, "Ack of a good and a stray id", err, groups.ErrNotInFlight)
	if err != nil && !strings.Contains(err.Error(), stray.String()) {
		t.Errorf("the error %q does not name the stray id %s", err, stray)
	}
	mustIs(t, "second Ack of a settled event", c1.Ack(ctx, m.Event.ID), groups.ErrNotInFlight)
	ack(t, c2, m2.Event.ID)
	waitSettled(t, svc, name, 2)
	if i := info(t, svc, name); i.Acked != 2 || i.Retries != 0 {
		t.Fatalf("Info: acked %d retries %d, want 2 and 0", i.Acked, i.Retries)
	}
	// An id named twice in one call counts once.
	c2.Close()
	more := appendN(t, env, stream, "N", 1)
	m = receive(t, c1)
	if err := c1.Nack(ctx, groups.Nack{Action: groups.Retry}, m.Event.ID, m.Event.ID); err != nil {
		t.Fatalf("Nack of one id twice: %v", err)
	}
	if m = receive(t, c1); m.Event.ID != more[0] || m.Retries != 1 {
		t.Fatalf("after a nack naming it twice: %s retries %d, want %s retries 1", m.Event.ID, m.Retries, more[0])
	}
	if err := c1.Ack(ctx, m.Event.ID, m.Event.ID); err != nil {
		t.Fatalf("Ack of one id twice: %v", err)
	}
	_ = ids
}

func testAfterClose(t *testing.T, env *Env) {
	svc := env.Service
	stream := uniq("closed-")
	name := uniq("g")
	create(t, svc, name, fast(stream))
	c := join(t, svc, name, nil)
	appendN(t, env, stream, "C", 1)
	m := receive(t, c)
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	if err := c.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	ctx := context.Background()
	mustIs(t, "Ack after Close", c.Ack(ctx, m.Event.ID), groups.ErrConsumerClosed)
	mustIs(t, "Nack after Close", c.Nack(ctx, groups.Nack{Action: groups.Retry}, m.Event.ID), groups.ErrConsumerClosed)
	_, err := c.Receive(ctx)
	mustIs(t, "Receive after Close", err, groups.ErrConsumerClosed)
	// The event went back to the group.
	c2 := join(t, svc, name, nil)
	if m2 := receive(t, c2); m2.Event.ID != m.Event.ID || m2.Retries != 1 {
		t.Fatalf("after Close: got %s retries %d, want %s retries 1", m2.Event.ID, m2.Retries, m.Event.ID)
	}
}

func testCloseMidBatch(t *testing.T, env *Env) {
	svc := env.Service
	stream := uniq("mid-")
	name := uniq("g")
	create(t, svc, name, fast(stream))
	a := join(t, svc, name, &groups.JoinOptions{Window: 3})
	ids := appendN(t, env, stream, "B", 3)
	for range 3 {
		receive(t, a)
	}
	b := join(t, svc, name, nil)
	if err := a.Close(); err != nil {
		t.Fatal(err)
	}
	for i := range 3 {
		m := receive(t, b)
		if m.Event.ID != ids[i] || m.Retries != 1 {
			t.Fatalf("redelivery %d: got %s retries %d, want %s retries 1", i, m.Event.ID, m.Retries, ids[i])
		}
		ack(t, b, m.Event.ID)
	}
	waitSettled(t, svc, name, 3)
}

func testDeleted(t *testing.T, env *Env) {
	svc := env.Service
	stream := uniq("del-")
	name := uniq("g")
	create(t, svc, name, fast(stream))
	c1 := join(t, svc, name, nil)
	c2 := join(t, svc, name, nil)
	ids := appendN(t, env, stream, "D", 2)
	m := receive(t, c1)
	ack(t, c1, m.Event.ID)
	if err := svc.Delete(context.Background(), name); err != nil {
		t.Fatal(err)
	}
	mustIs(t, "Receive after Delete", receiveErr(t, c1), groups.ErrGroupDeleted)
	mustIs(t, "Receive after Delete", receiveErr(t, c2), groups.ErrGroupDeleted)
	mustIs(t, "Ack after Delete", c1.Ack(context.Background(), ids[1]), groups.ErrGroupDeleted)
	_, err := svc.Join(context.Background(), name, nil)
	mustIs(t, "Join after Delete", err, groups.ErrGroupNotFound)
	// Created again under the same name: a new group, from the beginning.
	create(t, svc, name, fast(stream))
	c3 := join(t, svc, name, nil)
	if m := receive(t, c3); m.Event.ID != ids[0] || m.Retries != 0 {
		t.Fatalf("re-created group: got %s retries %d, want %s afresh", m.Event.ID, m.Retries, ids[0])
	}
}

func testRestart(t *testing.T, env *Env) {
	if env.Restart == nil {
		t.Skip("no Restart in this environment")
	}
	svc := env.Service
	stream := uniq("restart-")
	name := uniq("g")
	create(t, svc, name, fast(stream))
	c := join(t, svc, name, &groups.JoinOptions{Window: 10})
	ids := appendN(t, env, stream, "R", 20)
	// Of the first ten, ack the first two and the odd ones, hold the others in flight.
	var held []annals.UUID
	for i := range 10 {
		m := receive(t, c)
		if i < 2 || i%2 == 1 {
			ack(t, c, m.Event.ID)
		} else {
			held = append(held, m.Event.ID)
		}
	}
	svc = env.Restart()
	// A network client may still hand out what it received before the stream ended.
	mustIs(t, "Receive after the restart", receiveErr(t, c), annals.ErrClosed)
	c = join(t, svc, name, nil)
	got := map[annals.UUID]bool{}
	want := append(held, ids[10:]...)
	for !all(got, want) {
		m := receive(t, c)
		got[m.Event.ID] = true
		ack(t, c, m.Event.ID)
	}
	for _, id := range held {
		if !got[id] {
			t.Errorf("event %s, in flight at the restart, was not delivered again", id)
		}
	}
	for _, id := range ids[10:] {
		if !got[id] {
			t.Errorf("event %s, never delivered before the restart, was skipped", id)
		}
	}
	// The acked events before the first held one were settled for good.
	for _, id := range ids[:2] {
		if got[id] {
			t.Errorf("event %s, acked before the first held one, was delivered again", id)
		}
	}
}

func all(got map[annals.UUID]bool, want []annals.UUID) bool {
	for _, id := range want {
		if !got[id] {
			return false
		}
	}
	return true
}

func testCheckpointStored(t *testing.T, env *Env) {
	if env.Reader == nil {
		t.Skip("no Reader in this environment")
	}
	svc := env.Service
	stream := uniq("cp-")
	name := uniq("g")
	def := create(t, svc, name, fast(stream))
	c := join(t, svc, name, nil)
	appendN(t, env, stream, "C", 5)
	for range 3 {
		m := receive(t, c)
		ack(t, c, m.Event.ID)
	}
	m := receive(t, c) // revision 3 stays in flight
	testwait.UntilNil(t, "the checkpoint at revision 3 in the store", func() error {
		var last map[string]any
		for e, err := range env.Reader.ReadStream(context.Background(), groups.CheckpointStream(name), nil) {
			if err != nil {
				return err
			}
			if e.Type == groups.CheckpointEventType {
				last = nil
				if err := json.Unmarshal(e.Data, &last); err != nil {
					return err
				}
			}
		}
		if last == nil || last["checkpoint"] != float64(3) || last["created"] != float64(def.Created) {
			return fmt.Errorf("last checkpoint %v, want checkpoint 3 of created %d", last, def.Created)
		}
		return nil
	})
	// The manager records the checkpoint once the store's append returns, a moment after
	// the store shows it.
	testwait.UntilNil(t, "Info.Checkpoint 3", func() error {
		if i := info(t, svc, name); i.Checkpoint != 3 {
			return fmt.Errorf("Info.Checkpoint = %d, want 3", i.Checkpoint)
		}
		return nil
	})
	ack(t, c, m.Event.ID)
}

func testReplayRestart(t *testing.T, env *Env) {
	if env.Restart == nil {
		t.Skip("no Restart in this environment")
	}
	svc := env.Service
	stream := uniq("rpr-")
	name := uniq("g")
	create(t, svc, name, fast(stream))
	c := join(t, svc, name, nil)
	ids := appendN(t, env, stream, "P", 3)
	for range 2 {
		m := receive(t, c)
		if err := c.Nack(context.Background(), groups.Nack{Action: groups.Park}, m.Event.ID); err != nil {
			t.Fatal(err)
		}
	}
	ack(t, c, receive(t, c).Event.ID)
	testwait.UntilNil(t, "two parked", func() error {
		if i := info(t, svc, name); i.Parked != 2 {
			return fmt.Errorf("parked %d", i.Parked)
		}
		return nil
	})
	if n, err := svc.ReplayParked(context.Background(), name, 1); err != nil || n != 1 {
		t.Fatalf("ReplayParked(1) = %d, %v", n, err)
	}
	if m := receive(t, c); m.Event.ID != ids[0] || !m.Parked {
		t.Fatalf("replayed %s, want %s", m.Event.ID, ids[0])
	} else {
		ack(t, c, m.Event.ID)
	}
	waitSettled(t, svc, name, 2)
	svc = env.Restart()
	if i := info(t, svc, name); i.Parked != 1 {
		t.Fatalf("after the restart: parked %d, want 1", i.Parked)
	}
	if n, err := svc.ReplayParked(context.Background(), name, 0); err != nil || n != 1 {
		t.Fatalf("ReplayParked after the restart = %d, %v; want 1", n, err)
	}
	c = join(t, svc, name, nil)
	if m := receive(t, c); m.Event.ID != ids[1] || !m.Parked {
		t.Fatalf("after the restart replayed %s, want %s", m.Event.ID, ids[1])
	}
}
