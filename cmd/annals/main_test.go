package main

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/annalsdb/annals"
	"github.com/annalsdb/annals/internal/testwait"
	"github.com/google/go-cmp/cmp"
)

func TestAppendRead(t *testing.T) {
	e := newEnv(t)
	const id = "0190f2b4-5c1e-7a3b-9d2e-4f5a6b7c8d9e"
	second := []string{"append", "cart-1", "ItemAdded", `{"sku": "B2"}`, "--expected", "0", "--metadata", `{"by":"me"}`, "--id", id}
	steps := []struct {
		name    string
		args    []string
		keepIDs bool // compare ids as they are (else they read "ID")
		want    string
	}{
		{"append", []string{"append", "cart-1", "ItemAdded", `{"sku":"A1"}`},
			false, "appended 1 event to cart-1: revision 0, position 1\n"},
		{"append with flags", second,
			false, "appended 1 event to cart-1: revision 1, position 2\n"},
		{"repeat is idempotent", second,
			false, "appended 1 event to cart-1: revision 1, position 2\n"},
		{"default data, --json", []string{"append", "cart-1", "ItemRemoved", "--json", "--expected", "exists"},
			false, `{"stream":"cart-1","events":1,"revision":2,"position":3}` + "\n"},
		{"text content type", []string{"append", "note-7", "Noted", "hello <world>", "--content-type", "text/plain", "--expected", "no-stream"},
			false, "appended 1 event to note-7: revision 0, position 4\n"},
		{"read", []string{"read", "cart-1"}, false, "" +
			"1  cart-1@0  ItemAdded  TIME  {\"sku\":\"A1\"}\n" +
			"2  cart-1@1  ItemAdded  TIME  {\"sku\":\"B2\"}\n" +
			"3  cart-1@2  ItemRemoved  TIME  {}\n"},
		{"read --json", []string{"read", "cart-1", "--json"}, false, "" +
			`{"id":"ID","stream":"cart-1","type":"ItemAdded","revision":0,"position":1,"time":"TIME","data":{"sku":"A1"}}` + "\n" +
			`{"id":"ID","stream":"cart-1","type":"ItemAdded","revision":1,"position":2,"time":"TIME","data":{"sku": "B2"},"metadata":{"by":"me"}}` + "\n" +
			`{"id":"ID","stream":"cart-1","type":"ItemRemoved","revision":2,"position":3,"time":"TIME","data":{}}` + "\n"},
		{"read --from --limit", []string{"read", "cart-1", "--from", "1", "--limit", "1", "--json"}, true,
			`{"id":"` + id + `","stream":"cart-1","type":"ItemAdded","revision":1,"position":2,"time":"TIME","data":{"sku": "B2"},"metadata":{"by":"me"}}` + "\n"},
		{"read text as text", []string{"read", "note-7"}, false,
			"4  note-7@0  Noted  TIME  \"hello <world>\"\n"},
		{"read text as JSON", []string{"read", "note-7", "--json"}, false,
			`{"id":"ID","stream":"note-7","type":"Noted","revision":0,"position":4,"time":"TIME","contentType":"text/plain","data":"` +
				base64.StdEncoding.EncodeToString([]byte("hello <world>")) + `"}` + "\n"},
		{"backwards from the end", []string{"read", "cart-1", "--backwards"}, false, "" +
			"3  cart-1@2  ItemRemoved  TIME  {}\n" +
			"2  cart-1@1  ItemAdded  TIME  {\"sku\":\"B2\"}\n" +
			"1  cart-1@0  ItemAdded  TIME  {\"sku\":\"A1\"}\n"},
		{"backwards --from", []string{"read", "cart-1", "--backwards", "--from", "1"}, false, "" +
			"2  cart-1@1  ItemAdded  TIME  {\"sku\":\"B2\"}\n" +
			"1  cart-1@0  ItemAdded  TIME  {\"sku\":\"A1\"}\n"},
		{"$all backwards --limit", []string{"read", "$all", "--backwards", "--limit", "2"}, false, "" +
			"4  note-7@0  Noted  TIME  \"hello <world>\"\n" +
			"3  cart-1@2  ItemRemoved  TIME  {}\n"},
		{"$all by type", []string{"read", "$all", "--type", "ItemAdded"}, false, "" +
			"1  cart-1@0  ItemAdded  TIME  {\"sku\":\"A1\"}\n" +
			"2  cart-1@1  ItemAdded  TIME  {\"sku\":\"B2\"}\n"},
		{"$all by category", []string{"read", "$all", "--category", "note"}, false,
			"4  note-7@0  Noted  TIME  \"hello <world>\"\n"},
		{"$all by prefix from", []string{"read", "$all", "--prefix", "cart-,order-", "--from", "3"}, false,
			"3  cart-1@2  ItemRemoved  TIME  {}\n"},
		{"read --until", []string{"read", "cart-1", "--until", "1"}, false,
			"1  cart-1@0  ItemAdded  TIME  {\"sku\":\"A1\"}\n"},
		{"no argument is $all", []string{"read", "--from", "3"}, false, "" +
			"3  cart-1@2  ItemRemoved  TIME  {}\n" +
			"4  note-7@0  Noted  TIME  \"hello <world>\"\n"},
	}
	for _, s := range steps {
		got := normalize(e.ok("", s.args...), !s.keepIDs)
		if got != s.want {
			t.Errorf("%s: annals %s:\ngot:\n%s\nwant:\n%s", s.name, strings.Join(s.args, " "), got, s.want)
		}
	}

	// --as-of the time of cart-1's second event reads the stream as it was then.
	var secondAt time.Time
	e.withStore(func(s annals.Store) {
		for ev, err := range s.ReadStream(context.Background(), "cart-1", &annals.ReadOptions{From: 1, Limit: 1}) {
			if err != nil {
				t.Fatal(err)
			}
			secondAt = ev.Time
		}
	})
	args := []string{"read", "cart-1", "--as-of", secondAt.Format(time.RFC3339Nano)}
	want := "1  cart-1@0  ItemAdded  TIME  {\"sku\":\"A1\"}\n2  cart-1@1  ItemAdded  TIME  {\"sku\":\"B2\"}\n"
	if got := normalize(e.ok("", args...), true); got != want {
		t.Errorf("annals %s:\ngot:\n%s\nwant:\n%s", strings.Join(args, " "), got, want)
	}
}

