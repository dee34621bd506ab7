package server

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/annalsdb/annals"
	"github.com/annalsdb/annals/internal/gen/annals/v1/annalsv1connect"
	"github.com/annalsdb/annals/memstore"
	"golang.org/x/crypto/bcrypt"
)

func mustGrants(t *testing.T, ss ...string) []Grant {
	t.Helper()
	var gs []Grant
	for _, s := range ss {
		g, err := ParseGrant(s)
		if err != nil {
			t.Fatal(err)
		}
		gs = append(gs, g)
	}
	return gs
}

func TestParseGrant(t *testing.T) {
	for _, s := range []string{"read", "write:cart-", "*:order-", "admin", "metrics", "metaRead:", "delete:a:b"} {
		g, err := ParseGrant(s)
		if err != nil {
			t.Errorf("ParseGrant(%q): %v", s, err)
			continue
		}
		if got := g.String(); got != strings.TrimSuffix(s, ":") {
			t.Errorf("ParseGrant(%q).String() = %q", s, got)
		}
	}
	for _, s := range []string{"", "reed", "admin:cart-", "metrics:x", "READ"} {
		if _, err := ParseGrant(s); !errors.Is(err, annals.ErrInvalidArgument) {
			t.Errorf("ParseGrant(%q): %v, want ErrInvalidArgument", s, err)
		}
	}
}

func TestNewAuthRefuses(t *testing.T) {
	hash, _ := bcrypt.GenerateFromPassword([]byte("pw"), bcrypt.MinCost)
	good := User{Name: "u", PasswordHash: string(hash)}
	for name, o := range map[string]AuthOptions{
		"user without a name":     {Users: []User{{PasswordHash: string(hash)}}},
		"same name twice":         {Users: []User{good}, Tokens: []APIToken{{Name: "u", SHA256: HashToken("t")}}},
		"hash not bcrypt":         {Users: []User{{Name: "u", PasswordHash: "plain"}}},
		"token hash not hex":      {Tokens: []APIToken{{Name: "t", SHA256: "xyz"}}},
		"token hash too short":    {Tokens: []APIToken{{Name: "t", SHA256: "abcd"}}},
		"undefined role":          {Users: []User{{Name: "u", PasswordHash: string(hash), Roles: []string{"nope"}}}},
		"short signing key":       {SigningKey: []byte("short")},
		"bad grant":               {Roles: map[string][]Grant{"r": {{Op: "fly"}}}},
		"token named like a role": {Roles: map[string][]Grant{"finance": nil}, Tokens: []APIToken{{Name: "finance", SHA256: HashToken("t")}}},
		"token named admin":       {Tokens: []APIToken{{Name: AdminRole, SHA256: HashToken("t")}}},
	} {
		if _, err := NewAuth(&o); !errors.Is(err, annals.ErrInvalidArgument) {
			t.Errorf("%s: %v, want ErrInvalidArgument", name, err)
		}
	}
}

