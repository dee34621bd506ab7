package server_test

import (
	"bytes"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/annalsdb/annals"
	"github.com/annalsdb/annals/memstore"
	"github.com/annalsdb/annals/server"
)

// FuzzJSON feeds arbitrary bodies to the unary methods over the Connect protocol's plain
// JSON, through the server's handler. Whatever the bytes, the server must answer with a
// Connect error body or a success (never a 5xx: a bad body is the client's fault), an error
// must be JSON with a code, and a refused append must leave the store as it was.
func FuzzJSON(f *testing.F) {
	methods := []string{"Append", "Delete", "Tombstone", "GetMetadata", "SetMetadata", "ServerInfo"}
	for _, seed := range []string{
		`{"stream":"order-1","expected":{"noStream":{}},"events":[{"type":"OrderPlaced","data":"eyJ0b3RhbCI6NDJ9"}]}`,
		`{"stream":"order-1","expected":{"revision":"0"},"events":[{"id":"0190f2b4-5c1e-7a3b-9d2e-4f5a6b7c8d9e","type":"E","contentType":"text/plain","metadata":"AA=="}]}`,
		`{"stream":"a-1","expected":{"any":{}}}`,
		`{"stream":"a-1","metadata":{"maxCount":"3","maxAge":"3600s","acl":{"read":["r"]},"customJson":"{\"a\":1}"}}`,
		`{"stream":"a\u0000b","events":[{"type":""}]}`,
		`{"stream":"a-1","expected":{"revision":"18446744073709551615"},"events":[{"type":"E"}]}`,
		`{"stream":"a-1","events":[{"id":"nope","type":"E"}]}`,
		`{"stream":`, `[]`, `null`, ``, `{"events":[{}]}`,
	} {
		for i := range methods {
			f.Add(uint8(i), []byte(seed))
		}
	}
	store := memstore.New(nil)
	f.Cleanup(func() { store.Close() })
	h := server.New(store, &server.Options{Logger: slog.New(slog.NewTextHandler(io.Discard, nil)), MaxRequestBytes: 64 << 10}).Handler()
	f.Fuzz(func(t *testing.T, m uint8, body []byte) {
		method := methods[int(m)%len(methods)]
		before := logLength(t, store)
		req := httptest.NewRequest("POST", "/annals.v1.EventStoreService/"+method, bytes.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		w := httptest.NewRecorder()
		h.ServeHTTP(w, req)
		res := w.Result()
		b, _ := io.ReadAll(res.Body)
		if res.StatusCode >= 500 {
			t.Fatalf("%s %q: status %d %s", method, body, res.StatusCode, b)
		}
		if res.StatusCode == http.StatusOK {
			return
		}
		var e struct {
			Code    string `json:"code"`
			Message string `json:"message"`
		}
		if err := json.Unmarshal(b, &e); err != nil || e.Code == "" {
			t.Fatalf("%s %q: status %d with a body that is no Connect error: %q", method, body, res.StatusCode, b)
		}
		if strings.HasPrefix(e.Message, "internal error") {
			t.Fatalf("%s %q: internal error for bad input: %s", method, body, b)
		}
		if after := logLength(t, store); after != before {
			t.Fatalf("%s %q failed with %s but the log grew from %d to %d events", method, body, b, before, after)
		}
	})
}

// logLength returns the position of the last event of the log (0 when it is empty).
func logLength(t *testing.T, s annals.Store) uint64 {
	for e, err := range s.ReadAll(t.Context(), &annals.ReadOptions{Backwards: true, From: annals.End, Limit: 1}) {
		if err != nil {
			t.Fatal(err)
		}
		return e.Position
	}
	return 0
}
