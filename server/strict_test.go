package server_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
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
	annalsv1 "github.com/annalsdb/annals/internal/gen/annals/v1"
	"github.com/annalsdb/annals/memstore"
	"github.com/annalsdb/annals/server"
)

// logEvents returns the number of events in the store's log.
func logEvents(t *testing.T, s annals.Store) int {
	t.Helper()
	n := 0
	for _, err := range s.ReadAll(t.Context(), nil) {
		if err != nil {
			t.Fatal(err)
		}
		n++
	}
	return n
}

// TestUnknownJSONFields checks that every JSON request with a field the API does not know is
// refused with invalid_argument naming the field, over real HTTP, and that nothing is written.
func TestUnknownJSONFields(t *testing.T) {
	f := newFixture(t, nil, nil)
	mustAppend(t, f.store, "order-9", 1)
	before := logEvents(t, f.store)

	for _, tt := range []struct {
		name, method, body, field string
	}{
		{"ExpectedTypo", "Append", `{"stream":"order-9","expected":{"revison":"7"},"events":[{"type":"E"}]}`, "revison"},
		{"EventField", "Append", `{"stream":"order-9","events":[{"type":"E","dat":"e30="}]}`, "dat"},
		{"TopLevel", "Append", `{"stream":"order-9","events":[{"type":"E"}],"expectd":{"any":{}}}`, "expectd"},
		{"MetadataField", "SetMetadata", `{"stream":"order-9","metadata":{"maxCont":"5"}}`, "maxCont"},
		{"ACLField", "SetMetadata", `{"stream":"order-9","metadata":{"acl":{"reed":["$all"]}}}`, "reed"},
		{"Delete", "Delete", `{"stream":"order-9","expeted":{"revision":"0"}}`, "expeted"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			for _, ct := range []string{"application/json", "application/json; charset=utf-8"} {
				status, v := f.post(t, tt.method, ct, tt.body)
				msg, _ := v["message"].(string)
				if status != http.StatusBadRequest || v["code"] != "invalid_argument" || !strings.Contains(msg, `"`+tt.field+`"`) {
					t.Errorf("%s (%s): got %d %v, want 400 invalid_argument naming %q", tt.method, ct, status, v, tt.field)
				}
			}
		})
	}

	t.Run("Streaming", func(t *testing.T) {
		msg := []byte(`{"stream":"order-9","limt":"5"}`)
		var body bytes.Buffer
		body.WriteByte(0)
		binary.Write(&body, binary.BigEndian, uint32(len(msg)))
		body.Write(msg)
		res, err := http.Post(f.url+"/annals.v1.EventStoreService/ReadStream", "application/connect+json", &body)
		if err != nil {
			t.Fatal(err)
		}
		defer res.Body.Close()
		b, _ := io.ReadAll(res.Body)
		// The answer is enveloped: the end-of-stream message (flag 2) carries the error.
		var end struct {
			Error struct{ Code, Message string }
		}
		for len(b) >= 5 {
			n := binary.BigEndian.Uint32(b[1:5])
			if b[0]&2 != 0 {
				json.Unmarshal(b[5:5+n], &end)
			}
			b = b[5+n:]
		}
		if end.Error.Code != "invalid_argument" || !strings.Contains(end.Error.Message, `"limt"`) {
			t.Errorf("ReadStream with an unknown field: got %+v, want invalid_argument naming \"limt\"", end.Error)
		}
	})

	t.Run("QueryParameters", func(t *testing.T) {
		for _, tt := range []struct{ path, param string }{
			{"/v1/streams/order-9?limt=5", "limt"},
			{"/v1/all?categroy=order", "categroy"},
			{"/v1/streams?prefx=order", "prefx"},
			{"/v1/sse/streams/order-9?form=0", "form"},
			{"/v1/sse/all?tpye=E", "tpye"},
		} {
			res, err := http.Get(f.url + tt.path)
			if err != nil {
				t.Fatal(err)
			}
			var e server.ErrorBody
			json.NewDecoder(res.Body).Decode(&e)
			res.Body.Close()
			if res.StatusCode != http.StatusBadRequest || e.Code != "invalid_argument" || !strings.Contains(e.Message, `"`+tt.param+`"`) {
				t.Errorf("GET %s: got %d %+v, want 400 invalid_argument naming %q", tt.path, res.StatusCode, e, tt.param)
			}
		}
	})

	if n := logEvents(t, f.store); n != before {
		t.Errorf("log after the refused requests: %d events, want %d", n, before)
	}
}

// TestLoginUnknownField checks that POST /v1/login refuses a field it does not know, naming it.
func TestLoginUnknownField(t *testing.T) {
	a, err := server.NewAuth(nil)
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	a.Register(mux)
	hs := httptest.NewServer(mux)
	defer hs.Close()
	res, err := http.Post(hs.URL+"/v1/login", "application/json", strings.NewReader(`{"username":"alice","pasword":"x"}`))
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	var e server.ErrorBody
	json.NewDecoder(res.Body).Decode(&e)
	if res.StatusCode != http.StatusBadRequest || !strings.Contains(e.Message, `"pasword"`) {
		t.Errorf("login with an unknown field: got %d %+v, want 400 naming \"pasword\"", res.StatusCode, e)
	}
}

