package server_test

import (
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"

	"connectrpc.com/connect"
	"github.com/annalsdb/annals/memstore"
	"github.com/annalsdb/annals/server"
	"golang.org/x/crypto/bcrypt"
)

// TestBatchAppendTokenExpires: the appends of one BatchAppend stream opened with a login token
// succeed until the token expires, and each is refused Unauthenticated from then on.
func TestBatchAppendTokenExpires(t *testing.T) {
	var now atomic.Pointer[time.Time]
	start := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	now.Store(&start)
	hash, err := bcrypt.GenerateFromPassword([]byte("pw"), bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	auth, err := server.NewAuth(&server.AuthOptions{
		Users:    []server.User{{Name: "ann", PasswordHash: string(hash), Roles: []string{"writer"}}},
		Roles:    map[string][]server.Grant{"writer": {{Op: server.OpWrite}}},
		TokenTTL: time.Minute,
		Now:      func() time.Time { return *now.Load() },
	})
	if err != nil {
		t.Fatal(err)
	}
	token, expires, err := auth.Login(t.Context(), "ann", "pw")
	if err != nil {
		t.Fatal(err)
	}
	store := memstore.New(nil)
	t.Cleanup(func() { store.Close() })
	srv := server.New(store, &server.Options{Authorize: auth.Authorize})
	hs := httptest.NewUnstartedServer(auth.Middleware(srv.Handler()))
	hs.Config.Protocols = h2c()
	hs.Start()
	t.Cleanup(func() {
		srv.Close()
		hs.Close()
	})
	st := openBatch(t, &fixture{url: hs.URL})
	st.RequestHeader().Set("Authorization", "Bearer "+token)

	if err := st.Send(batchOf(appendOf(1, "a-1", nil, "E"), appendOf(2, "a-2", nil, "E"))); err != nil {
		t.Fatal(err)
	}
	for id, r := range results(t, st, 2) {
		if r.GetOk() == nil {
			t.Errorf("append %d before the token expired: %v", id, r.GetError())
		}
	}
	now.Store(&expires)
	for id := uint64(3); id <= 4; id++ {
		if err := st.Send(batchOf(appendOf(id, "a-1", nil, "E"))); err != nil {
			t.Fatal(err)
		}
		if r := results(t, st, 1)[id]; r.GetError() == nil || connect.Code(r.GetError().Code) != connect.CodeUnauthenticated {
			t.Errorf("append %d once the token expired: %v, want Unauthenticated", id, r)
		}
	}
}