func TestAuthorize(t *testing.T) {
	store := memstore.New(nil)
	defer store.Close()
	ctx := context.Background()
	if _, err := store.Append(ctx, "secret-1", annals.Any, annals.Event{Type: "X"}); err != nil {
		t.Fatal(err)
	}
	if _, err := store.SetMetadata(ctx, "secret-1", annals.Any, annals.StreamMetadata{ACL: &annals.ACL{Read: []string{"auditor", "carol"}, Write: []string{"nobody"}}}); err != nil {
		t.Fatal(err)
	}
	a, err := NewAuth(&AuthOptions{
		Store: store,
		Roles: map[string][]Grant{
			"cart":    mustGrants(t, "read:cart-", "write:cart-", "metaRead:cart-"),
			"all":     mustGrants(t, "*:"),
			"auditor": mustGrants(t, "read:secret-"),
		},
		Tokens: []APIToken{
			{Name: "bob", SHA256: HashToken("bob"), Roles: []string{"cart"}},
			{Name: "carol", SHA256: HashToken("carol"), Roles: []string{"auditor"}},
			{Name: "dave", SHA256: HashToken("dave")},
			{Name: "ops", SHA256: HashToken("ops"), Roles: []string{"all"}},
			{Name: "root", SHA256: HashToken("root"), Roles: []string{AdminRole}},
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	as := func(name string) context.Context {
		p, err := a.verify(name)
		if err != nil {
			t.Fatal(err)
		}
		return context.WithValue(ctx, callerKey{}, p)
	}
	stream := func(op Op, s string) Access { return Access{Op: op, Stream: s} }
	all := func(f *annals.Filter) Access { return Access{Op: OpRead, Filter: f} }
	info := Access{Op: OpRead, Procedure: annalsv1connect.EventStoreServiceServerInfoProcedure}
	acquire := func(name string) Access {
		return Access{Op: OpWrite, Procedure: annalsv1connect.LeaseServiceAcquireProcedure, Lease: name}
	}
	leases := func(prefix string) Access { return Access{Op: OpRead, Procedure: leasesRoute, Lease: prefix} }
	tests := []struct {
		who  string
		acc  Access
		want error
	}{
		{"bob", stream(OpRead, "cart-1"), nil},
		{"bob", stream(OpWrite, "cart-1"), nil},
		{"bob", stream(OpDelete, "cart-1"), ErrPermissionDenied},
		{"bob", stream(OpMetaWrite, "cart-1"), ErrPermissionDenied},
		{"bob", stream(OpRead, "order-1"), ErrPermissionDenied},
		{"bob", stream(OpRead, "cart"), ErrPermissionDenied}, // "cart" does not start with "cart-"
		{"bob", info, nil},
		{"bob", all(nil), ErrPermissionDenied},
		{"bob", all(&annals.Filter{EventTypes: []string{"X"}}), ErrPermissionDenied},
		{"bob", all(&annals.Filter{StreamPrefixes: []string{"cart-42"}}), nil},
		{"bob", all(&annals.Filter{StreamPrefixes: []string{"cart-", "order-"}}), ErrPermissionDenied},
		{"bob", all(&annals.Filter{Categories: []string{"cart"}}), ErrPermissionDenied},
		{"bob", Access{Op: OpRead, Prefix: "cart-4"}, nil},
		{"bob", Access{Op: OpRead, Prefix: ""}, ErrPermissionDenied},
		{"bob", Access{Op: OpAdmin}, ErrPermissionDenied},
		{"ops", stream(OpDelete, "anything"), nil},
		{"ops", all(nil), nil},
		{"ops", Access{Op: OpAdmin}, ErrPermissionDenied},
		// The ACL of secret-1 narrows the grants for read and write: carol (a grant, and named)
		// may read; ops (a grant, not named) may not, nor write (only "nobody"); dave (no
		// grant) may not whatever an ACL says; admin still passes.
		{"carol", stream(OpRead, "secret-1"), nil},
		{"ops", stream(OpRead, "secret-1"), ErrPermissionDenied},
		{"ops", stream(OpWrite, "secret-1"), ErrPermissionDenied},
		{"ops", stream(OpDelete, "secret-1"), nil}, // no delete list: the grants decide
		{"carol", stream(OpRead, "secret-2"), nil}, // no ACL: the grant decides
		{"carol", stream(OpRead, "other-1"), ErrPermissionDenied},
		{"dave", stream(OpRead, "secret-1"), ErrPermissionDenied}, // no grant: an ACL never widens
		{"ops", Access{Op: OpMetrics}, ErrPermissionDenied},       // "*" grants stream operations only
		// Leases: names matched against the grants' prefixes as stream ids are, no ACLs.
		{"bob", acquire("cart-lock"), nil},
		{"bob", acquire("projection/cart"), ErrPermissionDenied},
		{"bob", leases("cart-"), nil},
		{"bob", leases(""), ErrPermissionDenied},
		{"carol", acquire("secret-1"), ErrPermissionDenied}, // read is not write
		{"carol", leases("secret-"), nil},
		{"ops", acquire("secret-1"), nil}, // the ACL of the stream secret-1 is not the lease's
		{"ops", leases(""), nil},
		{"dave", acquire("x"), ErrPermissionDenied},
		{"dave", leases("x"), ErrPermissionDenied},
		{"root", acquire("anything"), nil},
		{"root", stream(OpWrite, "secret-1"), nil},
		{"root", Access{Op: OpAdmin}, nil},
	}
	for _, tt := range tests {
		err := a.Authorize(as(tt.who), tt.acc)
		if (tt.want == nil) != (err == nil) || (tt.want != nil && !errors.Is(err, tt.want)) {
			t.Errorf("%s %+v: %v, want %v", tt.who, tt.acc, err, tt.want)
		}
	}
	if err := a.Authorize(ctx, stream(OpRead, "cart-1")); !errors.Is(err, ErrUnauthenticated) {
		t.Errorf("no caller: %v, want ErrUnauthenticated", err)
	}
}

func TestLoginTokens(t *testing.T) {
	hash, _ := bcrypt.GenerateFromPassword([]byte("pw"), bcrypt.MinCost)
	now := time.Date(2026, 12, 1, 8, 0, 0, 0, time.UTC)
	key := []byte(strings.Repeat("k", 32))
	a, err := NewAuth(&AuthOptions{Users: []User{{Name: "alice", PasswordHash: string(hash), Roles: []string{AdminRole}}}, SigningKey: key, TokenTTL: time.Minute, Now: func() time.Time { return now }})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if _, _, err := a.Login(ctx, "alice", "wrong"); !errors.Is(err, ErrUnauthenticated) {
		t.Errorf("wrong password: %v", err)
	}
	tok, exp, err := a.Login(ctx, "alice", "pw")
	if err != nil || !exp.Equal(now.Add(time.Minute)) {
		t.Fatalf("login: %v, expires %v", err, exp)
	}
	if p, err := a.verify(tok); err != nil || p.Name != "alice" {
		t.Errorf("verify a fresh token: %v", err)
	}
	// Every changed byte of the token is caught.
	for i := len(tokenPrefix); i < len(tok); i++ {
		b := []byte(tok)
		b[i] ^= 1
		if _, err := a.verify(string(b)); !errors.Is(err, ErrUnauthenticated) {
			t.Fatalf("token changed at byte %d accepted", i)
		}
	}
	// Another key, or the clock past the expiry: refused.
	other, _ := NewAuth(&AuthOptions{Users: []User{{Name: "alice", PasswordHash: string(hash)}}, Now: func() time.Time { return now }})
	if _, err := other.verify(tok); !errors.Is(err, ErrUnauthenticated) {
		t.Errorf("token of another key: %v", err)
	}
	now = now.Add(time.Minute)
	if _, err := a.verify(tok); !errors.Is(err, ErrUnauthenticated) || !strings.Contains(err.Error(), "expired") {
		t.Errorf("expired token: %v", err)
	}

	// The middleware: a Bearer header anywhere, ?access_token= on SSE only, and it does not
	// pass the query parameter on.
	now = now.Add(-30 * time.Second)
	var sawQuery string
	h := a.Middleware(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		sawQuery = r.URL.RawQuery
		if c, ok := CallerFrom(r.Context()); !ok || c.Name != "alice" || c.Kind != "user" {
			t.Errorf("caller %+v, %v", c, ok)
		}
	}))
	for _, tt := range []struct {
		target, header string
		status         int
	}{
		{"/v1/all", "Bearer " + tok, 200},
		{"/v1/all", "bearer " + tok, 200},
		{"/v1/all", "Basic " + tok, 401},
		{"/v1/all?access_token=" + tok, "", 401},
		{"/v1/sse/all?from=end&access_token=" + tok, "", 200},
	} {
		w := httptest.NewRecorder()
		r := httptest.NewRequest("GET", tt.target, nil)
		if tt.header != "" {
			r.Header.Set("Authorization", tt.header)
		}
		h.ServeHTTP(w, r)
		if w.Code != tt.status {
			t.Errorf("GET %s (%q): %d %s, want %d", tt.target, tt.header, w.Code, w.Body, tt.status)
		}
	}
	if sawQuery != "from=end" {
		t.Errorf("the handler saw query %q, want from=end", sawQuery)
	}
}
