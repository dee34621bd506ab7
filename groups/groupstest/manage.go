package groupstest

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/annalsdb/annals"
	"github.com/annalsdb/annals/groups"
)

func testManage(t *testing.T, env *Env) {
	ctx := context.Background()
	svc := env.Service
	stream := uniq("manage-")
	name := uniq("g")
	def := create(t, svc, name, groups.Settings{Stream: stream, MaxRetries: 3})
	if def.Name != name || def.Settings.Stream != stream || def.Settings.MaxRetries != 3 {
		t.Fatalf("Create returned %+v", def)
	}
	if def.Created == 0 {
		t.Fatalf("Create returned Created 0: want the position of the created event")
	}
	i := info(t, svc, name)
	if i.Name != name || i.Created != def.Created || i.Settings.Stream != stream {
		t.Fatalf("Info = %+v, want the definition %+v", i.Definition, def)
	}
	if s := i.Settings; s.Strategy != groups.RoundRobin || s.MessageTimeout != 30*time.Second || s.Buffer != 4096 {
		t.Fatalf("Info settings = %+v, want the defaults filled in", s)
	}

	name2 := uniq("g")
	create(t, svc, name2, groups.Settings{Stream: annals.AllStream, Filter: &annals.Filter{Categories: []string{"x"}}})
	list, err := svc.List(ctx)
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]bool{}
	for _, g := range list {
		seen[g.Name] = true
	}
	if !seen[name] || !seen[name2] {
		t.Fatalf("List = %v, want %s and %s in it", list, name, name2)
	}
	for i := 1; i < len(list); i++ {
		if list[i-1].Name >= list[i].Name {
			t.Fatalf("List is not in name order: %s before %s", list[i-1].Name, list[i].Name)
		}
	}

	upd, err := svc.Update(ctx, name, groups.Settings{Stream: stream, MaxRetries: 7, Strategy: groups.PinnedByStream})
	if err != nil {
		t.Fatalf("Update: %v", err)
	}
	if upd.Created != def.Created || upd.Settings.MaxRetries != 7 {
		t.Fatalf("Update returned %+v", upd)
	}
	if i := info(t, svc, name); i.Settings.MaxRetries != 7 || i.Settings.Strategy != groups.PinnedByStream {
		t.Fatalf("Info after Update = %+v", i.Settings)
	}

	if err := svc.Delete(ctx, name); err != nil {
		t.Fatalf("Delete: %v", err)
	}
	_, err = svc.Info(ctx, name)
	mustIs(t, "Info after Delete", err, groups.ErrGroupNotFound)
	// The name is free again, and the new group is another creation.
	def2 := create(t, svc, name, groups.Settings{Stream: stream})
	if def2.Created == def.Created {
		t.Fatalf("re-created group has the Created of the deleted one (%d)", def.Created)
	}
}

func testManageErrors(t *testing.T, env *Env) {
	ctx := context.Background()
	svc := env.Service
	stream := uniq("errs-")
	missing := uniq("missing")
	_, err := svc.Info(ctx, missing)
	mustIs(t, "Info of an unknown group", err, groups.ErrGroupNotFound)
	_, err = svc.Update(ctx, missing, groups.Settings{Stream: stream})
	mustIs(t, "Update of an unknown group", err, groups.ErrGroupNotFound)
	mustIs(t, "Delete of an unknown group", svc.Delete(ctx, missing), groups.ErrGroupNotFound)
	_, err = svc.Join(ctx, missing, nil)
	mustIs(t, "Join of an unknown group", err, groups.ErrGroupNotFound)
	_, err = svc.ReplayParked(ctx, missing, 0)
	mustIs(t, "ReplayParked of an unknown group", err, groups.ErrGroupNotFound)

	name := uniq("g")
	create(t, svc, name, groups.Settings{Stream: stream})
	_, err = svc.Create(ctx, name, groups.Settings{Stream: stream})
	mustIs(t, "Create of an existing name", err, groups.ErrGroupExists)

	bad := []struct {
		field string
		s     groups.Settings
	}{
		{"stream", groups.Settings{}},
		{"maxRetries", groups.Settings{Stream: stream, MaxRetries: 5000}},
		{"messageTimeout", groups.Settings{Stream: stream, MessageTimeout: time.Millisecond}},
		{"checkpointInterval", groups.Settings{Stream: stream, CheckpointInterval: time.Hour}},
		{"buffer", groups.Settings{Stream: stream, Buffer: -1}},
		{"strategy", groups.Settings{Stream: stream, Strategy: "random"}},
		{"start", groups.Settings{Stream: stream, Start: groups.Start{Kind: "middle"}}},
		{"filter", groups.Settings{Stream: stream, Filter: &annals.Filter{Categories: []string{"x"}}}},
		{"pinKey", groups.Settings{Stream: stream, PinKey: "k"}},
	}
	for _, b := range bad {
		_, err := svc.Create(ctx, uniq("bad"), b.s)
		mustMention(t, "Create with a bad "+b.field, err, b.field)
	}
	_, err = svc.Create(ctx, "has/slash", groups.Settings{Stream: stream})
	mustIs(t, "Create with a bad name", err, annals.ErrInvalidArgument)
	_, err = svc.Create(ctx, "", groups.Settings{Stream: stream})
	mustIs(t, "Create with an empty name", err, annals.ErrInvalidArgument)
	_, err = svc.Update(ctx, name, groups.Settings{Stream: stream + "-other"})
	mustMention(t, "Update changing the stream", err, "stream")
	_, err = svc.Update(ctx, name, groups.Settings{Stream: stream, MaxRetries: -2})
	mustMention(t, "Update with bad settings", err, "maxRetries")
	if i := info(t, svc, name); i.Settings.Stream != stream || i.Settings.MaxRetries != 10 {
		t.Fatalf("a refused update changed the group: %+v", i.Settings)
	}
	_, err = svc.Join(ctx, name, &groups.JoinOptions{Window: groups.MaxWindow + 1})
	mustIs(t, "Join with a window too large", err, annals.ErrInvalidArgument)
	_, err = svc.ReplayParked(ctx, name, -1)
	mustIs(t, "ReplayParked with a negative limit", err, annals.ErrInvalidArgument)

	c := join(t, svc, name, nil)
	err = c.Nack(ctx, groups.Nack{Action: "later"}, annals.NewUUID())
	mustMention(t, "Nack with a bad action", err, "action")
	err = c.Nack(ctx, groups.Nack{Action: groups.Skip, Delay: time.Second}, annals.NewUUID())
	mustMention(t, "Nack skip with a delay", err, "delay")
	if err == nil || errors.Is(err, groups.ErrNotInFlight) || !strings.Contains(err.Error(), "delay") {
		t.Fatalf("a bad nack must be refused before its ids are looked at: %v", err)
	}
}