func TestAppendStdin(t *testing.T) {
	e := newEnv(t)
	const id = "0190f2b4-5c1e-7a3b-9d2e-4f5a6b7c8d9e"
	in := `{"type":"A","data":{"n": 1}}

{"id":"` + id + `","type":"B","data":[1,2],"metadata":{"m":true}}
{"type":"C","contentType":"text/plain","data":"aGk="}
{"type":"D","stream":"ignored","revision":7,"position":9,"time":"2020-01-01T00:00:00Z"}
`
	if got, want := e.ok(in, "append", "s-1", "-"), "appended 4 events to s-1: revisions 0-3, position 4\n"; got != want {
		t.Errorf("append -: got %q, want %q", got, want)
	}
	got := normalize(e.ok("", "read", "s-1", "--json"), false)
	got = strings.Replace(got, id, "KNOWN", 1)
	got = idRE.ReplaceAllString(got, `"id":"ID"`)
	want := "" +
		`{"id":"ID","stream":"s-1","type":"A","revision":0,"position":1,"time":"TIME","data":{"n": 1}}` + "\n" +
		`{"id":"KNOWN","stream":"s-1","type":"B","revision":1,"position":2,"time":"TIME","data":[1,2],"metadata":{"m":true}}` + "\n" +
		`{"id":"ID","stream":"s-1","type":"C","revision":2,"position":3,"time":"TIME","contentType":"text/plain","data":"aGk="}` + "\n" +
		`{"id":"ID","stream":"s-1","type":"D","revision":3,"position":4,"time":"TIME"}` + "\n"
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("read s-1 --json (-want +got):\n%s", diff)
	}

	// read --json | append - copies a stream, ids included.
	out := e.ok(e.ok("", "read", "s-1", "--json"), "append", "copy-1", "-", "--expected", "no-stream", "--json")
	if want := `{"stream":"copy-1","events":4,"revision":3,"position":8}` + "\n"; out != want {
		t.Errorf("copy: got %q, want %q", out, want)
	}
	src := positionRE.ReplaceAllString(strings.ReplaceAll(e.ok("", "read", "s-1", "--json"), `"stream":"s-1"`, `"stream":"copy-1"`), "P")
	dst := positionRE.ReplaceAllString(e.ok("", "read", "copy-1", "--json"), "P")
	if diff := cmp.Diff(normalize(src, false), normalize(dst, false)); diff != "" {
		t.Errorf("copy differs from source (-source +copy):\n%s", diff)
	}

	// More lines than one append takes: batches, contiguous.
	var big strings.Builder
	for i := range 2500 {
		fmt.Fprintf(&big, `{"type":"Tick","data":{"i":%d}}`+"\n", i)
	}
	if got, want := e.ok(big.String(), "append", "big-1", "-", "--expected", "no-stream"), "appended 2500 events to big-1: revisions 0-2499, position 2508\n"; got != want {
		t.Errorf("append 2500: got %q, want %q", got, want)
	}
	if got, want := e.ok("", "read", "big-1", "--backwards", "--limit", "1"), "2508  big-1@2499  Tick  TIME  {\"i\":2499}\n"; normalize(got, false) != want {
		t.Errorf("last of big-1: got %q, want %q", got, want)
	}
}

