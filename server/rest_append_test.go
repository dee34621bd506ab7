package server_test

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"github.com/annalsdb/annals"
	"github.com/annalsdb/annals/internal/testwait"
	"github.com/annalsdb/annals/memstore"
	"github.com/annalsdb/annals/server"
)

// jsonAppend is one POST /v1/streams/{path} and its answer.
type jsonAppend struct {
	path, contentType, body string
	header                  http.Header
	// chunked sends the body without a Content-Length.
	chunked bool
}

type jsonAnswer struct {
	status int
	header http.Header
	body   []byte
}

func (a jsonAnswer) decode(t *testing.T, v any) {
	t.Helper()
	dec := json.NewDecoder(bytes.NewReader(a.body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		t.Fatalf("answer %d %s: %v", a.status, a.body, err)
	}
}

// append sends a; a failure to send is an error of t (it may be called from any goroutine)
// and a zero answer.
func (f *fixture) append(t *testing.T, a jsonAppend) jsonAnswer {
	t.Helper()
	if a.contentType == "" {
		a.contentType = "application/json"
	}
	var body io.Reader = strings.NewReader(a.body)
	if a.chunked {
		body = io.MultiReader(body) // no length known: chunked
	}
	req, err := http.NewRequestWithContext(t.Context(), "POST", f.url+"/v1/streams/"+a.path, body)
	if err != nil {
		t.Error(err)
		return jsonAnswer{}
	}
	req.Header.Set("Content-Type", a.contentType)
	for k, v := range a.header {
		req.Header[k] = v
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Error(err)
		return jsonAnswer{}
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	if err != nil {
		t.Error(err)
	}
	return jsonAnswer{status: res.StatusCode, header: res.Header, body: b}
}

func expect(v string) http.Header { return http.Header{"Annals-Expected-Revision": {v}} }

// readStream returns the events of stream in the store, failing on an error.
func readStream(t *testing.T, s annals.Store, stream string) []annals.RecordedEvent {
	t.Helper()
	var evs []annals.RecordedEvent
	for e, err := range s.ReadStream(t.Context(), stream, nil) {
		if errors.Is(err, annals.ErrStreamNotFound) {
			return nil
		}
		if err != nil {
			t.Fatalf("read %q: %v", stream, err)
		}
		evs = append(evs, e)
	}
	return evs
}

// TestRESTAppend appends through POST /v1/streams/{stream}, with each form of expectation,
// and reads the events back through the store (data byte for byte) and GET (data inlined).
func TestRESTAppend(t *testing.T) {
	f := newFixture(t, nil, nil)
	data := "{ \"sku\" : \"apple\",\n \"qty\": 2, \"big\": 123456789012345678901234567890e-5 }"
	a := f.append(t, jsonAppend{path: "cart-1", header: expect("no-stream"),
		body: `[{"type":"ItemAdded","data":` + data + `,"metadata":{"by":"me"}}, {"type":"Empty"}]`})
	if a.status != http.StatusCreated {
		t.Fatalf("append: %d %s", a.status, a.body)
	}
	var got server.Appended
	a.decode(t, &got)
	if want := (server.Appended{Revision: 1, Position: 2}); got != want {
		t.Errorf("append answered %+v, want %+v", got, want)
	}
	if loc := a.header.Get("Location"); loc != "/v1/streams/cart-1?from=0" {
		t.Errorf("Location %q, want /v1/streams/cart-1?from=0", loc)
	}
	if ct := a.header.Get("Content-Type"); ct != "application/json" {
		t.Errorf("Content-Type %q", ct)
	}
	evs := readStream(t, f.store, "cart-1")
	if len(evs) != 2 {
		t.Fatalf("read %d events, want 2", len(evs))
	}
	if string(evs[0].Data) != data || string(evs[0].Metadata) != `{"by":"me"}` || evs[0].ContentType != annals.ContentTypeJSON || evs[0].Type != "ItemAdded" {
		t.Errorf("stored %q %q %q %q; want the bytes as sent, application/json", evs[0].Type, evs[0].ContentType, evs[0].Data, evs[0].Metadata)
	}
	if evs[1].Data != nil || evs[1].Metadata != nil || evs[0].ID.IsZero() || evs[0].ID == evs[1].ID {
		t.Errorf("stored %+v: want no data, no metadata, generated ids", evs)
	}

	res, err := http.Get(f.url + "/v1/streams/cart-1")
	if err != nil {
		t.Fatal(err)
	}
	var page server.Page
	err = json.NewDecoder(res.Body).Decode(&page)
	res.Body.Close()
	if err != nil {
		t.Fatal(err)
	}
	var compact bytes.Buffer
	_ = json.Compact(&compact, []byte(data))
	if len(page.Events) != 2 || string(page.Events[0].Data) != compact.String() || string(page.Events[0].Metadata) != `{"by":"me"}` {
		t.Errorf("GET gave %+v", page.Events)
	}

	// Every form of expectation, in the header or the query.
	for _, tc := range []struct {
		query  string
		header http.Header
		want   uint64
	}{
		{"?expected=1", nil, 2},
		{"", expect("2"), 3},
		{"?expected=exists", nil, 4},
		{"?expected=any", expect("any"), 5},
		{"", nil, 6},
		{"?expected=6", expect("6"), 7},
	} {
		a := f.append(t, jsonAppend{path: "cart-1" + tc.query, header: tc.header, body: `[{"type":"E","data":1}]`})
		if a.status != http.StatusCreated {
			t.Fatalf("append %s %v: %d %s", tc.query, tc.header, a.status, a.body)
		}
		var got server.Appended
		a.decode(t, &got)
		if got.Revision != tc.want {
			t.Errorf("append %s %v: revision %d, want %d", tc.query, tc.header, got.Revision, tc.want)
		}
	}
	st, err := f.srv.Stats(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if st.Totals.Appends != 7 || st.Totals.EventsAppended != 8 {
		t.Errorf("stats counted %d appends of %d events, want 7 of 8", st.Totals.Appends, st.Totals.EventsAppended)
	}
}

// TestRESTAppendBadInput sends each kind of bad input: the status from the error table, a
// message that names the problem, and nothing written.
func TestRESTAppendBadInput(t *testing.T) {
	f := newFixture(t, nil, &server.Options{MaxRequestBytes: 4096})
	ok := `[{"type":"E"}]`
	for _, tc := range []struct {
		name string
		req  jsonAppend
		want int
		msg  string
	}{
		{"not an array", jsonAppend{body: `{"type":"E"}`}, 400, "the body is an object: want a JSON array"},
		{"empty array", jsonAppend{body: `[]`}, 400, "has no events"},
		{"a number past float64", jsonAppend{body: `1e700`}, 400, "the body is a number: want a JSON array"},
		{"an event a number past float64", jsonAppend{body: `[1e700]`}, 400, `event 0 of the append to "bad": annals: invalid argument: a number: want an object`},
		{"empty body", jsonAppend{body: ``}, 400, "the body ends before its JSON does"},
		{"unfinished array", jsonAppend{body: `[{"type":"E"}`}, 400, "the array of events: the body ends before its JSON does"},
		{"opened array", jsonAppend{body: `[`}, 400, "the array of events: the body ends before its JSON does"},
		{"trailing data", jsonAppend{body: ok + ` []`}, 400, "an array after the array of events"},
		{"trailing garbage", jsonAppend{body: ok + `x`}, 400, "invalid JSON at or after byte 14"},
		{"second value", jsonAppend{body: ok + ok}, 400, "after the array"},
		{"event not an object", jsonAppend{body: `[{"type":"E"},"x"]`}, 400, `event 1 of the append to "bad": annals: invalid argument: a string: want an object`},
		{"unknown field", jsonAppend{body: `[{"type":"E"},{"type":"E","dat":{}}]`}, 400, `event 1 of the append to "bad": annals: invalid argument: unknown field "dat"`},
		{"field in capitals", jsonAppend{body: `[{"Type":"E"}]`}, 400, `event 0 of the append to "bad": annals: invalid argument: unknown field "Type"`},
		{"repeated field", jsonAppend{body: `[{"type":"E","type":"F"}]`}, 400, `event 0 of the append to "bad": annals: invalid argument: field "type" given twice`},
		{"missing type", jsonAppend{body: `[{"type":"E"},{"data":{}}]`}, 400, `event 1 of the append to "bad": annals: invalid argument: missing field "type"`},
		{"empty type", jsonAppend{body: `[{"type":""}]`}, 400, `event 0 of the append to "bad": annals: invalid argument: missing field "type"`},
		{"type a number", jsonAppend{body: `[{"type":5}]`}, 400, `event 0 of the append to "bad": annals: invalid argument: field "type" is a number: want a string`},
		{"type null", jsonAppend{body: `[{"type":null}]`}, 400, `field "type" is null: want a string`},
		{"type an object", jsonAppend{body: `[{"type":{"a":1}}]`}, 400, `field "type" is an object: want a string`},
		{"type with a control character", jsonAppend{body: `[{"type":"E\u0001"}]`}, 400, `event 0 of the append to "bad": annals: invalid argument: event type "E\x01" has a control character`},
		{"id not a UUID", jsonAppend{body: `[{"type":"E","id":"42"}]`}, 400, `event 0 of the append to "bad": annals: invalid argument: event id "42" is not a UUID`},
		{"id a number", jsonAppend{body: `[{"type":"E","id":42}]`}, 400, `field "id" is a number: want a string`},
		{"repeated id", jsonAppend{body: `[{"type":"E","id":"0190f2b4-5c1e-7a3b-9d2e-4f5a6b7c8d9e"},{"type":"E","id":"0190f2b4-5c1e-7a3b-9d2e-4f5a6b7c8d9e"}]`}, 400, `event 1 of the append to "bad" repeats id`},
		{"data not JSON", jsonAppend{body: `[{"type":"E","data":{sku:1}}]`}, 400, `event 0 of the append to "bad": annals: invalid argument: field "data": invalid JSON at or after byte 20`},
		{"data cut short", jsonAppend{body: `[{"type":"E","data":{"a":`}, 400, `field "data": the body ends before its JSON does`},
		{"metadata not JSON", jsonAppend{body: `[{"type":"E","metadata":tru}]`}, 400, `field "metadata": invalid JSON`},
		{"data not UTF-8", jsonAppend{body: "[{\"type\":\"E\",\"data\":\"\xff\"}]"}, 400, `field "data" is not valid UTF-8`},
		{"type not UTF-8", jsonAppend{body: "[{\"type\":\"E\xff\"}]"}, 400, `field "type" is not valid UTF-8`},
		{"expected not a revision", jsonAppend{body: ok, header: expect("seven")}, 400, `header Annals-Expected-Revision: annals: invalid argument: expected revision "seven": want any, no-stream, exists or a revision number`},
		{"expected negative", jsonAppend{path: "?expected=-1", body: ok}, 400, `query parameter expected: annals: invalid argument: expected revision "-1"`},
		{"expected too large", jsonAppend{path: "?expected=9223372036854775808", body: ok}, 400, `expected revision "9223372036854775808"`},
		{"expected twice", jsonAppend{path: "?expected=1&expected=1", body: ok}, 400, `query parameter expected given 2 times`},
		{"expected header twice", jsonAppend{body: ok, header: http.Header{"Annals-Expected-Revision": {"1", "2"}}}, 400, `header Annals-Expected-Revision given 2 times`},
		{"expectations disagree", jsonAppend{path: "?expected=no-stream", body: ok, header: expect("any")}, 400, `header Annals-Expected-Revision "any" and query parameter expected "no-stream" disagree`},
		{"unknown query parameter", jsonAppend{path: "?expect=any", body: ok}, 400, `unknown query parameter "expect"`},
		{"text/plain", jsonAppend{body: ok, contentType: "text/plain"}, 415, `Content-Type "text/plain": want application/json`},
		{"Connect's JSON", jsonAppend{body: ok, contentType: "application/connect+json"}, 415, `want application/json`},
		{"latin-1", jsonAppend{body: ok, contentType: "application/json; charset=latin1"}, 415, `want application/json`},
		{"compressed", jsonAppend{body: ok, header: http.Header{"Content-Encoding": {"gzip"}}}, 415, `Content-Encoding "gzip": send the body uncompressed`},
		{"too large", jsonAppend{body: `[{"type":"E","data":"` + strings.Repeat("x", 5000) + `"}]`}, 413, `request body of 5024 bytes is over the server's limit of 4096 bytes (max-request-bytes)`},
		{"too large, chunked", jsonAppend{chunked: true, body: `[{"type":"E","data":"` + strings.Repeat("x", 5000) + `"}]`}, 413, `request body is over the server's limit of 4096 bytes`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if !strings.HasPrefix(tc.req.path, "/") {
				tc.req.path = "bad" + tc.req.path
			}
			a := f.append(t, tc.req)
			var body server.ErrorBody
			a.decode(t, &body)
			if a.status != tc.want || !strings.Contains(body.Message, tc.msg) {
				t.Errorf("got %d %s\nwant %d with message containing %s", a.status, a.body, tc.want, tc.msg)
			}
			if body.Code != "invalid_argument" {
				t.Errorf("code %q, want invalid_argument", body.Code)
			}
		})
	}
	if evs := readStream(t, f.store, "bad"); len(evs) != 0 {
		t.Errorf("bad input wrote %d events", len(evs))
	}
	a := f.append(t, jsonAppend{path: "bad", body: ok})
	if a.status != http.StatusCreated {
		t.Errorf("a good append after the bad ones: %d %s", a.status, a.body)
	}
}

// TestRESTAppendRefused checks the store's refusals: a conflict is 409 with the stream's
// actual revision in the body, a tombstoned stream 410, a closed store 503.
func TestRESTAppendRefused(t *testing.T) {
	f := newFixture(t, nil, nil)
	mustAppend(t, f.store, "order-1", 1)
	for _, tc := range []struct {
		expected string
		want     server.ErrorBody
	}{
		{"7", server.ErrorBody{Code: "aborted", Reason: "WRONG_EXPECTED_VERSION", Stream: "order-1", Expected: "7", Actual: "0",
			Message: `annals: wrong expected version for stream "order-1": expected 7, actual 0`}},
		{"no-stream", server.ErrorBody{Code: "aborted", Reason: "WRONG_EXPECTED_VERSION", Stream: "order-1", Expected: "no-stream", Actual: "0",
			Message: `annals: wrong expected version for stream "order-1": expected no-stream, actual 0`}},
	} {
		a := f.append(t, jsonAppend{path: "order-1", header: expect(tc.expected), body: `[{"type":"OrderShipped"}]`})
		var got server.ErrorBody
		a.decode(t, &got)
		if a.status != http.StatusConflict || got != tc.want {
			t.Errorf("expected %s: got %d %+v, want 409 %+v", tc.expected, a.status, got, tc.want)
		}
	}
	a := f.append(t, jsonAppend{path: "order-2?expected=exists", body: `[{"type":"E"}]`})
	var got server.ErrorBody
	a.decode(t, &got)
	if want := "actual no-stream"; a.status != http.StatusConflict || got.Actual != "no-stream" || !strings.Contains(got.Message, want) {
		t.Errorf("exists on a new stream: got %d %+v", a.status, got)
	}

	if _, err := f.store.Tombstone(t.Context(), "order-1", annals.Any); err != nil {
		t.Fatal(err)
	}
	a = f.append(t, jsonAppend{path: "order-1", body: `[{"type":"E"}]`})
	if a.decode(t, &got); a.status != http.StatusGone || got.Reason != "STREAM_DELETED" {
		t.Errorf("append to a tombstoned stream: got %d %s, want 410 STREAM_DELETED", a.status, a.body)
	}
	f.store.Close()
	a = f.append(t, jsonAppend{path: "order-3", body: `[{"type":"E"}]`})
	if a.decode(t, &got); a.status != http.StatusServiceUnavailable || got.Reason != "CLOSED" {
		t.Errorf("append to a closed store: got %d %s, want 503 CLOSED", a.status, a.body)
	}
}

// TestRESTAppendAuthorize checks that the hook sees a JSON append as OpWrite on its stream,
// only once the input is known to be good, and that its refusal is the table's status.
func TestRESTAppendAuthorize(t *testing.T) {
	var mu sync.Mutex
	var seen []server.Access
	f := newFixture(t, nil, &server.Options{Authorize: func(ctx context.Context, a server.Access) error {
		mu.Lock()
		seen = append(seen, a)
		mu.Unlock()
		switch a.Stream {
		case "secret-1":
			return fmt.Errorf("%w: %s on %s", server.ErrPermissionDenied, a.Op, a.Stream)
		case "anon-1":
			return server.ErrUnauthenticated
		}
		return nil
	}, Limits: annals.Limits{MaxEventSize: 100}})
	for _, tc := range []struct {
		path, body string
		want       int
	}{
		{"secret-1", `[{"type":"E"}]`, http.StatusForbidden},
		{"anon-1", `[{"type":"E"}]`, http.StatusUnauthorized},
		{"open-1", `[{"type":"E"}]`, http.StatusCreated},
		// Bad input is refused before the hook, whoever asks.
		{"secret-1", `[{"type":"E","dat":1}]`, http.StatusBadRequest},
		{"secret-1?expected=x", `[{"type":"E"}]`, http.StatusBadRequest},
		{"secret-1", `[{"type":"E\u0000"}]`, http.StatusBadRequest},
		{"secret-1", `[{"type":"E","data":"` + strings.Repeat("x", 100) + `"}]`, http.StatusRequestEntityTooLarge},
		{"$secret", `[{"type":"E"}]`, http.StatusBadRequest},
	} {
		if a := f.append(t, jsonAppend{path: tc.path, body: tc.body}); a.status != tc.want {
			t.Errorf("append to %s %s: got %d %s, want %d", tc.path, tc.body, a.status, a.body, tc.want)
		}
	}
	mu.Lock()
	defer mu.Unlock()
	const route = "POST /v1/streams/{stream...}"
	want := []server.Access{
		{Op: server.OpWrite, Procedure: route, Stream: "secret-1"},
		{Op: server.OpWrite, Procedure: route, Stream: "anon-1"},
		{Op: server.OpWrite, Procedure: route, Stream: "open-1"},
	}
	if fmt.Sprint(seen) != fmt.Sprint(want) {
		t.Errorf("Authorize saw\n%v\nwant\n%v", seen, want)
	}
	if evs := readStream(t, f.store, "secret-1"); len(evs) != 0 {
		t.Errorf("refused appends wrote %d events", len(evs))
	}
}

// TestRESTAppendIdempotent retries appends with the same event ids: the retry answers the
// first result and writes nothing.
func TestRESTAppendIdempotent(t *testing.T) {
	f := newFixture(t, nil, nil)
	body := `[{"id":"0190f2b4-5c1e-7a3b-9d2e-4f5a6b7c8d9e","type":"A"},{"id":"0190f2b4-5c1e-7a3b-9d2e-4f5a6b7c8d9f","type":"B"}]`
	for _, expected := range []string{"no-stream", "any"} {
		var first server.Appended
		for i := range 3 {
			a := f.append(t, jsonAppend{path: "pay-" + expected, header: expect(expected), body: body})
			if a.status != http.StatusCreated {
				t.Fatalf("try %d with %s: %d %s", i, expected, a.status, a.body)
			}
			var got server.Appended
			a.decode(t, &got)
			if i == 0 {
				first = got
			} else if got != first {
				t.Errorf("try %d with %s answered %+v, the first %+v", i, expected, got, first)
			}
		}
		evs := readStream(t, f.store, "pay-"+expected)
		if len(evs) != 2 || evs[0].ID.String() != "0190f2b4-5c1e-7a3b-9d2e-4f5a6b7c8d9e" {
			t.Errorf("%s: the stream holds %d events, want the 2 sent once", expected, len(evs))
		}
	}
}

// TestRESTAppendConcurrent appends from many goroutines at once, to shared and own streams:
// every append succeeds once, and the revisions of each stream are contiguous.
func TestRESTAppendConcurrent(t *testing.T) {
	f := newFixture(t, nil, nil)
	const writers, each = 16, 10
	var wg sync.WaitGroup
	errs := make(chan string, writers*each)
	for w := range writers {
		wg.Go(func() {
			for i := range each {
				stream := fmt.Sprintf("own-%d", w)
				header := expect(fmt.Sprint(i - 1))
				if i == 0 {
					header = expect("no-stream")
				}
				if i%2 == 1 {
					stream, header = "shared", nil
				}
				a := f.append(t, jsonAppend{path: stream, header: header, body: fmt.Sprintf(`[{"type":"E","data":{"w":%d,"i":%d}},{"type":"F"}]`, w, i)})
				if a.status != http.StatusCreated {
					errs <- fmt.Sprintf("writer %d append %d: %d %s", w, i, a.status, a.body)
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for e := range errs {
		t.Error(e)
	}
	check := func(stream string, n int) {
		evs := readStream(t, f.store, stream)
		if len(evs) != n {
			t.Errorf("%s holds %d events, want %d", stream, len(evs), n)
		}
		for i, e := range evs {
			if e.Revision != uint64(i) || (i%2 == 1) != (e.Type == "F") {
				t.Errorf("%s: event %d has revision %d, type %s", stream, i, e.Revision, e.Type)
			}
		}
	}
	check("shared", writers*each)
	for w := range writers {
		check(fmt.Sprintf("own-%d", w), each)
	}
}

// TestRESTAppendHostile sends what an attacker would: numbers no machine type holds, JSON
// nested past any parser's patience, NUL bytes and path tricks in the stream id.
func TestRESTAppendHostile(t *testing.T) {
	f := newFixture(t, nil, nil)
	huge := `{"n":1e99999999,"m":-123456789012345678901234567890123456789,"f":0.` + strings.Repeat("9", 1000) + `}`
	if a := f.append(t, jsonAppend{path: "h-1", body: `[{"type":"E","data":` + huge + `,"metadata":12345678901234567890123}]`}); a.status != http.StatusCreated {
		t.Fatalf("huge numbers: %d %s", a.status, a.body)
	}
	if evs := readStream(t, f.store, "h-1"); len(evs) != 1 || string(evs[0].Data) != huge || string(evs[0].Metadata) != "12345678901234567890123" {
		t.Errorf("huge numbers stored as %q, %q", evs[0].Data, evs[0].Metadata)
	}
	res, err := http.Get(f.url + "/v1/streams/h-1")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(res.Body)
	res.Body.Close()
	if !bytes.Contains(b, []byte(`"data":`+huge)) {
		t.Errorf("GET does not give the huge numbers back as sent: %.200s", b)
	}

	nested := func(n int) string { return strings.Repeat("[", n) + strings.Repeat("]", n) }
	if a := f.append(t, jsonAppend{path: "h-2", body: `[{"type":"E","data":` + nested(1000) + `}]`}); a.status != http.StatusCreated {
		t.Errorf("1,000 levels of nesting: %d %s", a.status, a.body)
	}
	a := f.append(t, jsonAppend{path: "h-2", body: `[{"type":"E","data":` + nested(100_000) + `}]`})
	if a.status != http.StatusBadRequest || !bytes.Contains(a.body, []byte("exceeded max depth")) {
		t.Errorf("100,000 levels of nesting: %d %.300s", a.status, a.body)
	}

	for _, tc := range []struct {
		path, stream string
		want         int
	}{
		{"a/b/c", "a/b/c", http.StatusCreated},
		{"a%2Fb", "a/b", http.StatusCreated},
		{"caf%C3%A9-1", "café-1", http.StatusCreated},
		{"n%00ul", "", http.StatusBadRequest},
		{"n%01", "", http.StatusBadRequest},
		{"%FF", "", http.StatusBadRequest},
		{"", "", http.StatusBadRequest},
		{"%24all", "", http.StatusBadRequest},
		{strings.Repeat("s", 300), "", http.StatusBadRequest},
	} {
		a := f.append(t, jsonAppend{path: tc.path, body: `[{"type":"E"}]`})
		if a.status != tc.want {
			t.Errorf("stream path %.40q: got %d %s, want %d", tc.path, a.status, a.body, tc.want)
		}
		if tc.stream != "" && len(readStream(t, f.store, tc.stream)) != 1 {
			t.Errorf("stream path %q: stream %q does not hold the event", tc.path, tc.stream)
		}
	}
}

// TestRESTAppendBudget checks that a JSON append takes its body's share of the request
// budget: with the budget held by another request's body (chunked, so it takes the largest
// share, all of this budget), it is refused with 429.
func TestRESTAppendBudget(t *testing.T) {
	f := newFixture(t, nil, &server.Options{MaxRequestBytes: 1000, MaxRequestBytesInFlight: 1000, RequestBudgetWait: 1})
	pr, pw := io.Pipe()
	req, _ := http.NewRequestWithContext(t.Context(), "POST", f.url+"/v1/streams/slow", pr)
	req.Header.Set("Content-Type", "application/json")
	done := make(chan int)
	go func() {
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			done <- 0
			return
		}
		res.Body.Close()
		done <- res.StatusCode
	}()
	if _, err := pw.Write([]byte(`[{"type":"E","data":"`)); err != nil {
		t.Fatal(err)
	}
	testwait.Until(t, "the slow append to hold its share", func() bool {
		st, err := f.srv.Stats(t.Context())
		return err == nil && st.RequestBytesInFlight == st.RequestBytesBudget
	})
	a := f.append(t, jsonAppend{path: "fast", body: `[{"type":"E"}]`})
	var got server.ErrorBody
	if a.decode(t, &got); a.status != http.StatusTooManyRequests || got.Code != "resource_exhausted" {
		t.Errorf("append with the budget held: %d %s, want 429 resource_exhausted", a.status, a.body)
	}
	rest := strings.Repeat("x", 900-len(`[{"type":"E","data":"`)-len(`"}]`)) + `"}]`
	if _, err := pw.Write([]byte(rest)); err != nil {
		t.Fatal(err)
	}
	pw.Close()
	if status := testwait.Recv(t, "the slow append's answer", done); status != http.StatusCreated {
		t.Errorf("the slow append: status %d", status)
	}
	if a := f.append(t, jsonAppend{path: "fast", body: `[{"type":"E"}]`}); a.status != http.StatusCreated {
		t.Errorf("append once the budget is free: %d %s", a.status, a.body)
	}
}

// TestRESTAppendMetrics checks that JSON appends count in the Prometheus metrics as RPC
// appends do, and not as reads.
func TestRESTAppendMetrics(t *testing.T) {
	store := memstore.New(nil)
	defer store.Close()
	m := server.NewMetrics(nil)
	srv := server.New(store, nil)
	defer srv.Close()
	hs := httptest.NewServer(m.Middleware(srv.Handler()))
	defer hs.Close()
	for _, body := range []string{`[{"type":"E","data":{"a":1}},{"type":"F","metadata":[]}]`, `[{"type":"E"}]`, `[]`} {
		req, _ := http.NewRequest("POST", hs.URL+"/v1/streams/m-1?expected=no-stream", strings.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
	}
	w := httptest.NewRecorder()
	m.Handler().ServeHTTP(w, httptest.NewRequest("GET", "/metrics", nil))
	got := w.Body.String()
	for _, want := range []string{
		`annals_appends_total{code="ok"} 1`,
		`annals_appends_total{code="aborted"} 1`,
		`annals_appends_total{code="invalid_argument"} 1`,
		"annals_appended_events_total 2",
		"annals_appended_bytes_total 9",
		"annals_append_duration_seconds_count 3",
		`annals_http_requests_total{code="201",route="json_append"} 1`,
		`annals_http_requests_total{code="409",route="json_append"} 1`,
		`annals_http_requests_total{code="400",route="json_append"} 1`,
	} {
		if !strings.Contains(got, want) {
			t.Errorf("no %q in the metrics", want)
		}
	}
	if strings.Contains(got, "annals_reads_total{") {
		t.Errorf("JSON appends counted as reads:\n%s", got)
	}
}

// TestRESTAppendAuth runs the JSON append behind server.Auth: no token is 401, a token
// without write on the stream 403, both with the plain routes' error body; a writer appends.
func TestRESTAppendAuth(t *testing.T) {
	auth, err := server.NewAuth(&server.AuthOptions{
		Tokens: []server.APIToken{{Name: "bob", SHA256: server.HashToken("r"), Roles: []string{"reader"}}, {Name: "ann", SHA256: server.HashToken("w"), Roles: []string{"writer"}}},
		Roles:  map[string][]server.Grant{"reader": {{Op: server.OpRead}}, "writer": {{Op: server.OpWrite, Prefix: "cart-"}}},
	})
	if err != nil {
		t.Fatal(err)
	}
	store := memstore.New(nil)
	defer store.Close()
	srv := server.New(store, &server.Options{Authorize: auth.Authorize})
	defer srv.Close()
	hs := httptest.NewServer(auth.Middleware(srv.Handler()))
	defer hs.Close()
	for _, tc := range []struct {
		token, stream string
		want          int
		reason        string
	}{
		{"", "cart-1", http.StatusUnauthorized, "UNAUTHENTICATED"},
		{"r", "cart-1", http.StatusForbidden, "PERMISSION_DENIED"},
		{"w", "order-1", http.StatusForbidden, "PERMISSION_DENIED"},
		{"w", "cart-1", http.StatusCreated, ""},
	} {
		req, _ := http.NewRequest("POST", hs.URL+"/v1/streams/"+tc.stream, strings.NewReader(`[{"type":"E"}]`))
		req.Header.Set("Content-Type", "application/json")
		if tc.token != "" {
			req.Header.Set("Authorization", "Bearer "+tc.token)
		}
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(res.Body)
		res.Body.Close()
		if res.StatusCode != tc.want {
			t.Errorf("token %q, stream %s: got %d %s, want %d", tc.token, tc.stream, res.StatusCode, b, tc.want)
			continue
		}
		if tc.reason == "" {
			continue
		}
		a := jsonAnswer{status: res.StatusCode, body: b}
		var body server.ErrorBody
		if a.decode(t, &body); body.Reason != tc.reason {
			t.Errorf("token %q, stream %s: reason %q, want %q", tc.token, tc.stream, body.Reason, tc.reason)
		}
	}
}

// FuzzRESTAppend feeds arbitrary bodies and expectations to POST /v1/streams/{stream}. The
// server never answers 5xx (a bad body is the client's fault), its error bodies are JSON with
// a code, a refused append writes nothing, and a successful one stores each event's data and
// metadata as bytes of the body, with a type.
func FuzzRESTAppend(f *testing.F) {
	for _, seed := range []string{
		`[{"type":"OrderPlaced","data":{"total":42}}]`,
		`[{"id":"0190f2b4-5c1e-7a3b-9d2e-4f5a6b7c8d9e","type":"E","data":[1,2,{"a":null}],"metadata":"m"},{"type":"F","data":1e999}]`,
		`[{"type":"E","type":"F"}]`, `[{"type":"E","data":{"a":}}]`, `[{"type":"E"}] x`, `[]`, `{}`, `null`, ``,
		`[{"type":"\u0000"}]`, `[{"type":"E","id":""}]`, "[{\"type\":\"E\",\"data\":\"\xff\"}]",
	} {
		f.Add("any", []byte(seed))
	}
	f.Add("no-stream", []byte(`[{"type":"E"}]`))
	f.Add("0", []byte(`[{"type":"E"}]`))
	store := memstore.New(nil)
	f.Cleanup(func() { store.Close() })
	h := server.New(store, &server.Options{MaxRequestBytes: 64 << 10}).Handler()
	count := func() int {
		n := 0
		for _, err := range store.ReadAll(context.Background(), nil) {
			if err != nil {
				f.Fatal(err)
			}
			n++
		}
		return n
	}
	f.Fuzz(func(t *testing.T, expected string, body []byte) {
		before := count()
		req := httptest.NewRequest("POST", "/v1/streams/fuzz-1", bytes.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Annals-Expected-Revision", expected)
		w := httptest.NewRecorder()
		h.ServeHTTP(w, req)
		if w.Code >= 500 {
			t.Fatalf("%q: %d %s", body, w.Code, w.Body)
		}
		if w.Code != http.StatusCreated {
			var e server.ErrorBody
			if err := json.Unmarshal(w.Body.Bytes(), &e); err != nil || e.Code == "" {
				t.Fatalf("%q: error body %s: %v", body, w.Body, err)
			}
			if n := count(); n != before {
				t.Fatalf("%q refused with %d, but the log went from %d to %d events", body, w.Code, before, n)
			}
			return
		}
		var got server.Appended
		if err := json.Unmarshal(w.Body.Bytes(), &got); err != nil {
			t.Fatal(err)
		}
		for e, err := range store.ReadAll(t.Context(), &annals.ReadOptions{From: got.Position, Backwards: true, Limit: count() - before}) {
			if err != nil {
				t.Fatal(err)
			}
			if e.Type == "" || !bytes.Contains(body, e.Data) || !bytes.Contains(body, e.Metadata) || (len(e.Data) > 0 && !json.Valid(e.Data)) {
				t.Fatalf("%q stored %+v", body, e)
			}
		}
	})
}

// BenchmarkJSONAppend compares the JSON append with Connect's JSON Append (base64 data) for
// the same events, one client over loopback HTTP/1.1 to a memstore: the cost of the two
// decoders and their HTTP paths.
func BenchmarkJSONAppend(b *testing.B) {
	for _, n := range []int{1, 100} {
		data := `{"sku":"apple","qty":2,"note":"` + strings.Repeat("x", 64) + `"}`
		var rest, connect strings.Builder
		rest.WriteString("[")
		connect.WriteString(`{"stream":"s","events":[`)
		for i := range n {
			if i > 0 {
				rest.WriteString(",")
				connect.WriteString(",")
			}
			fmt.Fprintf(&rest, `{"type":"ItemAdded","data":%s}`, data)
			fmt.Fprintf(&connect, `{"type":"ItemAdded","data":"%s"}`, base64.StdEncoding.EncodeToString([]byte(data)))
		}
		rest.WriteString("]")
		connect.WriteString("]}")
		for _, tc := range []struct{ name, path, body string }{
			{"rest", "/v1/streams/s", rest.String()},
			{"connect-json", "/annals.v1.EventStoreService/Append", connect.String()},
		} {
			b.Run(fmt.Sprintf("%d-events/%s", n, tc.name), func(b *testing.B) {
				store := memstore.New(nil)
				defer store.Close()
				srv := server.New(store, nil)
				defer srv.Close()
				hs := httptest.NewServer(srv.Handler())
				defer hs.Close()
				b.SetBytes(int64(len(tc.body)))
				for b.Loop() {
					res, err := http.Post(hs.URL+tc.path, "application/json", strings.NewReader(tc.body))
					if err != nil {
						b.Fatal(err)
					}
					io.Copy(io.Discard, res.Body)
					res.Body.Close()
					if res.StatusCode/100 != 2 {
						b.Fatalf("status %d", res.StatusCode)
					}
				}
			})
		}
	}
}
