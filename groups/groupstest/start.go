package groupstest

import (
	"context"
	"testing"

	"github.com/annalsdb/annals"
	"github.com/annalsdb/annals/groups"
)

func testStartFromEnd(t *testing.T, env *Env) {
	svc := env.Service
	stream := uniq("end-")
	appendN(t, env, stream, "Old", 3)
	name := uniq("g")
	s := fast(stream)
	s.Start = groups.Start{Kind: groups.FromEnd}
	def := create(t, svc, name, s)
	if def.Settings.Start.Kind != groups.FromPosition || def.Settings.Start.From != 3 {
		t.Fatalf("FromEnd on a stream of 3 events resolved to %+v, want position 3", def.Settings.Start)
	}
	ids := appendN(t, env, stream, "New", 2)
	c := join(t, svc, name, nil)
	for _, id := range ids {
		if m := receive(t, c); m.Event.ID != id {
			t.Fatalf("got %s (%s), want %s", m.Event.ID, m.Event.Type, id)
		} else {
			ack(t, c, id)
		}
	}

	// On $all, with a filter.
	prefix := uniq("endall") + "-"
	appendN(t, env, prefix+"a", "Old", 2)
	name2 := uniq("g")
	s2 := fast(annals.AllStream)
	s2.Filter = &annals.Filter{StreamPrefixes: []string{prefix}}
	s2.Start = groups.Start{Kind: groups.FromEnd}
	create(t, svc, name2, s2)
	ids2 := appendN(t, env, prefix+"a", "New", 1)
	c2 := join(t, svc, name2, nil)
	if m := receive(t, c2); m.Event.ID != ids2[0] {
		t.Fatalf("$all from the end: got %s (%s), want the new event", m.Event.ID, m.Event.Type)
	}
}

func testStartFromPosition(t *testing.T, env *Env) {
	svc := env.Service
	stream := uniq("pos-")
	ids := appendN(t, env, stream, "P", 5)
	name := uniq("g")
	s := fast(stream)
	s.Start = groups.Start{Kind: groups.FromPosition, From: 3}
	create(t, svc, name, s)
	c := join(t, svc, name, nil)
	for _, id := range ids[3:] {
		if m := receive(t, c); m.Event.ID != id {
			t.Fatalf("from revision 3: got revision %d", m.Event.Revision)
		} else {
			ack(t, c, id)
		}
	}
}

func testFilter(t *testing.T, env *Env) {
	svc := env.Service
	prefix := uniq("flt")
	name := uniq("g")
	s := fast(annals.AllStream)
	s.Filter = &annals.Filter{StreamPrefixes: []string{prefix}, EventTypes: []string{"Wanted"}}
	create(t, svc, name, s)
	c := join(t, svc, name, nil)
	appendN(t, env, prefix+"-1", "Unwanted", 2)
	appendN(t, env, uniq("other-"), "Wanted", 2)
	want := appendN(t, env, prefix+"-2", "Wanted", 2)
	for _, id := range want {
		m := receive(t, c)
		if m.Event.ID != id {
			t.Fatalf("got %s of %s (%s), want only the wanted events", m.Event.ID, m.Event.Stream, m.Event.Type)
		}
		ack(t, c, id)
	}
	ctx := context.Background()
	// A group on $all never delivers the groups' own system streams.
	unfiltered := uniq("g")
	create(t, svc, unfiltered, fast(annals.AllStream))
	cu := join(t, svc, unfiltered, &groups.JoinOptions{Window: 1000})
	last := appendN(t, env, prefix+"-3", "Last", 1)[0]
	for {
		m, err := cu.Receive(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if m.Event.Stream == groups.SettingsStream || len(m.Event.Stream) > 7 && m.Event.Stream[:7] == "$group-" {
			t.Fatalf("a group on $all delivered %s of %s", m.Event.Type, m.Event.Stream)
		}
		if err := cu.Ack(ctx, m.Event.ID); err != nil {
			t.Fatal(err)
		}
		if m.Event.ID == last {
			break
		}
	}
}