// TestValidateBeforeAuthorize checks that bad input is refused as such before authorization:
// the hook denies everything and sees none of these requests.
func TestValidateBeforeAuthorize(t *testing.T) {
	var mu sync.Mutex
	var seen []server.Access
	f := newFixture(t, nil, &server.Options{Limits: annals.Limits{MaxEventSize: 1000}, Authorize: func(ctx context.Context, a server.Access) error {
		mu.Lock()
		defer mu.Unlock()
		seen = append(seen, a)
		return server.ErrPermissionDenied
	}})
	rpc := f.rpc()
	ctx := t.Context()
	check := func(what string, err error) {
		t.Helper()
		if got := connect.CodeOf(err); got != connect.CodeInvalidArgument {
			t.Errorf("%s: got %v, want invalid_argument", what, err)
		}
	}
	recv := func(st interface {
		Receive() bool
		Err() error
		Close() error
	}, err error) error {
		if err != nil {
			return err
		}
		defer st.Close()
		for st.Receive() {
		}
		return st.Err()
	}
	check("Subscribe with an empty stream", recv(rpc.Subscribe(ctx, connect.NewRequest(&annalsv1.SubscribeRequest{}))))
	check("Subscribe with an empty filter prefix", recv(rpc.Subscribe(ctx, connect.NewRequest(&annalsv1.SubscribeRequest{Stream: "$all", Filter: &annalsv1.Filter{StreamPrefixes: []string{""}}}))))
	check("ReadStream of an empty stream", recv(rpc.ReadStream(ctx, connect.NewRequest(&annalsv1.ReadStreamRequest{}))))
	check("ReadAll with an empty category", recv(rpc.ReadAll(ctx, connect.NewRequest(&annalsv1.ReadAllRequest{Filter: &annalsv1.Filter{Categories: []string{""}}}))))
	_, err := rpc.Append(ctx, connect.NewRequest(&annalsv1.AppendRequest{Events: []*annalsv1.Event{{Type: "E"}}}))
	check("Append to an empty stream", err)
	_, err = rpc.Append(ctx, connect.NewRequest(&annalsv1.AppendRequest{Stream: "a-1", Events: []*annalsv1.Event{{Type: "E", Id: "nope"}}}))
	check("Append with a bad event id", err)
	_, err = rpc.Delete(ctx, connect.NewRequest(&annalsv1.DeleteRequest{Stream: "a\x01"}))
	check("Delete of a stream with a control character", err)
	_, err = rpc.Tombstone(ctx, connect.NewRequest(&annalsv1.TombstoneRequest{}))
	check("Tombstone of an empty stream", err)
	_, err = rpc.GetMetadata(ctx, connect.NewRequest(&annalsv1.GetMetadataRequest{}))
	check("GetMetadata of an empty stream", err)
	_, err = rpc.SetMetadata(ctx, connect.NewRequest(&annalsv1.SetMetadataRequest{Stream: "a-1", Metadata: &annalsv1.StreamMetadata{CustomJson: "{nope"}}))
	check("SetMetadata with bad JSON", err)
	_, err = rpc.Append(ctx, connect.NewRequest(&annalsv1.AppendRequest{Stream: "a-1", Events: []*annalsv1.Event{{Type: ""}}}))
	check("Append of an event with no type", err)
	_, err = rpc.Append(ctx, connect.NewRequest(&annalsv1.AppendRequest{Stream: "a-1"}))
	check("Append of no events", err)
	id := annals.NewUUID().String()
	_, err = rpc.Append(ctx, connect.NewRequest(&annalsv1.AppendRequest{Stream: "a-1", Events: []*annalsv1.Event{{Type: "E", Id: id}, {Type: "E", Id: id}}}))
	check("Append of one id twice", err)
	_, err = rpc.Append(ctx, connect.NewRequest(&annalsv1.AppendRequest{Stream: "a-1", Events: []*annalsv1.Event{{Type: "E", Data: make([]byte, 2000)}}}))
	check("Append of an event over the server's MaxEventSize", err)
	check("ListStreams with a control character in the prefix", recv(rpc.ListStreams(ctx, connect.NewRequest(&annalsv1.ListStreamsRequest{Prefix: "a\x01"}))))
	_, err = rpc.Append(ctx, connect.NewRequest(&annalsv1.AppendRequest{Stream: "a-1", Events: []*annalsv1.Event{{Type: "E"}}, Lease: &annalsv1.Lease{}}))
	check("Append fenced by a lease without a name", err)
	lrpc := f.leaseRPC()
	_, err = lrpc.Acquire(ctx, connect.NewRequest(&annalsv1.AcquireRequest{Name: "n", Holder: "h"}))
	check("Acquire with no ttl", err)
	_, err = lrpc.Acquire(ctx, connect.NewRequest(&annalsv1.AcquireRequest{Name: "n"}))
	check("Acquire with no holder and no ttl", err)
	_, err = lrpc.Renew(ctx, connect.NewRequest(&annalsv1.RenewRequest{}))
	check("Renew of no lease", err)
	_, err = lrpc.Release(ctx, connect.NewRequest(&annalsv1.ReleaseRequest{Lease: &annalsv1.Lease{Name: "n\x00"}}))
	check("Release of a name with a NUL byte", err)
	_, err = lrpc.ListLeases(ctx, connect.NewRequest(&annalsv1.ListLeasesRequest{Prefix: "a\x00"}))
	check("ListLeases with a NUL byte in the prefix", err)
	for _, path := range []string{"/v1/streams/?prefix=", "/v1/leases?prefix=%00", "/v1/leases?x=1", "/v1/all?prefix=", "/v1/sse/streams/", "/v1/sse/all?type=", "/v1/streams?limit=0", "/v1/streams?prefix=%01", "/v1/streams?prefix=%ff", "/v1/streams?after=%ff"} {
		res, err := http.Get(f.url + path)
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
		if res.StatusCode != http.StatusBadRequest {
			t.Errorf("GET %s: got %d, want 400", path, res.StatusCode)
		}
	}
	mu.Lock()
	defer mu.Unlock()
	if len(seen) > 0 {
		t.Errorf("Authorize saw requests with bad input: %v", seen)
	}
}