func TestExportImport(t *testing.T) {
	src := newEnv(t)
	src.ok("", "append", "cart-1", "ItemAdded", `{"sku": "A1", "note": "<&>"}`, "--metadata", `{"by":"me"}`)
	src.ok("", "append", "order-1", "Placed", `{"total":12}`)
	src.withStore(func(s annals.Store) {
		if _, err := s.SetMetadata(context.Background(), "cart-1", annals.NoStream, annals.StreamMetadata{MaxCount: 100}); err != nil {
			t.Fatal(err)
		}
	})
	b64 := base64.StdEncoding.EncodeToString
	binary := make([]byte, 256)
	for i := range binary {
		binary[i] = byte(i)
	}
	src.ok(``+
		`{"type":"Pretty","contentType":"application/json","data":"`+b64([]byte("{\n  \"a\": 1\n}"))+`"}`+"\n"+
		`{"type":"Empty"}`+"\n"+
		`{"type":"Null","data":null,"metadata":"str"}`+"\n"+
		`{"type":"Blob","contentType":"application/octet-stream","data":"`+b64(binary)+`","metadata":"`+b64([]byte("not json"))+`"}`+"\n",
		"append", "cart-1", "-")
	src.ok("", "append", "order-1", "Paid", `{}`)
	const events = 7 // the user events above; the $meta-cart-1 event is not exported

	dir := t.TempDir()
	f1 := filepath.Join(dir, "one.jsonl")
	if got, want := src.ok("", "export", "--out", f1), "exported 7 events of 2 streams to "+f1+"\n"; got != want {
		t.Errorf("export: got %q, want %q", got, want)
	}
	exported := readFile(t, f1)
	if n := len(lines(exported)); n != events {
		t.Fatalf("export has %d lines, want %d:\n%s", n, events, exported)
	}
	if strings.Contains(exported, "$meta") {
		t.Errorf("export holds system events:\n%s", exported)
	}

	dst := newEnv(t)
	if got, want := dst.ok("", "import", "--in", f1), fmt.Sprintf("imported 7 events from %s: 7 written, 0 already there\n", f1); got != want {
		t.Errorf("first import: got %q, want %q", got, want)
	}
	r := dst.run(context.Background(), "", "export")
	if r.err != nil {
		t.Fatal(r.line)
	}
	if want := "exported 7 events of 2 streams to stdout\n"; r.stderr != want {
		t.Errorf("export to stdout: summary %q on stderr, want %q", r.stderr, want)
	}
	after1 := r.stdout
	// The store assigns time and position anew; everything else comes back byte for byte.
	strip := func(s string) string { return positionRE.ReplaceAllString(normalize(s, false), "P") }
	if diff := cmp.Diff(strip(exported), strip(after1)); diff != "" {
		t.Errorf("export of the import differs (-source +import):\n%s", diff)
	}

	if got, want := dst.ok("", "import", "--in", f1), fmt.Sprintf("imported 7 events from %s: 0 written, 7 already there\n", f1); got != want {
		t.Errorf("second import: got %q, want %q", got, want)
	}
	if diff := cmp.Diff(after1, dst.ok("", "export")); diff != "" {
		t.Errorf("the second import changed the store (-after first +after second):\n%s", diff)
	}

	// From stdin, and an export that grew since the last import: only the new events are
	// written, though they share appends with events already there.
	grown := newEnv(t)
	ls := lines(exported)
	if got, want := grown.ok(strings.Join(ls[:3], "\n"), "import"), "imported 3 events from stdin: 3 written, 0 already there\n"; got != want {
		t.Errorf("import of a part: got %q, want %q", got, want)
	}
	if got, want := grown.ok(exported, "import", "--in", "-"), "imported 7 events from stdin: 4 written, 3 already there\n"; got != want {
		t.Errorf("import of the whole: got %q, want %q", got, want)
	}
	if diff := cmp.Diff(strip(exported), strip(grown.ok("", "export"))); diff != "" {
		t.Errorf("export after a grown import (-source +import):\n%s", diff)
	}

	// A store that holds other events in those streams is a conflict.
	other := newEnv(t)
	other.ok("", "append", "cart-1", "Else")
	r = other.run(context.Background(), "", "import", "--in", f1)
	if r.code != 1 || !strings.Contains(r.line, `conflict: stream "cart-1" already holds another event at revision 0`) {
		t.Errorf("import into a store with other events: exit %d, %s", r.code, r.line)
	}
}

