package server_test

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"testing"

	"github.com/annalsdb/annals"
	"github.com/annalsdb/annals/codec"
	"github.com/annalsdb/annals/server"
)

// conversation appends, to f's store, one conversation (correlation id cid) across streams:
//
//	cart-1   A (the command's events: A, B)
//	cart-1   B
//	stock-1  C caused by A
//	mail-1   D caused by C
//	secret-1 S caused by A   (the caller of the tests may not read secret-*)
//	mail-2   E caused by S
//
// and events of another conversation between them. It returns the events by letter.
func conversation(t *testing.T, store annals.Store, cid string) map[string]annals.RecordedEvent {
	t.Helper()
	byName := map[string]annals.RecordedEvent{}
	add := func(name, stream, cause string) {
		t.Helper()
		md := codec.Metadata{CorrelationID: cid}
		if cause != "" {
			md.CausationID = byName[cause].ID.String()
		}
		b, err := md.Marshal()
		if err != nil {
			t.Fatal(err)
		}
		other, _ := codec.Metadata{CorrelationID: annals.NewUUID().String()}.Marshal()
		ev := annals.Event{ID: annals.NewUUID(), Type: "T" + name, Metadata: b}
		if _, err := store.Append(t.Context(), stream, annals.Any, ev, annals.Event{Type: "Other", Metadata: other}); err != nil {
			t.Fatal(err)
		}
		for rec, err := range store.ReadStream(t.Context(), stream, nil) {
			if err != nil {
				t.Fatal(err)
			}
			if rec.ID == ev.ID {
				byName[name] = rec
			}
		}
	}
	add("A", "cart-1", "")
	add("B", "cart-1", "")
	add("C", "stock-1", "A")
	add("D", "mail-1", "C")
	add("S", "secret-1", "A")
	add("E", "mail-2", "S")
	return byName
}

// shape writes the tree as "A(C(D)) B E": each node's type without its T, its children in
// parentheses.
func shape(nodes []*server.CorrelationNode) string {
	var parts []string
	for _, n := range nodes {
		s := strings.TrimPrefix(n.Type, "T")
		if len(n.Children) > 0 {
			s += "(" + shape(n.Children) + ")"
		}
		parts = append(parts, s)
	}
	return strings.Join(parts, " ")
}

func denySecret(_ context.Context, a server.Access) error {
	if strings.HasPrefix(a.Stream, "secret-") {
		return fmt.Errorf("%w: test: secret", server.ErrPermissionDenied)
	}
	return nil
}

func TestCorrelationTree(t *testing.T) {
	f := newFixture(t, nil, &server.Options{Authorize: denySecret})
	cid := annals.NewUUID().String()
	ev := conversation(t, f.store, cid)
	c := ev["C"]
	for _, path := range []string{
		fmt.Sprintf("/v1/correlation?event=%s&at=%d", c.ID, c.Position),
		fmt.Sprintf("/v1/correlation?event=%s", c.ID),
		fmt.Sprintf("/v1/correlation?event=%s&at=%d", c.ID, c.Position+1), // a wrong hint: looked for
		"/v1/correlation?correlation=" + cid,
		fmt.Sprintf("/v1/correlation?correlation=%s&at=%d", cid, c.Position),
	} {
		var got server.Correlation
		if code := f.getJSON(t, path, &got); code != http.StatusOK {
			t.Fatalf("GET %s: status %d", path, code)
		}
		if got, want := shape(got.Roots), "A(C(D)) B E"; got != want {
			t.Errorf("GET %s: tree %q, want %q (S hidden, E a root)", path, got, want)
		}
		if got.CorrelationID != cid || got.Events != 5 || got.Bounded || got.Truncated {
			t.Errorf("GET %s: correlation %q, %d events, bounded %v, truncated %v; want %q, 5, false, false",
				path, got.CorrelationID, got.Events, got.Bounded, got.Truncated, cid)
		}
		if d := got.Roots[0].Children[0]; d.Stream != "stock-1" || d.Position != c.Position || d.CausationID != ev["A"].ID.String() || d.Time.IsZero() {
			t.Errorf("GET %s: node C = %+v", path, d)
		}
	}
}

