package server_test

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/annalsdb/annals"
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