func readFile(t *testing.T, name string) string {
	t.Helper()
	b, err := os.ReadFile(name)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestStreams(t *testing.T) {
	e := newEnv(t)
	e.withStore(func(annals.Store) {}) // an empty store
	if got, want := e.ok("", "streams"), "no streams\n"; got != want {
		t.Errorf("streams of an empty store: got %q, want %q", got, want)
	}
	for _, a := range [][]string{{"cart-1", "A"}, {"order-1", "A"}, {"cart-1", "B"}, {"order-1", "B"}, {"cart-2", "A"}, {"order-1", "C"}} {
		e.ok("", "append", a[0], a[1])
	}
	tests := []struct {
		args []string
		want string
	}{
		{[]string{"streams"}, "" +
			"STREAM   REVISION  EVENTS\n" +
			"cart-1   1         2\n" +
			"cart-2   0         1\n" +
			"order-1  2         3\n"},
		{[]string{"streams", "--prefix", "cart-", "--json"}, "" +
			`{"stream":"cart-1","revision":1,"count":2}` + "\n" +
			`{"stream":"cart-2","revision":0,"count":1}` + "\n"},
		{[]string{"streams", "--limit", "1"}, "" +
			"STREAM  REVISION  EVENTS\n" +
			"cart-1  1         2\n"},
		{[]string{"streams", "--prefix", "nothing", "--json"}, ""},
	}
	for _, tt := range tests {
		if got := e.ok("", tt.args...); got != tt.want {
			t.Errorf("annals %s:\ngot:\n%s\nwant:\n%s", strings.Join(tt.args, " "), got, tt.want)
		}
	}
}

// TestTail runs tail both ways: on the embedded store each Run opens the directory itself and
// tail follows the log without opening it (as with separate processes); on a shared store
// tail subscribes.
func TestTail(t *testing.T) {
	for _, mode := range []struct {
		name   string
		newEnv func(*testing.T) *env
	}{{"separate opens", newEnv}, {"one shared store", newSharedEnv}} {
		t.Run(mode.name, func(t *testing.T) { testTail(t, mode.newEnv) })
	}
}

func testTail(t *testing.T, makeEnv func(*testing.T) *env) {
	t.Run("live until cancelled", func(t *testing.T) {
		e := makeEnv(t)
		e.ok("", "append", "cart-1", "Before")
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		out := &syncBuffer{}
		done := make(chan result, 1)
		go func() { done <- e.runTo(ctx, out, &syncBuffer{}, "", "tail", "$all", "--json") }()

		// tail starts at the end, at a moment the test cannot see: append until an event shows.
		n := 0
		testwait.Until(t, "tail to print an event", func() bool {
			e.ok("", "append", "cart-1", "Live", fmt.Sprintf(`{"n":%d}`, n))
			n++
			return out.String() != ""
		})
		cancel()
		var r result
		select {
		case r = <-done:
		case <-time.After(20 * time.Second):
			t.Fatal("tail did not end when its context was cancelled")
		}
		if r.err != nil {
			t.Fatalf("tail ended with %s, want success", r.line)
		}
		got := lines(out.String())
		first := -1
		for i, l := range got {
			var ev struct {
				Type     string
				Revision uint64
				Data     struct{ N int }
			}
			if err := json.Unmarshal([]byte(l), &ev); err != nil {
				t.Fatalf("line %d: %v: %s", i, err, l)
			}
			if ev.Type != "Live" {
				t.Fatalf("tail printed an event appended before it started: %s", l)
			}
			if first < 0 {
				first = ev.Data.N
			}
			if ev.Data.N != first+i || ev.Revision != uint64(ev.Data.N+1) {
				t.Fatalf("line %d is %s, want the event with n=%d at revision %d", i, l, first+i, first+i+1)
			}
		}
	})

	t.Run("from the start, stops at --limit", func(t *testing.T) {
		e := makeEnv(t)
		e.ok("", "append", "cart-1", "A")
		e.ok("", "append", "cart-2", "X")
		e.ok("", "append", "cart-1", "B")
		out := &syncBuffer{}
		done := make(chan result, 1)
		go func() {
			done <- e.runTo(context.Background(), out, &syncBuffer{}, "", "tail", "cart-1", "--from", "0", "--limit", "3")
		}()
		testwait.Until(t, "tail to print the stored events", func() bool { return len(lines(out.String())) == 2 })
		e.ok("", "append", "cart-1", "C")
		var r result
		select {
		case r = <-done:
		case <-time.After(20 * time.Second):
			t.Fatal("tail did not stop after --limit events")
		}
		if r.err != nil {
			t.Fatal(r.line)
		}
		want := "1  cart-1@0  A  TIME  {}\n3  cart-1@1  B  TIME  {}\n4  cart-1@2  C  TIME  {}\n"
		if got := normalize(r.stdout, false); got != want {
			t.Errorf("got:\n%s\nwant:\n%s", got, want)
		}
	})
}

func TestErrors(t *testing.T) {
	e := newEnv(t)
	e.ok("", "append", "cart-1", "A")
	e.ok("", "append", "cart-1", "B")
	missing := filepath.Join(t.TempDir(), "missing")
	badImport := filepath.Join(t.TempDir(), "bad.jsonl")
	if err := os.WriteFile(badImport, []byte(`{"id":"0190f2b4-5c1e-7a3b-9d2e-4f5a6b7c8d9e","stream":"imp-1","type":"A","revision":0}`+"\n"+`{"stream":"imp-1","type":"B","revision":1}`+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name  string
		stdin string
		args  []string
		code  int
		want  string // a part of the error line
	}{
		{"malformed DATA", "", []string{"append", "cart-1", "A", `{"sku":`}, 2, "DATA is not valid JSON"},
		{"malformed --metadata", "", []string{"append", "cart-1", "A", "--metadata", "{x}"}, 2, "--metadata is not valid JSON"},
		{"malformed line on stdin", "{\"type\":\"A\"}\n{\"type\":\"B\",\"data\":{oops}\n", []string{"append", "new-1", "-"}, 1, "stdin: line 2: not a JSON event object"},
		{"unknown field on stdin", `{"type":"A","payload":{}}`, []string{"append", "new-1", "-"}, 1, `line 1: not a JSON event object: unknown field "payload"`},
		{"no type on stdin", `{"data":{}}`, []string{"append", "new-1", "-"}, 1, `line 1: no "type"`},
		{"bad id on stdin", `{"type":"A","id":"42"}`, []string{"append", "new-1", "-"}, 1, `line 1: event id "42" is not a UUID`},
		{"bad base64 on stdin", `{"type":"A","contentType":"text/plain","data":"%%%"}`, []string{"append", "new-1", "-"}, 1, `"data" is not valid base64`},
		{"JSON where base64 belongs", `{"type":"A","contentType":"application/json","data":{}}`, []string{"append", "new-1", "-"}, 1, `"data" must be a base64 string`},
		{"nothing on stdin", "\n\n", []string{"append", "new-1", "-"}, 1, "no events on stdin"},
		{"DATA after -", "", []string{"append", "new-1", "-", "{}"}, 2, "DATA cannot follow -"},
		{"--id with -", "", []string{"append", "new-1", "-", "--id", "0190f2b4-5c1e-7a3b-9d2e-4f5a6b7c8d9e"}, 2, "--id applies to one event"},
		{"unknown flag", "", []string{"read", "cart-1", "--foo"}, 2, "unknown flag --foo (see 'annals read --help')"},
		{"unknown shorthand flag", "", []string{"streams", "-x"}, 2, "unknown shorthand flag: 'x' in -x (see 'annals streams --help')"},
		{"unknown command", "", []string{"raed"}, 2, `unknown command "raed" (did you mean "read"?`},
		{"bad flag value", "", []string{"read", "cart-1", "--from", "ten"}, 2, `invalid argument "ten" for "--from"`},
		{"negative limit", "", []string{"read", "cart-1", "--limit", "-1"}, 2, "--limit -1"},
		{"bad --as-of", "", []string{"read", "cart-1", "--as-of", "yesterday"}, 2, `--as-of "yesterday": want an RFC 3339 time`},
		{"no arguments", "", []string{"append"}, 2, "missing arguments: want STREAM TYPE [DATA], or STREAM - (see 'annals append --help')"},
		{"missing TYPE", "", []string{"append", "cart-1"}, 2, "missing arguments"},
		{"too many arguments", "", []string{"read", "a", "b"}, 2, "too many arguments"},
		{"argument to streams", "", []string{"streams", "x"}, 2, "too many arguments"},
		{"reserved stream", "", []string{"append", "$x", "A"}, 2, `stream id "$x": names starting with $ are reserved`},
		{"append to $all", "", []string{"append", "$all", "A"}, 2, "$all is the global log"},
		{"empty stream", "", []string{"append", "", "A"}, 2, "empty stream id"},
		{"control character", "", []string{"append", "a\x01b", "A"}, 2, "control character"},
		{"empty stream to read", "", []string{"read", ""}, 2, "empty stream id (for the global log pass '$all'"},
		{"empty type", "", []string{"append", "cart-1", ""}, 2, "empty event TYPE"},
		{"bad --expected", "", []string{"append", "cart-1", "A", "--expected", "latest"}, 2, `--expected: expected revision "latest": want any, no-stream, exists or a revision number`},
		{"negative --expected", "", []string{"append", "cart-1", "A", "--expected", "-2"}, 2, `expected revision "-2"`},
		{"bad --id", "", []string{"append", "cart-1", "A", "--id", "nope"}, 2, `--id: event id "nope" is not a UUID`},
		{"conflict", "", []string{"append", "cart-1", "C", "--expected", "0"}, 1,
			`conflict: stream "cart-1" is at revision 1, expected revision 0 (read the stream, then retry with --expected 1 or --expected any)`},
		{"conflict no-stream", "", []string{"append", "cart-1", "C", "--expected", "no-stream"}, 1, `conflict: stream "cart-1" is at revision 1, expected it not to exist`},
		{"conflict exists", "", []string{"append", "cart-9", "C", "--expected", "exists"}, 1, `conflict: stream "cart-9" does not exist, expected it to exist (read the stream, then retry with --expected no-stream`},
		{"conflict on stdin", `{"type":"C"}`, []string{"append", "cart-1", "-", "--expected", "5"}, 1, `line 1: conflict: stream "cart-1" is at revision 1, expected revision 5`},
		{"stream not found", "", []string{"read", "cart-9"}, 1, `stream "cart-9" not found (see 'annals streams'`},
		{"filter on a stream", "", []string{"read", "cart-1", "--type", "A"}, 2, "apply to $all only"},
		{"filter on a stream, tail", "", []string{"tail", "cart-1", "--category", "cart"}, 2, "apply to $all only"},
		{"empty filter", "", []string{"read", "--type", ""}, 2, "--type needs a value"},
		{"empty filter in a list", "", []string{"read", "--category", "a,,b"}, 2, "filter holds an empty category"},
		{"empty --data", "", []string{"--data", "", "read"}, 2, "empty --data directory (pass --data DIR)"},
		{"empty --data, check", "", []string{"--data", "", "check"}, 2, "empty --data directory"},
		{"read without data", "", []string{"--data", missing, "read", "cart-1"}, 1, "no data directory at " + missing + " (append something first, or pass --data)"},
		{"tail without data", "", []string{"--data", missing, "tail"}, 1, "no data directory at " + missing},
		{"streams without data", "", []string{"--data", missing, "streams"}, 1, "no data directory at " + missing},
		{"export without data", "", []string{"--data", missing, "export"}, 1, "no data directory at " + missing},
		{"check without data", "", []string{"--data", missing, "check"}, 1, "no data directory at " + missing},
		{"export to a missing directory", "", []string{"export", "--out", filepath.Join(missing, "x.jsonl")}, 1, "create export file"},
		{"import of a missing file", "", []string{"import", "--in", filepath.Join(missing, "x.jsonl")}, 1, "no such file"},
		{"import without id", "", []string{"import", "--in", badImport}, 1, `bad.jsonl: line 2: no "id" (import needs the event ids to be idempotent); nothing was imported`},
		{"import without revision", `{"id":"0190f2b4-5c1e-7a3b-9d2e-4f5a6b7c8d9e","stream":"x","type":"A"}`, []string{"import"}, 1, `stdin: line 1: no "revision"`},
		{"import into a system stream", `{"id":"0190f2b4-5c1e-7a3b-9d2e-4f5a6b7c8d9e","stream":"$meta-x","type":"A","revision":0}`, []string{"import"}, 1, "reserved for the system"},
		{"import with a gap", `{"id":"0190f2b4-5c1e-7a3b-9d2e-4f5a6b7c8d9e","stream":"cart-1","type":"A","revision":5}`, []string{"import"}, 1,
			`conflict: the file puts revision 5 of stream "cart-1" after revision 1 here`},
		{"malformed import line", `{"id":`, []string{"import"}, 1, "stdin: line 1: not a JSON event object: unexpected end of JSON"},
		{"bench unknown workload", "", []string{"bench", "--only", "nope"}, 2, "unknown workload"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := e.run(context.Background(), tt.stdin, tt.args...)
			if r.err == nil {
				t.Fatalf("annals %q succeeded, want an error; stdout:\n%s", tt.args, r.stdout)
			}
			if r.code != tt.code {
				t.Errorf("exit status %d, want %d (%s)", r.code, tt.code, r.line)
			}
			if !strings.HasPrefix(r.line, "annals: ") || strings.ContainsAny(r.line, "\n\r") {
				t.Errorf("error line %q: want one line starting \"annals: \"", r.line)
			}
			if strings.HasPrefix(r.line, "annals: annals:") {
				t.Errorf("error line %q repeats the prefix", r.line)
			}
			if !strings.Contains(r.line, tt.want) {
				t.Errorf("error line %q does not hold %q", r.line, tt.want)
			}
			if r.stdout != "" || r.stderr != "" {
				t.Errorf("output besides the error: stdout %q, stderr %q", r.stdout, r.stderr)
			}
		})
	}

	// None of the failed appends wrote anything.
	if got, want := e.ok("", "streams", "--json"), `{"stream":"cart-1","revision":1,"count":2}`+"\n"; got != want {
		t.Errorf("after the errors: streams %q, want %q", got, want)
	}
}

func TestCheck(t *testing.T) {
	if testOpener(t, false) != nil {
		t.Skip("check needs the real filestore")
	}
	tests := []struct {
		name   string
		damage string // the data of the event to damage
	}{
		{"first event", `{"n":"first-event"}`},
		{"last event", `{"n":"last-event"}`}, // looks like a torn tail in the log alone
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t)
			e.ok("", "append", "cart-1", "A", `{"n":"first-event"}`)
			e.ok("", "append", "order-1", "B")
			e.ok("", "append", "cart-1", "C", `{"n":"last-event"}`)
			got := e.ok("", "check")
			if want := "ok: 3 events in 2 streams (system streams included), last position 3; 1 segment, "; !strings.HasPrefix(got, want) || !strings.HasSuffix(got, " of log data, in "+e.dir+"\n") {
				t.Errorf("check: got %q, want %q…", got, want)
			}
			damageLog(t, e.dir, tt.damage)
			r := e.run(context.Background(), "", "check")
			if r.code != 1 || !strings.HasPrefix(r.line, "annals: ") || !strings.Contains(r.line, "data corrupt") || !regexp.MustCompile(`\.log offset \d+`).MatchString(r.line) {
				t.Errorf("check of a damaged log: exit %d, %q; want exit 1 and an error naming the file and offset", r.code, r.line)
			}
			if r.stdout != "" {
				t.Errorf("check of a damaged log printed %q", r.stdout)
			}
		})
	}
}

