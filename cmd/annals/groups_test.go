package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/annalsdb/annals"
	"github.com/annalsdb/annals/groups"
	"github.com/annalsdb/annals/internal/testwait"
	"github.com/annalsdb/annals/memstore"
	"github.com/google/go-cmp/cmp"
)

// fakeGroups is a groups.Service that records what the commands ask of it, so that the tests
// check the commands (flags, output, errors) apart from the engine.
type fakeGroups struct {
	mu struct {
		sync.Mutex
		infos    map[string]*groups.Info
		created  uint64
		replayed []int // the limits of ReplayParked
		// pending are the messages the next consumer to join receives, in order.
		pending []groups.Message
		acked   []annals.UUID
		nacked  []groups.Nack
		joined  []groups.JoinOptions
		closed  int
	}
}

func newFakeGroups() *fakeGroups {
	f := &fakeGroups{}
	f.mu.infos = make(map[string]*groups.Info)
	return f
}

func (f *fakeGroups) Create(ctx context.Context, name string, s groups.Settings) (groups.Definition, error) {
	if err := s.Validate(); err != nil {
		return groups.Definition{}, err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if _, ok := f.mu.infos[name]; ok {
		return groups.Definition{}, groups.ErrGroupExists
	}
	f.mu.created++
	def := groups.Definition{Name: name, Settings: s, Created: f.mu.created}
	f.mu.infos[name] = &groups.Info{Definition: def}
	return def, nil
}

func (f *fakeGroups) Update(ctx context.Context, name string, s groups.Settings) (groups.Definition, error) {
	if err := s.Validate(); err != nil {
		return groups.Definition{}, err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	in, ok := f.mu.infos[name]
	if !ok {
		return groups.Definition{}, groups.ErrGroupNotFound
	}
	if s.Stream != in.Settings.Stream || s.Start != in.Settings.Start {
		return groups.Definition{}, fmt.Errorf("%w: stream or start changed", annals.ErrInvalidArgument)
	}
	in.Settings = s
	return in.Definition, nil
}

func (f *fakeGroups) Delete(ctx context.Context, name string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if _, ok := f.mu.infos[name]; !ok {
		return groups.ErrGroupNotFound
	}
	delete(f.mu.infos, name)
	return nil
}

func (f *fakeGroups) List(ctx context.Context) ([]groups.Info, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	var list []groups.Info
	for _, in := range f.mu.infos {
		list = append(list, *in)
	}
	slices.SortFunc(list, func(a, b groups.Info) int { return strings.Compare(a.Name, b.Name) })
	return list, nil
}

func (f *fakeGroups) Info(ctx context.Context, name string) (groups.Info, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	in, ok := f.mu.infos[name]
	if !ok {
		return groups.Info{}, groups.ErrGroupNotFound
	}
	return *in, nil
}

func (f *fakeGroups) ReplayParked(ctx context.Context, name string, limit int) (int, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	in, ok := f.mu.infos[name]
	if !ok {
		return 0, groups.ErrGroupNotFound
	}
	f.mu.replayed = append(f.mu.replayed, limit)
	n := int(in.Parked)
	if limit > 0 && limit < n {
		n = limit
	}
	in.Parked -= uint64(n)
	return n, nil
}

func (f *fakeGroups) Join(ctx context.Context, name string, opts *groups.JoinOptions) (groups.Consumer, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if _, ok := f.mu.infos[name]; !ok {
		return nil, groups.ErrGroupNotFound
	}
	f.mu.joined = append(f.mu.joined, *opts)
	return &fakeConsumer{f: f}, nil
}

type fakeConsumer struct{ f *fakeGroups }

func (c *fakeConsumer) Receive(ctx context.Context) (groups.Message, error) {
	c.f.mu.Lock()
	if len(c.f.mu.pending) > 0 {
		msg := c.f.mu.pending[0]
		c.f.mu.pending = c.f.mu.pending[1:]
		c.f.mu.Unlock()
		return msg, nil
	}
	c.f.mu.Unlock()
	<-ctx.Done()
	return groups.Message{}, ctx.Err()
}

func (c *fakeConsumer) Ack(ctx context.Context, ids ...annals.UUID) error {
	c.f.mu.Lock()
	defer c.f.mu.Unlock()
	c.f.mu.acked = append(c.f.mu.acked, ids...)
	return nil
}

func (c *fakeConsumer) Nack(ctx context.Context, n groups.Nack, ids ...annals.UUID) error {
	c.f.mu.Lock()
	defer c.f.mu.Unlock()
	for range ids {
		c.f.mu.nacked = append(c.f.mu.nacked, n)
	}
	return nil
}

func (c *fakeConsumer) Close() error {
	c.f.mu.Lock()
	defer c.f.mu.Unlock()
	c.f.mu.closed++
	return nil
}

// fakeGroupsStore is a store that serves the groups of a fakeGroups, as the network client
// serves the groups of its server.
type fakeGroupsStore struct {
	annals.Store
	g *fakeGroups
}

func (s fakeGroupsStore) Groups() groups.Service { return s.g }

// groupsEnv runs commands against a fakeGroups.
type groupsEnv struct {
	t *testing.T
	g *fakeGroups
}

func newGroupsEnv(t *testing.T) *groupsEnv {
	return &groupsEnv{t: t, g: newFakeGroups()}
}

func (e *groupsEnv) run(ctx context.Context, args ...string) result {
	var stdout, stderr bytes.Buffer
	m := &Main{
		Stdout: &stdout,
		Stderr: &stderr,
		Args:   append([]string{"--data", e.t.TempDir()}, args...),
		Getenv: func(string) string { return "" },
		Open: func(string) (annals.Store, error) {
			return fakeGroupsStore{Store: memstore.New(nil), g: e.g}, nil
		},
	}
	err := m.Run(ctx)
	r := result{stdout: stdout.String(), stderr: stderr.String(), err: err}
	if err != nil {
		r.code, r.line = exitCode(err), errorLine(err)
	}
	return r
}

func (e *groupsEnv) ok(args ...string) string {
	e.t.Helper()
	r := e.run(context.Background(), args...)
	if r.err != nil {
		e.t.Fatalf("annals %s: %s (exit %d)", strings.Join(args, " "), r.line, r.code)
	}
	return r.stdout
}

// fails runs args and checks the exit status and that the error line holds want.
func (e *groupsEnv) fails(code int, want string, args ...string) {
	e.t.Helper()
	r := e.run(context.Background(), args...)
	if r.code != code || !strings.Contains(r.line, want) {
		e.t.Errorf("annals %s: exit %d, %q; want exit %d and %q", strings.Join(args, " "), r.code, r.line, code, want)
	}
}

func (e *groupsEnv) settings(name string) groups.Settings {
	e.t.Helper()
	in, err := e.g.Info(context.Background(), name)
	if err != nil {
		e.t.Fatal(err)
	}
	return in.Settings
}

// TestGroupsCreateUpdate: create sets what its flags say and defaults the rest; update changes
// only the flags given and keeps the others.
func TestGroupsCreateUpdate(t *testing.T) {
	e := newGroupsEnv(t)
	out := e.ok("groups", "create", "orders", "--all", "--category", "order,invoice", "--event-type", "OrderPlaced",
		"--strategy", "pinned-by-stream", "--max-retries", "3", "--message-timeout", "2s", "--start", "end")
	if want := "created group orders on $all (categories order,invoice; types OrderPlaced): pinned-by-stream\n"; out != want {
		t.Errorf("create: got %q, want %q", out, want)
	}
	want := groups.Settings{
		Stream:         annals.AllStream,
		Filter:         &annals.Filter{Categories: []string{"order", "invoice"}, EventTypes: []string{"OrderPlaced"}},
		Start:          groups.Start{Kind: groups.FromEnd},
		Strategy:       groups.PinnedByStream,
		MessageTimeout: 2 * time.Second,
		MaxRetries:     3,
	}
	if diff := cmp.Diff(want, e.settings("orders")); diff != "" {
		t.Errorf("settings after create (-want +got):\n%s", diff)
	}

	out = e.ok("groups", "create", "audit", "--stream", "cart-1", "--start", "5", "--json")
	var def groups.Definition
	if err := json.Unmarshal([]byte(out), &def); err != nil || def.Name != "audit" || def.Settings.Start != (groups.Start{Kind: groups.FromPosition, From: 5}) {
		t.Errorf("create --json: %q (%v)", out, err)
	}
	e.fails(1, "group audit exists already: annals groups info audit shows it", "groups", "create", "audit", "--stream", "cart-2")

	out = e.ok("groups", "update", "orders", "--message-timeout", "1m", "--buffer", "100", "--category=")
	if want := "updated group orders on $all (types OrderPlaced): pinned-by-stream\n"; out != want {
		t.Errorf("update: got %q, want %q", out, want)
	}
	want.MessageTimeout, want.Buffer = time.Minute, 100
	want.Filter = &annals.Filter{EventTypes: []string{"OrderPlaced"}}
	if diff := cmp.Diff(want, e.settings("orders")); diff != "" {
		t.Errorf("settings after update (-want +got):\n%s", diff)
	}
	e.ok("groups", "update", "orders", "--strategy", "pinned-by-key", "--pin-key", "tenant")
	e.ok("groups", "update", "orders", "--strategy", "round-robin") // the pin key goes with the strategy
	want.Strategy = groups.RoundRobin
	if diff := cmp.Diff(want, e.settings("orders")); diff != "" {
		t.Errorf("settings after the strategy updates (-want +got):\n%s", diff)
	}
	e.fails(1, "no group nope: annals groups list shows the groups", "groups", "update", "nope", "--buffer", "5")
}

// TestGroupsBadInput: mistakes in the flags are usage errors that name the flag, and reach no
// group.
func TestGroupsBadInput(t *testing.T) {
	e := newGroupsEnv(t)
	e.ok("groups", "create", "s", "--stream", "cart-1")
	for _, c := range []struct {
		want string
		args []string
	}{
		{"pass --stream STREAM or --all", []string{"groups", "create", "g"}},
		{"pass one of them", []string{"groups", "create", "g", "--all", "--stream", "x"}},
		{"--category filters a group on --all", []string{"groups", "create", "g", "--stream", "x", "--category", "c"}},
		{"--message-timeout 1ms is not between 100ms and 1h", []string{"groups", "create", "g", "--all", "--message-timeout", "1ms"}},
		{"--max-retries 2000", []string{"groups", "create", "g", "--all", "--max-retries", "2000"}},
		{"--buffer -1", []string{"groups", "create", "g", "--all", "--buffer", "-1"}},
		{`--strategy "fastest"`, []string{"groups", "create", "g", "--all", "--strategy", "fastest"}},
		{`--pin-key: only for --strategy "pinned-by-key"`, []string{"groups", "create", "g", "--all", "--pin-key", "k"}},
		{`--start "later"`, []string{"groups", "create", "g", "--all", "--start", "later"}},
		{`group name "a/b"`, []string{"groups", "create", "a/b", "--all"}},
		{"missing arguments: want NAME", []string{"groups", "create", "--all"}},
		{"unknown flag --stream", []string{"groups", "update", "s", "--stream", "y"}},
		{"nothing to change", []string{"groups", "update", "s", "--json"}},
		{`--category filters a group on $all; group s follows stream "cart-1"`, []string{"groups", "update", "s", "--category", "c"}},
		{`unknown command "frob"`, []string{"groups", "frob"}},
		{"--limit -1", []string{"groups", "replay-parked", "s", "--limit", "-1"}},
		{`--nack "later": want retry, park or skip`, []string{"consume", "s", "--nack", "later"}},
		{"--window 20000", []string{"consume", "s", "--window", "20000"}},
		{"--count -1", []string{"consume", "s", "--count", "-1"}},
	} {
		e.fails(2, c.want, c.args...)
	}
	if list, _ := e.g.List(context.Background()); len(list) != 1 {
		t.Errorf("groups after bad input: %d, want only the first", len(list))
	}
	if diff := cmp.Diff(groups.Settings{Stream: "cart-1", Start: groups.Start{Kind: groups.FromBeginning}}, e.settings("s")); diff != "" {
		t.Errorf("settings after bad updates (-want +got):\n%s", diff)
	}
	for _, args := range [][]string{
		{"groups", "info", "nope"}, {"groups", "delete", "nope"}, {"groups", "replay-parked", "nope"}, {"consume", "nope"},
	} {
		e.fails(1, "no group nope: annals groups list shows the groups", args...)
	}
}

// TestGroupsListInfo: list is a table of the figures, info the settings with their defaults,
// the figures and the consumers; both have --json.
func TestGroupsListInfo(t *testing.T) {
	e := newGroupsEnv(t)
	if out := e.ok("groups", "list"); !strings.HasPrefix(out, "no groups") {
		t.Errorf("list of none: %q", out)
	}
	e.ok("groups", "create", "orders", "--all", "--prefix", "order-")
	e.ok("groups", "create", "audit", "--stream", "cart-1", "--strategy", "pinned-by-key")
	joined := time.Date(2026, 12, 1, 8, 0, 0, 0, time.UTC)
	e.g.mu.Lock()
	in := e.g.mu.infos["orders"]
	in.Checkpoint, in.Lag, in.InFlight, in.Parked, in.Delivered, in.Acked = 40, 7, 2, 3, 12, 10
	in.Consumers = []groups.ConsumerInfo{
		{ID: "c1", Name: "worker", Joined: joined, Window: 256, InFlight: 2, Delivered: 8, Acked: 6, Nacked: 1},
		{ID: "c2", Name: "worker", Joined: joined, Window: 10, Delivered: 4, Acked: 4},
	}
	e.g.mu.Unlock()

	got := e.ok("groups", "list")
	want := "" +
		"NAME    STREAM                        STRATEGY       CONSUMERS  IN FLIGHT  LAG  PARKED\n" +
		"audit   cart-1                        pinned-by-key  0          0          0    0\n" +
		"orders  $all (prefixes order-)        round-robin    2          2          7    3\n"
	if diff := cmp.Diff(strings.Fields(want), strings.Fields(got)); diff != "" {
		t.Errorf("list (-want +got):\n%s\n%s", diff, got)
	}
	var infos []groups.Info
	for _, l := range lines(e.ok("groups", "list", "--json")) {
		var in groups.Info
		if err := json.Unmarshal([]byte(l), &in); err != nil {
			t.Fatalf("list --json line %q: %v", l, err)
		}
		infos = append(infos, in)
	}
	if len(infos) != 2 || infos[1].Name != "orders" || infos[1].Parked != 3 || len(infos[1].Consumers) != 2 {
		t.Errorf("list --json: %+v", infos)
	}

	got = e.ok("groups", "info", "orders")
	for _, l := range []string{
		"group  orders", "stream  $all (prefixes order-)", "strategy  round-robin", "message timeout  30s",
		"max retries  10", "checkpoint  40", "lag  7", "in flight  2", "parked  3", "delivered  12", "acked  10",
		"CONSUMER  ID  WINDOW  IN FLIGHT  DELIVERED  ACKED  NACKED  JOINED",
		"worker  c1  256  2  8  6  1  2026-12-01T08:00:00Z",
		"worker  c2  10  0  4  4  0  2026-12-01T08:00:00Z",
	} {
		if !slices.ContainsFunc(lines(got), func(g string) bool {
			return strings.Join(strings.Fields(g), " ") == strings.Join(strings.Fields(l), " ")
		}) {
			t.Errorf("info: no line %q in\n%s", l, got)
		}
	}
	if got := e.ok("groups", "info", "audit"); !strings.Contains(got, "pinned-by-key ($correlationId)") || strings.Contains(got, "CONSUMER") {
		t.Errorf("info of a pinned group without consumers:\n%s", got)
	}
	var info groups.Info
	if err := json.Unmarshal([]byte(e.ok("groups", "info", "orders", "--json")), &info); err != nil || info.Lag != 7 || info.Consumers[0].Acked != 6 {
		t.Errorf("info --json: %+v, %v", info, err)
	}
}

// TestGroupsReplayDelete: replay-parked passes its limit and prints how many came back;
// delete deletes.
func TestGroupsReplayDelete(t *testing.T) {
	e := newGroupsEnv(t)
	e.ok("groups", "create", "orders", "--all")
	e.g.mu.Lock()
	e.g.mu.infos["orders"].Parked = 5
	e.g.mu.Unlock()
	if got, want := e.ok("groups", "replay-parked", "orders", "--limit", "2"), "gave back 2 parked events of group orders for delivery\n"; got != want {
		t.Errorf("replay-parked --limit 2: got %q, want %q", got, want)
	}
	if got, want := e.ok("groups", "replay-parked", "orders", "--json"), `{"group":"orders","replayed":3}`+"\n"; got != want {
		t.Errorf("replay-parked --json: got %q, want %q", got, want)
	}
	if e.g.mu.replayed[0] != 2 || e.g.mu.replayed[1] != 0 {
		t.Errorf("ReplayParked limits: %v, want [2 0]", e.g.mu.replayed)
	}
	if got := e.ok("groups", "delete", "orders"); got != "deleted group orders\n" {
		t.Errorf("delete: %q", got)
	}
	e.fails(1, "no group orders", "groups", "info", "orders")
}

// TestConsume: consume prints each event as tail does and acks it (or nacks it with --nack),
// stops after --count, and ends with status 0 on Ctrl-C.
func TestConsume(t *testing.T) {
	e := newGroupsEnv(t)
	e.ok("groups", "create", "orders", "--all")
	at := time.Date(2026, 12, 1, 8, 0, 0, 0, time.UTC)
	var ids []annals.UUID
	for i := range 4 {
		id := annals.NewUUID()
		ids = append(ids, id)
		e.g.mu.pending = append(e.g.mu.pending, groups.Message{Event: annals.RecordedEvent{
			ID: id, Type: "OrderPlaced", Data: []byte(fmt.Sprintf(`{"n":%d}`, i)),
			Stream: fmt.Sprintf("order-%d", i), Position: uint64(i + 1), Time: at,
		}})
	}
	got := e.ok("consume", "orders", "--count", "2", "--name", "w1", "--window", "5")
	want := "" +
		"1  order-0@0  OrderPlaced  2026-12-01T08:00:00.000Z  {\"n\":0}\n" +
		"2  order-1@0  OrderPlaced  2026-12-01T08:00:00.000Z  {\"n\":1}\n"
	if got != want {
		t.Errorf("consume --count 2:\ngot:\n%s\nwant:\n%s", got, want)
	}
	if !slices.Equal(e.g.mu.acked, ids[:2]) || len(e.g.mu.nacked) != 0 || e.g.mu.closed != 1 {
		t.Errorf("after consume --count 2: acked %v (want %v), nacked %v, closed %d", e.g.mu.acked, ids[:2], e.g.mu.nacked, e.g.mu.closed)
	}
	if e.g.mu.joined[0] != (groups.JoinOptions{Name: "w1", Window: 5}) {
		t.Errorf("join options: %+v", e.g.mu.joined[0])
	}

	got = e.ok("consume", "orders", "--count", "1", "--nack", "park", "--json")
	if !strings.Contains(got, `"stream":"order-2"`) || len(e.g.mu.nacked) != 1 || e.g.mu.nacked[0].Action != groups.Park || len(e.g.mu.acked) != 2 {
		t.Errorf("consume --nack park: %q, nacked %v, acked %d", got, e.g.mu.nacked, len(e.g.mu.acked))
	}

	// Without --count, consume runs until the context ends, and that is success.
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan result, 1)
	go func() { done <- e.run(ctx, "consume", "orders") }()
	var r result
	testwait.Until(t, "consume to ack the last event", func() bool {
		select {
		case r = <-done:
			t.Fatalf("consume ended before the last event: %q, %s", r.stdout, r.line)
		default:
		}
		e.g.mu.Lock()
		defer e.g.mu.Unlock()
		return len(e.g.mu.acked) == 3
	})
	cancel()
	if r = <-done; r.err != nil || !strings.Contains(r.stdout, "order-3@0") {
		t.Errorf("consume until cancelled: %v, %q", r.err, r.stdout)
	}
}
