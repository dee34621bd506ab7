package server_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"connectrpc.com/connect"
	"github.com/annalsdb/annals"
	"github.com/annalsdb/annals/groups"
	annalsv1 "github.com/annalsdb/annals/internal/gen/annals/v1"
	"github.com/annalsdb/annals/internal/gen/annals/v1/annalsv1connect"
	"github.com/annalsdb/annals/internal/testwait"
	"github.com/annalsdb/annals/memstore"
	"github.com/annalsdb/annals/server"
	"github.com/google/go-cmp/cmp"
)

type consumeStream = *connect.BidiStreamForClient[annalsv1.ConsumeRequest, annalsv1.ConsumeResponse]

// groupRPC returns a GroupService client of the fixture speaking gRPC over h2c; hc nil means
// a client of default windows.
func (f *fixture) groupRPC(hc *http.Client) annalsv1connect.GroupServiceClient {
	if hc == nil {
		hc = h2cClient()
	}
	return annalsv1connect.NewGroupServiceClient(hc, f.url, connect.WithGRPC())
}

// postGroup posts a JSON body to a method of the GroupService.
func (f *fixture) postGroup(t *testing.T, method, body string) (int, map[string]any) {
	t.Helper()
	return f.postRPC(t, "GroupService", method, body)
}

// mustCreate creates group name on stream through the server's manager.
func mustCreate(t *testing.T, f *fixture, name, stream string) {
	t.Helper()
	svc, err := f.srv.Groups(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := svc.Create(t.Context(), name, groups.Settings{Stream: stream, MessageTimeout: time.Hour}); err != nil {
		t.Fatal(err)
	}
}

// joinStream opens a Consume stream, joins group and returns the stream once joined.
func joinStream(t *testing.T, rpc annalsv1connect.GroupServiceClient, group string, window uint32) consumeStream {
	t.Helper()
	ctx, cancel := context.WithCancel(t.Context())
	t.Cleanup(cancel)
	st := rpc.Consume(ctx)
	if err := st.Send(joinMsg(group, window)); err != nil {
		t.Fatal(err)
	}
	m, err := st.Receive()
	if err != nil {
		t.Fatalf("join %s: %v", group, err)
	}
	if m.GetJoined() == nil {
		t.Fatalf("join %s: got %v, want joined", group, m)
	}
	return st
}

func joinMsg(group string, window uint32) *annalsv1.ConsumeRequest {
	return &annalsv1.ConsumeRequest{Kind: &annalsv1.ConsumeRequest_Join{Join: &annalsv1.ConsumeJoin{Group: group, Window: window}}}
}

func ackMsg(seq uint64, ids ...string) *annalsv1.ConsumeRequest {
	return &annalsv1.ConsumeRequest{Kind: &annalsv1.ConsumeRequest_Ack{Ack: &annalsv1.ConsumeAck{Ids: ids, Seq: seq}}}
}

// receiveEvents receives until n events came, and returns them.
func receiveEvents(t *testing.T, st consumeStream, n int) []*annalsv1.GroupMessage {
	t.Helper()
	var got []*annalsv1.GroupMessage
	for len(got) < n {
		m, err := st.Receive()
		if err != nil {
			t.Fatalf("after %d of %d events: %v", len(got), n, err)
		}
		got = append(got, m.GetEvents().GetMessages()...)
	}
	return got
}

// TestConsumeProtocol: the stream's rules, over a raw gRPC stream.
func TestConsumeProtocol(t *testing.T) {
	f := newFixture(t, nil, nil)
	mustCreate(t, f, "g", "order-1")
	mustAppend(t, f.store, "order-1", 3)
	rpc := f.groupRPC(nil)

	refused := func(name string, msgs []*annalsv1.ConsumeRequest, code connect.Code, words ...string) {
		t.Run(name, func(t *testing.T) {
			ctx, cancel := context.WithCancel(t.Context())
			defer cancel()
			st := rpc.Consume(ctx)
			for _, m := range msgs {
				if err := st.Send(m); err != nil && !errors.Is(err, io.EOF) {
					t.Fatal(err)
				}
			}
			for {
				_, err := st.Receive()
				if err == nil {
					continue
				}
				if connect.CodeOf(err) != code {
					t.Fatalf("got %v, want %v", err, code)
				}
				for _, w := range words {
					if !strings.Contains(err.Error(), w) {
						t.Errorf("error %v does not name %q", err, w)
					}
				}
				return
			}
		})
	}
	refused("AckFirst", []*annalsv1.ConsumeRequest{ackMsg(1, annals.NewUUID().String())}, connect.CodeInvalidArgument, "join")
	refused("Empty", []*annalsv1.ConsumeRequest{{}}, connect.CodeInvalidArgument, "join")
	refused("SecondJoin", []*annalsv1.ConsumeRequest{joinMsg("g", 0), joinMsg("g", 0)}, connect.CodeInvalidArgument, "second join")
	refused("BadUUID", []*annalsv1.ConsumeRequest{joinMsg("g", 0), ackMsg(1, "not-a-uuid")}, connect.CodeInvalidArgument, "not-a-uuid")
	refused("NoIDs", []*annalsv1.ConsumeRequest{joinMsg("g", 0), ackMsg(1)}, connect.CodeInvalidArgument, "ids")
	refused("BadAction", []*annalsv1.ConsumeRequest{joinMsg("g", 0), {Kind: &annalsv1.ConsumeRequest_Nack{Nack: &annalsv1.ConsumeNack{Ids: []string{annals.NewUUID().String()}, Action: "later"}}}}, connect.CodeInvalidArgument, "later")
	refused("Window", []*annalsv1.ConsumeRequest{joinMsg("g", groups.MaxWindow+1)}, connect.CodeInvalidArgument, "window")
	refused("BadName", []*annalsv1.ConsumeRequest{joinMsg("a/b", 0)}, connect.CodeInvalidArgument, "a/b")
	refused("UnknownGroup", []*annalsv1.ConsumeRequest{joinMsg("nope", 0)}, connect.CodeNotFound, "nope")

	t.Run("Settle", func(t *testing.T) {
		st := joinStream(t, rpc, "g", 2)
		got := receiveEvents(t, st, 2) // the window
		// An ack of an event not in flight is answered, with its seq, and the stream goes on.
		stranger := annals.NewUUID().String()
		if err := st.Send(ackMsg(7, stranger)); err != nil {
			t.Fatal(err)
		}
		m, err := st.Receive()
		if err != nil {
			t.Fatal(err)
		}
		se := m.GetSettleError()
		if se.GetSeq() != 7 || se.GetReason() != "NOT_IN_FLIGHT" || !strings.Contains(se.GetMessage(), stranger) {
			t.Fatalf("ack of an event not in flight: got %v, want settle_error seq 7 NOT_IN_FLIGHT naming it", m)
		}
		// Acks with a seq are answered settled; without one, not at all; the window refills.
		if err := st.Send(ackMsg(8, got[0].Event.Id)); err != nil {
			t.Fatal(err)
		}
		if err := st.Send(ackMsg(0, got[1].Event.Id)); err != nil {
			t.Fatal(err)
		}
		var settled []uint64
		var more []*annalsv1.GroupMessage
		for len(settled) == 0 || len(more) == 0 {
			m, err := st.Receive()
			if err != nil {
				t.Fatal(err)
			}
			settled = append(settled, m.GetSettled().GetSeqs()...)
			more = append(more, m.GetEvents().GetMessages()...)
		}
		if diff := cmp.Diff([]uint64{8}, settled); diff != "" {
			t.Errorf("settled (-want +got):\n%s", diff)
		}
		if len(more) != 1 || more[0].Event.Revision != 2 {
			t.Errorf("after the acks: got %v, want the third event", more)
		}
	})
}

// TestConsumeLeaveRedelivers: when a consumer's stream ends, its events in flight go to the
// others.
func TestConsumeLeaveRedelivers(t *testing.T) {
	f := newFixture(t, nil, nil)
	mustCreate(t, f, "g", "order-1")
	mustAppend(t, f.store, "order-1", 2)
	// The first consumer has a connection of its own, which the test breaks.
	var p http.Protocols
	p.SetUnencryptedHTTP2(true)
	conns := make(chan net.Conn, 1)
	dial := func(ctx context.Context, network, addr string) (net.Conn, error) {
		c, err := (&net.Dialer{}).DialContext(ctx, network, addr)
		if err == nil {
			conns <- c
		}
		return c, err
	}
	hc := &http.Client{Transport: &http.Transport{Protocols: &p, DialContext: dial}}
	first := joinStream(t, f.groupRPC(hc), "g", 0)
	receiveEvents(t, first, 2)
	second := joinStream(t, f.groupRPC(nil), "g", 0)
	(<-conns).Close() // the first consumer goes away with its events unacked
	got := receiveEvents(t, second, 2)
	for _, m := range got {
		if m.Retries != 1 {
			t.Errorf("redelivered %s: retries %d, want 1", m.Event.Id, m.Retries)
		}
	}
}

// TestConsumeServerClose: Close ends the Consume streams with Unavailable (SHUTTING_DOWN),
// also one whose client does not read, and returns.
func TestConsumeServerClose(t *testing.T) {
	f := newFixture(t, nil, nil)
	mustCreate(t, f, "g", "order-1")
	mustAppend(t, f.store, "order-1", 5)
	rpc := f.groupRPC(nil)
	reader := joinStream(t, rpc, "g", 2)
	receiveEvents(t, reader, 2)
	var p http.Protocols
	p.SetUnencryptedHTTP2(true)
	hc := &http.Client{Transport: &http.Transport{Protocols: &p, HTTP2: &http.HTTP2Config{MaxReceiveBufferPerStream: 64 << 10}}}
	joinStream(t, f.groupRPC(hc), "g", 2) // and never read
	closed := make(chan error, 1)
	go func() { closed <- f.srv.Close() }()
	if err := testwait.Recv(t, "Close with consumers joined", closed); err != nil {
		t.Errorf("Close: %v", err)
	}
	for {
		_, err := reader.Receive()
		if err == nil {
			continue
		}
		if connect.CodeOf(err) != connect.CodeUnavailable || detail(t, err).GetReason() != "SHUTTING_DOWN" {
			t.Errorf("a consumer at Close: got %v, want unavailable SHUTTING_DOWN", err)
		}
		break
	}
	if _, err := f.srv.Groups(t.Context()); !errors.Is(err, server.ErrShuttingDown) {
		t.Errorf("Groups after Close: %v", err)
	}
}

// TestGroupsErrors: the groups' errors through the table, over Connect's JSON.
func TestGroupsErrors(t *testing.T) {
	f := newFixture(t, nil, nil)
	for _, tt := range []struct {
		name, method, body string
		status             int
		code, reason       string
	}{
		{"Create", "CreateGroup", `{"name":"g","settings":{"stream":"order-1"}}`, 200, "", ""},
		{"Exists", "CreateGroup", `{"name":"g","settings":{"stream":"order-1"}}`, 409, "already_exists", "GROUP_EXISTS"},
		{"NotFound", "GetGroup", `{"name":"nope"}`, 404, "not_found", "GROUP_NOT_FOUND"},
		{"DeleteNotFound", "DeleteGroup", `{"name":"nope"}`, 404, "not_found", "GROUP_NOT_FOUND"},
		{"UpdateNotFound", "UpdateGroup", `{"name":"nope","settings":{"stream":"order-1"}}`, 404, "not_found", "GROUP_NOT_FOUND"},
		{"BadSettings", "CreateGroup", `{"name":"h","settings":{"stream":"order-1","maxRetries":5000}}`, 400, "invalid_argument", "INVALID_ARGUMENT"},
		{"BadName", "CreateGroup", `{"name":"a b","settings":{"stream":"order-1"}}`, 400, "invalid_argument", "INVALID_ARGUMENT"},
		{"Get", "GetGroup", `{"name":"g"}`, 200, "", ""},
		{"Replay", "ReplayParked", `{"name":"g"}`, 200, "", ""},
		{"List", "ListGroups", `{}`, 200, "", ""},
	} {
		t.Run(tt.name, func(t *testing.T) {
			status, v := f.postGroup(t, tt.method, tt.body)
			if status != tt.status {
				t.Fatalf("got %d %v, want %d", status, v, tt.status)
			}
			if tt.code == "" {
				return
			}
			var reason string
			if ds, ok := v["details"].([]any); ok && len(ds) > 0 {
				d, _ := ds[0].(map[string]any)
				dbg, _ := d["debug"].(map[string]any)
				reason, _ = dbg["reason"].(string)
			}
			if v["code"] != tt.code || reason != tt.reason {
				t.Errorf("got %v (reason %q), want %s %s", v, reason, tt.code, tt.reason)
			}
		})
	}
}

// TestGroupsStrictJSON: unknown fields are refused naming them, and nothing is written.
func TestGroupsStrictJSON(t *testing.T) {
	f := newFixture(t, nil, nil)
	for _, tt := range []struct{ method, body, field string }{
		{"CreateGroup", `{"name":"g","setings":{"stream":"order-1"}}`, "setings"},
		{"CreateGroup", `{"name":"g","settings":{"stream":"order-1","maxRetry":3}}`, "maxRetry"},
		{"CreateGroup", `{"name":"g","settings":{"stream":"order-1","start":{"begining":{}}}}`, "begining"},
		{"UpdateGroup", `{"name":"g","settings":{"stream":"order-1","bufer":3}}`, "bufer"},
		{"ReplayParked", `{"name":"g","limt":3}`, "limt"},
		{"GetGroup", `{"nam":"g"}`, "nam"},
	} {
		status, v := f.postGroup(t, tt.method, tt.body)
		msg, _ := v["message"].(string)
		if status != http.StatusBadRequest || v["code"] != "invalid_argument" || !strings.Contains(msg, tt.field) {
			t.Errorf("%s %s: got %d %v, want 400 invalid_argument naming %q", tt.method, tt.body, status, v, tt.field)
		}
	}
	if n := logEvents(t, f.store); n != 0 {
		t.Errorf("refused requests wrote %d events", n)
	}
}

// TestGroupsAuthorize: what each method asks of Options.Authorize, and that a refusal stops it.
func TestGroupsAuthorize(t *testing.T) {
	var mu sync.Mutex
	var seen []server.Access
	admin := true
	f := newFixture(t, nil, &server.Options{Authorize: func(ctx context.Context, a server.Access) error {
		mu.Lock()
		defer mu.Unlock()
		seen = append(seen, a)
		switch {
		case a.Op == server.OpAdmin && !admin:
			return fmt.Errorf("%w: not an admin", server.ErrPermissionDenied)
		case strings.HasPrefix(a.Stream, "secret-"):
			return fmt.Errorf("%w: secret", server.ErrPermissionDenied)
		}
		return nil
	}})
	ctx := t.Context()
	rpc := annalsv1connect.NewGroupServiceClient(http.DefaultClient, f.url)
	for _, g := range []struct{ name, stream string }{{"open", "order-1"}, {"hidden", "secret-1"}} {
		if _, err := rpc.CreateGroup(ctx, connect.NewRequest(&annalsv1.CreateGroupRequest{Name: g.name, Settings: &annalsv1.GroupSettings{Stream: g.stream}})); err != nil {
			t.Fatal(err)
		}
	}
	list, err := rpc.ListGroups(ctx, connect.NewRequest(&annalsv1.ListGroupsRequest{}))
	if err != nil {
		t.Fatal(err)
	}
	if n := len(list.Msg.Groups); n != 1 || list.Msg.Groups[0].Definition.Name != "open" {
		t.Errorf("ListGroups: got %v, want only the group on a readable stream", list.Msg.Groups)
	}
	if _, err := rpc.GetGroup(ctx, connect.NewRequest(&annalsv1.GetGroupRequest{Name: "hidden"})); connect.CodeOf(err) != connect.CodePermissionDenied {
		t.Errorf("GetGroup of a group on an unreadable stream: %v", err)
	}
	st := f.groupRPC(nil).Consume(ctx)
	if err := st.Send(joinMsg("hidden", 0)); err != nil {
		t.Fatal(err)
	}
	if _, err := st.Receive(); connect.CodeOf(err) != connect.CodePermissionDenied {
		t.Errorf("Consume of a group on an unreadable stream: %v", err)
	}
	joinStream(t, f.groupRPC(nil), "open", 0)
	mu.Lock()
	admin = false
	seen = nil
	mu.Unlock()
	if _, err := rpc.DeleteGroup(ctx, connect.NewRequest(&annalsv1.DeleteGroupRequest{Name: "open"})); connect.CodeOf(err) != connect.CodePermissionDenied {
		t.Errorf("DeleteGroup without admin: %v", err)
	}
	if _, err := rpc.ReplayParked(ctx, connect.NewRequest(&annalsv1.ReplayParkedRequest{Name: "open"})); connect.CodeOf(err) != connect.CodePermissionDenied {
		t.Errorf("ReplayParked without admin: %v", err)
	}
	if _, err := rpc.UpdateGroup(ctx, connect.NewRequest(&annalsv1.UpdateGroupRequest{Name: "open", Settings: &annalsv1.GroupSettings{Stream: "order-1"}})); connect.CodeOf(err) != connect.CodePermissionDenied {
		t.Errorf("UpdateGroup without admin: %v", err)
	}
	if _, err := rpc.GetGroup(ctx, connect.NewRequest(&annalsv1.GetGroupRequest{Name: "open"})); err != nil {
		t.Errorf("GetGroup: %v", err)
	}
	mu.Lock()
	defer mu.Unlock()
	want := []server.Access{
		{Op: server.OpAdmin, Procedure: annalsv1connect.GroupServiceDeleteGroupProcedure, Group: "open"},
		{Op: server.OpAdmin, Procedure: annalsv1connect.GroupServiceReplayParkedProcedure, Group: "open"},
		{Op: server.OpAdmin, Procedure: annalsv1connect.GroupServiceUpdateGroupProcedure, Group: "open"},
		{Op: server.OpRead, Procedure: annalsv1connect.GroupServiceGetGroupProcedure, Group: "open", Stream: "order-1"},
	}
	if diff := cmp.Diff(want, seen); diff != "" {
		t.Errorf("Authorize saw (-want +got):\n%s", diff)
	}
}

// TestGroupsAuthReadGrants: with server.Auth, a caller who may read a stream prefix may
// consume the groups on those streams (and on $all filtered to them), and no other.
func TestGroupsAuthReadGrants(t *testing.T) {
	auth, err := server.NewAuth(&server.AuthOptions{
		Tokens: []server.APIToken{{Name: "reader", SHA256: server.HashToken("r"), Roles: []string{"orders"}}},
		Roles:  map[string][]server.Grant{"orders": {{Op: server.OpRead, Prefix: "order-"}}},
	})
	if err != nil {
		t.Fatal(err)
	}
	f := newFixture(t, nil, &server.Options{Authorize: auth.Authorize})
	svc, err := f.srv.Groups(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	for name, s := range map[string]groups.Settings{
		"stream": {Stream: "order-1"},
		"all":    {Stream: annals.AllStream, Filter: &annals.Filter{StreamPrefixes: []string{"order-"}}},
		"every":  {Stream: annals.AllStream},
		"other":  {Stream: "cart-1"},
	} {
		if _, err := svc.Create(t.Context(), name, s); err != nil {
			t.Fatal(err)
		}
	}
	hs := httptest.NewUnstartedServer(auth.Middleware(f.srv.Handler()))
	hs.Config.Protocols = h2c()
	hs.Start()
	defer hs.Close()
	var p http.Protocols
	p.SetUnencryptedHTTP2(true)
	hc := &http.Client{Transport: &http.Transport{Protocols: &p}}
	token := connect.WithInterceptors(bearerToken("Bearer r"))
	grpc := annalsv1connect.NewGroupServiceClient(hc, hs.URL, connect.WithGRPC(), token)
	unary := annalsv1connect.NewGroupServiceClient(hc, hs.URL, token)
	ctx := t.Context()
	for name, want := range map[string]connect.Code{"stream": 0, "all": 0, "every": connect.CodePermissionDenied, "other": connect.CodePermissionDenied, "missing": connect.CodePermissionDenied} {
		cctx, cancel := context.WithCancel(ctx)
		st := grpc.Consume(cctx)
		if err := st.Send(joinMsg(name, 0)); err != nil {
			t.Fatal(err)
		}
		m, err := st.Receive()
		if (want == 0 && (err != nil || m.GetJoined() == nil)) || (want != 0 && connect.CodeOf(err) != want) {
			t.Errorf("Consume %s: got %v %v, want %v", name, m, err, want)
		}
		st.CloseRequest()
		cancel()
	}
	list, err := unary.ListGroups(ctx, connect.NewRequest(&annalsv1.ListGroupsRequest{}))
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, g := range list.Msg.Groups {
		names = append(names, g.Definition.Name)
	}
	if diff := cmp.Diff([]string{"all", "stream"}, names); diff != "" {
		t.Errorf("ListGroups (-want +got):\n%s", diff)
	}
	if _, err := unary.CreateGroup(ctx, connect.NewRequest(&annalsv1.CreateGroupRequest{Name: "mine", Settings: &annalsv1.GroupSettings{Stream: "order-2"}})); connect.CodeOf(err) != connect.CodePermissionDenied {
		t.Errorf("CreateGroup by a reader: %v", err)
	}
}

// bearerToken sets the Authorization header of a client's requests.
type bearerToken string

func (b bearerToken) WrapUnary(next connect.UnaryFunc) connect.UnaryFunc {
	return func(ctx context.Context, req connect.AnyRequest) (connect.AnyResponse, error) {
		req.Header().Set("Authorization", string(b))
		return next(ctx, req)
	}
}

func (b bearerToken) WrapStreamingClient(next connect.StreamingClientFunc) connect.StreamingClientFunc {
	return func(ctx context.Context, spec connect.Spec) connect.StreamingClientConn {
		conn := next(ctx, spec)
		conn.RequestHeader().Set("Authorization", string(b))
		return conn
	}
}

func (b bearerToken) WrapStreamingHandler(next connect.StreamingHandlerFunc) connect.StreamingHandlerFunc {
	return next
}

// TestGroupsRoute: GET /v1/groups lists the groups as JSON; over a store that cannot keep
// groups it says so, and the GroupService answers Unimplemented.
func TestGroupsRoute(t *testing.T) {
	f := newFixture(t, nil, nil)
	mustCreate(t, f, "g", "order-1")
	var list server.GroupList
	if status := f.getJSON(t, "/v1/groups", &list); status != http.StatusOK {
		t.Fatalf("GET /v1/groups: %d", status)
	}
	if !list.Available || len(list.Groups) != 1 || list.Groups[0].Name != "g" || list.Groups[0].Settings.Stream != "order-1" {
		t.Errorf("GET /v1/groups: got %+v", list)
	}
	if status := f.getJSON(t, "/v1/groups?x=1", &list); status != http.StatusBadRequest {
		t.Errorf("GET /v1/groups?x=1: %d, want 400", status)
	}

	plain := newFixture(t, struct{ annals.Store }{memstore.New(nil)}, nil)
	list = server.GroupList{}
	if status := plain.getJSON(t, "/v1/groups", &list); status != http.StatusOK || list.Available || list.Groups == nil {
		t.Errorf("GET /v1/groups over a store without groups: %d %+v", status, list)
	}
	if status, v := plain.postGroup(t, "ListGroups", `{}`); status != http.StatusNotImplemented {
		t.Errorf("ListGroups over a store without groups: %d %v", status, v)
	}
}