// damageLog changes one byte of the first place the log files of dir hold needle.
func damageLog(t *testing.T, dir, needle string) {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(dir, "log", "*"))
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range files {
		b, err := os.ReadFile(name)
		if err != nil {
			t.Fatal(err)
		}
		if i := bytes.Index(b, []byte(needle)); i >= 0 {
			f, err := os.OpenFile(name, os.O_WRONLY, 0)
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			if _, err := f.WriteAt([]byte{b[i+1] ^ 0x20}, int64(i+1)); err != nil {
				t.Fatal(err)
			}
			return
		}
	}
	t.Fatalf("no %q in the log files %q", needle, files)
}

func TestDataFromEnv(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "from-env")
	open := testOpener(t, false)
	if open != nil {
		if err := os.Mkdir(dir, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	run := func(args ...string) string {
		var out bytes.Buffer
		m := &Main{Stdout: &out, Args: args, Open: open, Getenv: func(k string) string {
			if k == "ANNALS_DATA" {
				return dir
			}
			return ""
		}}
		if err := m.Run(context.Background()); err != nil {
			t.Fatalf("annals %q: %s", args, errorLine(err))
		}
		return out.String()
	}
	run("append", "cart-1", "A")
	if got, want := run("streams", "--json"), `{"stream":"cart-1","revision":0,"count":1}`+"\n"; got != want {
		t.Errorf("streams in $ANNALS_DATA: got %q, want %q", got, want)
	}
}

func TestErrorLine(t *testing.T) {
	tests := []struct {
		err  error
		want string
	}{
		{errors.New("two\nlines"), "annals: two; lines"},
		{fmt.Errorf("line 3: %w", context.Canceled), "annals: line 3: interrupted"},
		{fmt.Errorf("read: %w", annals.ErrClosed), "annals: read: store closed (run the command again)"},
		{fmt.Errorf("x: %w", &annals.WrongExpectedVersionError{Stream: "s", Expected: annals.NoStream, Actual: annals.Exact(4)}),
			`annals: x: conflict: stream "s" is at revision 4, expected it not to exist (read the stream, then retry with --expected 4 or --expected any)`},
	}
	for _, tt := range tests {
		if got := errorLine(tt.err); got != tt.want {
			t.Errorf("errorLine(%q) = %q, want %q", tt.err, got, tt.want)
		}
	}
}
