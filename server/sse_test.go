package server_test

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/annalsdb/annals"
	"github.com/annalsdb/annals/server"
)

// sseMessage is one message of an event stream.
type sseMessage struct {
	id, event, data string
	hasID           bool
}

// sseReader reads the messages of an SSE response in a goroutine.
type sseReader struct {
	res  *http.Response
	msgs chan sseMessage
}

func openSSE(t *testing.T, url string, header http.Header) *sseReader {
	t.Helper()
	ctx, cancel := context.WithCancel(t.Context())
	req, _ := http.NewRequestWithContext(ctx, "GET", url, nil)
	for k, v := range header {
		req.Header[k] = v
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	r := &sseReader{res: res, msgs: make(chan sseMessage, 1000)}
	done := make(chan struct{})
	t.Cleanup(func() { cancel(); res.Body.Close(); <-done })
	go func() {
		defer close(done)
		defer close(r.msgs)
		sc := bufio.NewScanner(res.Body)
		var m sseMessage
		for sc.Scan() {
			line := sc.Text()
			switch {
			case line == "":
				r.msgs <- m
				m = sseMessage{}
			case strings.HasPrefix(line, "id: "):
				m.id, m.hasID = line[4:], true
			case strings.HasPrefix(line, "event: "):
				m.event = line[7:]
			case strings.HasPrefix(line, "data: "):
				m.data = line[6:]
			}
		}
	}()
	return r
}

// next returns the next message that is not a comment-only one, failing after waitTimeout.
func (r *sseReader) next(t *testing.T) sseMessage {
	t.Helper()
	for {
		select {
		case m, ok := <-r.msgs:
			if !ok {
				t.Fatal("event stream ended")
			}
			if m.hasID || m.data != "" || m.event != "" {
				return m
			}
		case <-time.After(waitTimeout):
			t.Fatalf("no SSE message within %v", waitTimeout)
		}
	}
}

func (r *sseReader) nextEvent(t *testing.T) (string, server.SSEEvent) {
	t.Helper()
	m := r.next(t)
	var e server.SSEEvent
	if err := json.Unmarshal([]byte(m.data), &e); err != nil {
		t.Fatalf("SSE data %q: %v", m.data, err)
	}
	return m.id, e
}

func TestSSE(t *testing.T) {
	f := newFixture(t, nil, nil)
	mustAppend(t, f.store, "cart-1", 2)
	if _, err := f.store.Append(t.Context(), "bin-1", annals.Any, annals.Event{Type: "Blob", ContentType: "application/octet-stream", Data: []byte{0, 1, 2}}); err != nil {
		t.Fatal(err)
	}

	t.Run("All", func(t *testing.T) {
		r := openSSE(t, f.url+"/v1/sse/all", nil)
		if ct := r.res.Header.Get("Content-Type"); ct != "text/event-stream" {
			t.Fatalf("Content-Type: got %q", ct)
		}
		if m := r.next(t); m.id != "from:0" || m.data != "" {
			t.Errorf("first message: got %+v, want only id from:0", m)
		}
		for want := uint64(1); want <= 2; want++ {
			id, e := r.nextEvent(t)
			if id != fmt.Sprint(want) || e.Position != want || e.Stream != "cart-1" || string(e.Data) != fmt.Sprintf(`{"i":%d}`, want-1) {
				t.Errorf("event %d: got id %s, %+v", want, id, e)
			}
		}
		if _, e := r.nextEvent(t); e.Type != "Blob" || e.Data != nil || string(e.DataBase64) != "\x00\x01\x02" {
			t.Errorf("binary event: got %+v, want its data in dataBase64", e)
		}
		mustAppend(t, f.store, "cart-2", 1) // live
		if id, e := r.nextEvent(t); id != "4" || e.Stream != "cart-2" {
			t.Errorf("live event: got id %s, %+v", id, e)
		}
	})

	t.Run("StreamFromEndThenResume", func(t *testing.T) {
		r := openSSE(t, f.url+"/v1/sse/streams/cart-1?from=end", nil)
		m := r.next(t)
		if m.id != "from:2" {
			t.Fatalf("first message: got %+v, want id from:2", m)
		}
		// A browser reconnecting with that id loses nothing appended meanwhile.
		mustAppend(t, f.store, "cart-1", 2)
		r2 := openSSE(t, f.url+"/v1/sse/streams/cart-1?from=end", http.Header{"Last-Event-Id": {m.id}})
		r2.next(t) // its own start
		for _, want := range []string{"2", "3"} {
			if id, e := r2.nextEvent(t); id != want || e.Stream != "cart-1" {
				t.Errorf("resumed: got id %s (%+v), want %s", id, e, want)
			}
		}
		// Resuming after event 2 (the usual Last-Event-ID) gives 3.
		r3 := openSSE(t, f.url+"/v1/sse/streams/cart-1", http.Header{"Last-Event-Id": {"2"}})
		if m := r3.next(t); m.id != "from:3" {
			t.Errorf("resume after 2: first message %+v, want id from:3", m)
		}
		if id, _ := r3.nextEvent(t); id != "3" {
			t.Errorf("resume after 2: got id %s, want 3", id)
		}
	})

	t.Run("Filter", func(t *testing.T) {
		r := openSSE(t, f.url+"/v1/sse/all?type=Blob", nil)
		r.next(t)
		if _, e := r.nextEvent(t); e.Type != "Blob" {
			t.Errorf("filtered: got %+v", e)
		}
	})

	t.Run("Errors", func(t *testing.T) {
		if _, err := f.store.Tombstone(t.Context(), "dead-1", annals.Any); err != nil {
			t.Fatal(err)
		}
		for _, tt := range []struct {
			path   string
			status int
			reason string
		}{
			{"/v1/sse/streams/dead-1", 410, "STREAM_DELETED"},
			{"/v1/sse/streams/cart-1?from=soon", 400, "INVALID_ARGUMENT"},
			{"/v1/sse/all?category=", 400, "INVALID_ARGUMENT"},
			{"/v1/sse/streams/%24all", 400, "INVALID_ARGUMENT"},
		} {
			res, err := http.Get(f.url + tt.path)
			if err != nil {
				t.Fatal(err)
			}
			b, _ := io.ReadAll(res.Body)
			res.Body.Close()
			var body server.ErrorBody
			json.Unmarshal(b, &body)
			if res.StatusCode != tt.status || body.Reason != tt.reason {
				t.Errorf("%s: got %d %s, want %d with reason %s", tt.path, res.StatusCode, b, tt.status, tt.reason)
			}
		}
	})

	t.Run("EndsOnTombstone", func(t *testing.T) {
		mustAppend(t, f.store, "doomed-1", 1)
		r := openSSE(t, f.url+"/v1/sse/streams/doomed-1", nil)
		r.next(t)
		r.nextEvent(t)
		if _, err := f.store.Tombstone(t.Context(), "doomed-1", annals.Any); err != nil {
			t.Fatal(err)
		}
		m := r.next(t)
		var body server.ErrorBody
		json.Unmarshal([]byte(m.data), &body)
		if m.event != "annals.error" || body.Reason != "STREAM_DELETED" {
			t.Errorf("last message: got %+v, want annals.error with STREAM_DELETED", m)
		}
	})
}

func TestJSONReads(t *testing.T) {
	f := newFixture(t, nil, nil)
	mustAppend(t, f.store, "r-1", 5)
	mustAppend(t, f.store, "s-1", 1)
	get := func(path string) (int, server.Page) {
		res, err := http.Get(f.url + path)
		if err != nil {
			t.Fatal(err)
		}
		defer res.Body.Close()
		var p server.Page
		json.NewDecoder(res.Body).Decode(&p)
		return res.StatusCode, p
	}
	revs := func(p server.Page) string {
		var out []string
		for _, e := range p.Events {
			out = append(out, fmt.Sprint(e.Revision))
		}
		return strings.Join(out, ",")
	}
	for _, tt := range []struct {
		path, want string
		status     int
		next       string
	}{
		{"/v1/streams/r-1", "0,1,2,3,4", 200, "<nil>"},
		{"/v1/streams/r-1?limit=2", "0,1", 200, "2"},
		{"/v1/streams/r-1?from=2&limit=2", "2,3", 200, "4"},
		{"/v1/streams/r-1?backwards=true&limit=2", "4,3", 200, "2"},
		{"/v1/all?category=s", "0", 200, "<nil>"},
		{"/v1/streams/nobody-1", "", 404, "<nil>"},
		{"/v1/streams/r-1?limit=5000", "", 400, "<nil>"},
	} {
		status, p := get(tt.path)
		next := "<nil>"
		if p.Next != nil {
			next = fmt.Sprint(*p.Next)
		}
		if status != tt.status || revs(p) != tt.want || next != tt.next {
			t.Errorf("GET %s: got %d [%s] next %s, want %d [%s] next %s", tt.path, status, revs(p), next, tt.status, tt.want, tt.next)
		}
	}
}
