package annals_test

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/annalsdb/annals"
)

func TestUUIDRoundTrip(t *testing.T) {
	seen := map[annals.UUID]bool{}
	for range 100 {
		u := annals.NewUUID()
		if u.IsZero() || seen[u] {
			t.Fatalf("NewUUID gave %s, zero or repeated", u)
		}
		seen[u] = true
		if got := u[6] >> 4; got != 7 {
			t.Fatalf("version %d, want 7", got)
		}
		back, err := annals.ParseUUID(u.String())
		if err != nil || back != u {
			t.Fatalf("ParseUUID(%s) = %s, %v", u, back, err)
		}
	}
}

func TestParseUUIDRejects(t *testing.T) {
	for _, s := range []string{"", "not-a-uuid", "0190f2b4-5c1e-7a3b-9d2e-4f5a6b7c8d9", "0190f2b4x5c1e-7a3b-9d2e-4f5a6b7c8d9e", "0190f2b4-5c1e-7a3b-9d2e-4f5a6b7c8d9g"} {
		if _, err := annals.ParseUUID(s); !errors.Is(err, annals.ErrInvalidArgument) {
			t.Errorf("ParseUUID(%q): got %v, want ErrInvalidArgument", s, err)
		}
	}
}

func TestExpectedRevision(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want annals.ExpectedRevision
	}{
		{"any", annals.Any}, {"no-stream", annals.NoStream}, {"exists", annals.StreamExists}, {"0", annals.Exact(0)}, {"42", annals.Exact(42)},
	} {
		got, err := annals.ParseExpectedRevision(tc.in)
		if err != nil || got != tc.want || got.String() != tc.in {
			t.Errorf("ParseExpectedRevision(%q) = %v, %v; want %v", tc.in, got, err, tc.want)
		}
	}
	for _, bad := range []string{"", "-1", "latest", "9223372036854775808"} {
		if _, err := annals.ParseExpectedRevision(bad); !errors.Is(err, annals.ErrInvalidArgument) {
			t.Errorf("ParseExpectedRevision(%q): got %v, want ErrInvalidArgument", bad, err)
		}
	}
	if err := annals.Exact(1 << 63).Validate(); !errors.Is(err, annals.ErrInvalidArgument) {
		t.Errorf("Exact(1<<63).Validate() = %v, want ErrInvalidArgument", err)
	}
	if err := annals.ExpectedRevision(-4).Validate(); !errors.Is(err, annals.ErrInvalidArgument) {
		t.Errorf("ExpectedRevision(-4).Validate() = %v, want ErrInvalidArgument", err)
	}
}

func TestFilterMatch(t *testing.T) {
	for _, tc := range []struct {
		f           *annals.Filter
		stream, typ string
		want        bool
	}{
		{nil, "$meta-x", "$metadata", true},
		{&annals.Filter{Categories: []string{"cart"}}, "cart-1", "A", true},
		{&annals.Filter{Categories: []string{"cart"}}, "$meta-cart-1", "$metadata", false},
		{&annals.Filter{Categories: []string{"cart"}}, "cartography-1", "A", false},
		{&annals.Filter{StreamPrefixes: []string{"cart"}}, "cartography-1", "A", true},
		{&annals.Filter{EventTypes: []string{"A"}}, "x", "B", false},
		{&annals.Filter{Categories: []string{"cart"}, EventTypes: []string{"A"}}, "cart-1", "A", true},
		{&annals.Filter{Categories: []string{"cart"}, EventTypes: []string{"A"}}, "cart-1", "B", false},
	} {
		if got := tc.f.Match(tc.stream, tc.typ); got != tc.want {
			t.Errorf("%+v.Match(%q, %q) = %v, want %v", tc.f, tc.stream, tc.typ, got, tc.want)
		}
	}
}