func TestCorrelationBound(t *testing.T) {
	f := newFixture(t, nil, nil)
	cid := annals.NewUUID().String()
	ev := conversation(t, f.store, cid)
	for i := range 20 {
		if _, err := f.store.Append(t.Context(), fmt.Sprintf("noise-%d", i), annals.Any, annals.Event{Type: "Noise"}); err != nil {
			t.Fatal(err)
		}
	}
	var got server.Correlation
	if code := f.getJSON(t, "/v1/correlation?scan=10&correlation="+cid, &got); code != http.StatusOK {
		t.Fatalf("status %d", code)
	}
	if !got.Bounded || got.Events != 0 || got.Scanned != 10 {
		t.Errorf("last 10 events: bounded %v, %d events, %d scanned; want true, 0, 10", got.Bounded, got.Events, got.Scanned)
	}
	got = server.Correlation{}
	if code := f.getJSON(t, "/v1/correlation?scan=1000&correlation="+cid, &got); code != http.StatusOK {
		t.Fatalf("status %d", code)
	}
	if got.Bounded || got.Events != 6 || shape(got.Roots) != "A(C(D) S(E)) B" {
		t.Errorf("whole log: bounded %v, %d events, tree %q; want false, 6, A(C(D) S(E)) B", got.Bounded, got.Events, shape(got.Roots))
	}
	// A window of 4 events around D: D-1 and D backwards, D+1 and D+2 (S) forwards. S's cause
	// lies outside: a root.
	d := ev["D"]
	got = server.Correlation{}
	if code := f.getJSON(t, fmt.Sprintf("/v1/correlation?scan=4&event=%s&at=%d", d.ID, d.Position), &got); code != http.StatusOK {
		t.Fatalf("status %d", code)
	}
	if !got.Bounded || got.From != d.Position-1 || got.To != d.Position+2 || shape(got.Roots) != "D S" {
		t.Errorf("around D: bounded %v, window %d-%d, tree %q; want true, %d-%d, D S", got.Bounded, got.From, got.To, shape(got.Roots), d.Position-1, d.Position+2)
	}
	// An event beyond the last scan events is not found.
	if code := f.getJSON(t, fmt.Sprintf("/v1/correlation?scan=5&event=%s", ev["A"].ID), &got); code != http.StatusNotFound {
		t.Errorf("event outside the window: status %d, want 404", code)
	}
}

func TestCorrelationRefusals(t *testing.T) {
	f := newFixture(t, nil, &server.Options{Authorize: denySecret})
	cid := annals.NewUUID().String()
	ev := conversation(t, f.store, cid)
	var got server.Correlation
	for path, want := range map[string]int{
		"/v1/correlation":                                    http.StatusBadRequest,
		"/v1/correlation?event=x&correlation=y":              http.StatusBadRequest,
		"/v1/correlation?event=not-a-uuid":                   http.StatusBadRequest,
		"/v1/correlation?correlation=c&scan=0":               http.StatusBadRequest,
		"/v1/correlation?correlation=c&scan=100001":          http.StatusBadRequest,
		"/v1/correlation?correlation=c&at=x":                 http.StatusBadRequest,
		"/v1/correlation?correlation=c&limt=1":               http.StatusBadRequest,
		"/v1/correlation?event=" + annals.NewUUID().String(): http.StatusNotFound,
		"/v1/correlation?event=" + ev["S"].ID.String():       http.StatusForbidden,
	} {
		if code := f.getJSON(t, path, &got); code != want {
			t.Errorf("GET %s: status %d, want %d", path, code, want)
		}
	}
	anon := newFixture(t, nil, &server.Options{Authorize: func(context.Context, server.Access) error {
		return fmt.Errorf("%w: test: nobody", server.ErrUnauthenticated)
	}})
	conversation(t, anon.store, cid)
	if code := anon.getJSON(t, "/v1/correlation?correlation="+cid, &got); code != http.StatusUnauthorized {
		t.Errorf("no credentials: status %d, want 401", code)
	}
}