// rawPost sends a raw HTTP/1.1 request on a new connection and returns the answer.
func rawPost(t *testing.T, addr, request string) *http.Response {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	c.SetDeadline(time.Now().Add(waitTimeout))
	if _, err := io.WriteString(c, request); err != nil {
		t.Fatal(err)
	}
	res, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { res.Body.Close() })
	return res
}

// TestStalledBodyAndEncoding checks the HTTP status of two refusals: a body that stalls past
// the read timeout is 408 (not 504), a Content-Encoding the server cannot decode is 415 (not
// 501); and that neither writes anything.
func TestStalledBodyAndEncoding(t *testing.T) {
	store := memstore.New(nil)
	defer store.Close()
	srv := server.New(store, nil)
	hs := httptest.NewUnstartedServer(srv.Handler())
	hs.Config.ReadTimeout = 200 * time.Millisecond
	hs.Config.Protocols = h2c()
	hs.Start()
	defer hs.Close()
	addr := hs.Listener.Addr().String()

	res := rawPost(t, addr, "POST /annals.v1.EventStoreService/Append HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{\"stream\":")
	if res.StatusCode != http.StatusRequestTimeout {
		t.Errorf("stalled body: got status %d, want 408", res.StatusCode)
	}

	// The same over HTTP/2 (h2c), whose server cuts a stalled stream at the read timeout.
	var p http.Protocols
	p.SetUnencryptedHTTP2(true)
	h2 := &http.Client{Transport: &http.Transport{Protocols: &p}, Timeout: waitTimeout}
	pr, pw := io.Pipe()
	defer pw.Close()
	go io.WriteString(pw, `{"stream":`)
	res2, err := h2.Post(hs.URL+"/annals.v1.EventStoreService/Append", "application/json", pr)
	if err != nil {
		t.Fatal(err)
	}
	res2.Body.Close()
	if res2.StatusCode != http.StatusRequestTimeout {
		t.Errorf("stalled body over HTTP/2: got status %d, want 408", res2.StatusCode)
	}

	body := `{"stream":"a-1","events":[{"type":"E"}]}`
	res = rawPost(t, addr, fmt.Sprintf("POST /annals.v1.EventStoreService/Append HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Encoding: br\r\nContent-Length: %d\r\n\r\n%s", len(body), body))
	if res.StatusCode != http.StatusUnsupportedMediaType {
		t.Errorf("Content-Encoding br: got status %d, want 415", res.StatusCode)
	}
	if n := logEvents(t, store); n != 0 {
		t.Errorf("log after the refused requests: %d events, want 0", n)
	}
}

// notReadyStore is a store whose Ready method reports err (a full disk, say).
type notReadyStore struct {
	annals.Store
	err error
}

func (s notReadyStore) Ready() error { return s.err }

// TestReady checks that Server.Ready reports a store's own Ready error, and nil for a store
// that is ready or has no Ready method.
func TestReady(t *testing.T) {
	mem := memstore.New(nil)
	defer mem.Close()
	full := errors.New("no space left on device")
	for _, tt := range []struct {
		name  string
		store annals.Store
		want  error
	}{
		{"NoReadyMethod", mem, nil},
		{"Ready", notReadyStore{mem, nil}, nil},
		{"DiskFull", notReadyStore{mem, full}, full},
	} {
		t.Run(tt.name, func(t *testing.T) {
			err := server.New(tt.store, nil).Ready(t.Context())
			if (tt.want == nil) != (err == nil) || (tt.want != nil && !errors.Is(err, tt.want)) {
				t.Errorf("Ready: got %v, want %v", err, tt.want)
			}
		})
	}
}