func TestStreamMetadataJSON(t *testing.T) {
	m := annals.StreamMetadata{MaxCount: 5, MaxAge: 36 * time.Hour, TruncateBefore: 2, Custom: []byte(`{"owner":"shop"}`)}
	b, err := m.MarshalJSON()
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(b), `"maxAge":"36h0m0s"`) {
		t.Fatalf("marshal: %s lacks maxAge as a duration", b)
	}
	var back annals.StreamMetadata
	if err := back.UnmarshalJSON(b); err != nil {
		t.Fatal(err)
	}
	if back.MaxCount != 5 || back.MaxAge != m.MaxAge || back.TruncateBefore != 2 || string(back.Custom) != `{"owner":"shop"}` {
		t.Fatalf("round trip: got %+v", back)
	}
	for _, bad := range []string{`{"maxAge":"soon"}`, `{"maxAge":"-1h"}`, `[`} {
		if err := back.UnmarshalJSON([]byte(bad)); !errors.Is(err, annals.ErrInvalidArgument) {
			t.Errorf("UnmarshalJSON(%s): got %v, want ErrInvalidArgument", bad, err)
		}
	}
}

func FuzzParseUUID(f *testing.F) {
	f.Add("0190f2b4-5c1e-7a3b-9d2e-4f5a6b7c8d9e")
	f.Add("")
	f.Fuzz(func(t *testing.T, s string) {
		u, err := annals.ParseUUID(s)
		if err == nil && !strings.EqualFold(u.String(), s) {
			t.Fatalf("ParseUUID(%q) = %s", s, u)
		}
	})
}

func FuzzParseExpectedRevision(f *testing.F) {
	for _, s := range []string{"any", "no-stream", "exists", "7", "-3"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		e, err := annals.ParseExpectedRevision(s)
		if err == nil && e.Validate() != nil {
			t.Fatalf("ParseExpectedRevision(%q) = %d, which does not validate", s, e)
		}
	})
}

func FuzzStreamMetadataJSON(f *testing.F) {
	f.Add(`{"maxCount":3,"maxAge":"1h","custom":{"a":1}}`)
	f.Fuzz(func(t *testing.T, s string) {
		var m annals.StreamMetadata
		if err := m.UnmarshalJSON([]byte(s)); err != nil {
			return
		}
		b, err := m.MarshalJSON()
		if err != nil {
			t.Fatalf("marshal of accepted %q: %v", s, err)
		}
		var back annals.StreamMetadata
		if err := back.UnmarshalJSON(b); err != nil {
			t.Fatalf("re-read of %s: %v", b, err)
		}
	})
}

func TestStreamMetadataUnmarshalStrict(t *testing.T) {
	for _, in := range []string{
		`{"maxCont":3}`,
		`{"acl":{"reed":["admin"]}}`,
		`{"maxCount":"3"}`,
		`{"maxAge":"soon"}`,
	} {
		var m annals.StreamMetadata
		err := json.Unmarshal([]byte(in), &m)
		if !errors.Is(err, annals.ErrInvalidArgument) {
			t.Errorf("Unmarshal(%s) = %v, want ErrInvalidArgument", in, err)
		}
	}
	var m annals.StreamMetadata
	if err := json.Unmarshal([]byte(`{"maxCount":3,"maxAge":"1h","acl":{"read":["ops"]},"custom":{"a":1}}`), &m); err != nil {
		t.Fatalf("Unmarshal of a valid metadata: %v", err)
	}
	if m.MaxCount != 3 || m.MaxAge != time.Hour || m.ACL == nil || len(m.ACL.Read) != 1 {
		t.Errorf("Unmarshal = %+v", m)
	}
	var bad annals.StreamMetadata
	if err := json.Unmarshal([]byte(`{"maxCont":3}`), &bad); err == nil || !strings.Contains(err.Error(), "maxCont") {
		t.Errorf("the error %v does not name the unknown field", err)
	}
}

func TestUUIDText(t *testing.T) {
	u := annals.UUID{0x01, 0x90, 0xf2, 0xb4, 0x5c, 0x1e, 0x7a, 0x3b, 0x9d, 0x2e, 0x4f, 0x5a, 0x6b, 0x7c, 0x8d, 0x9e}
	const want = "0190f2b4-5c1e-7a3b-9d2e-4f5a6b7c8d9e"
	if got := u.String(); got != want {
		t.Errorf("String() = %q, want %q", got, want)
	}
	got, err := u.AppendText([]byte("id="))
	if err != nil || string(got) != "id="+want {
		t.Errorf("AppendText = %q, %v; want %q", got, err, "id="+want)
	}
	for range 100 {
		u := annals.NewUUID()
		if back, err := annals.ParseUUID(u.String()); err != nil || back != u {
			t.Fatalf("ParseUUID(%s) = %v, %v", u, back, err)
		}
	}
}
