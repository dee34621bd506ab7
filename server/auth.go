package server

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"runtime"
	"slices"
	"strings"
	"time"

	"connectrpc.com/connect"
	"github.com/annalsdb/annals"
	annalsv1 "github.com/annalsdb/annals/internal/gen/annals/v1"
	"github.com/annalsdb/annals/internal/gen/annals/v1/annalsv1connect"
	"golang.org/x/crypto/bcrypt"
)

// OpMetrics is the permission to read the server's metrics (GET /metrics); [OpAdmin] implies
// it. It is not an operation on streams: [Options.Authorize] never sees it.
const OpMetrics Op = "metrics"

// OpAllStreams in a [Grant] stands for every operation on streams: read, write, delete,
// metaRead and metaWrite (not admin, not metrics).
const OpAllStreams Op = "*"

// LoginRoute is the route of the login endpoint [Auth.Register] adds.
const LoginRoute = "POST /v1/login"

// DefaultTokenTTL is the default of [AuthOptions.TokenTTL].
const DefaultTokenTTL = time.Hour

// AdminRole is the role that [NewAuth] defines, unless [AuthOptions.Roles] does, as
// ["admin"]: everything.
const AdminRole = "admin"

// Grant allows one kind of access to the streams whose id starts with Prefix ("" for every
// stream, system streams included). Op is a stream operation ([OpRead], [OpWrite],
// [OpDelete], [OpMetaRead], [OpMetaWrite]), [OpAllStreams] for all of them, or a server-wide
// permission ([OpAdmin]: everything; [OpMetrics]), for which Prefix must be empty.
type Grant struct {
	Op     Op
	Prefix string
}

// String returns the grant in the form [ParseGrant] reads.
func (g Grant) String() string {
	if g.Prefix == "" {
		return string(g.Op)
	}
	return string(g.Op) + ":" + g.Prefix
}

// ParseGrant reads a grant written "op" (every stream) or "op:prefix", e.g. "read",
// "write:cart-", "*:order-", "admin", "metrics". It returns an error matching
// [annals.ErrInvalidArgument] for an unknown operation, or a prefix on admin or metrics.
func ParseGrant(s string) (Grant, error) {
	op, prefix, _ := strings.Cut(s, ":")
	g := Grant{Op: Op(op), Prefix: prefix}
	switch g.Op {
	case OpRead, OpWrite, OpDelete, OpMetaRead, OpMetaWrite, OpAllStreams:
	case OpAdmin, OpMetrics:
		if prefix != "" {
			return Grant{}, fmt.Errorf("%w: grant %q: %s applies to the whole server, not to a stream prefix", annals.ErrInvalidArgument, s, op)
		}
	default:
		return Grant{}, fmt.Errorf("%w: grant %q: unknown operation %q (want read, write, delete, metaRead, metaWrite, *, admin or metrics)", annals.ErrInvalidArgument, s, op)
	}
	return g, nil
}

// User is a person who logs in with a password ([Auth.Login], POST /v1/login).
type User struct {
	Name string
	// PasswordHash is the bcrypt hash of the password ("annals passwd" prints one).
	PasswordHash string
	Roles        []string
}

// APIToken is a static bearer token for programs. Only its SHA-256 is configured: the token
// itself is a secret that the configuration never holds.
type APIToken struct {
	// Name identifies the token in logs and stream ACLs.
	Name string
	// SHA256 is the hex SHA-256 of the token (64 hex digits).
	SHA256 string
	Roles  []string
}

// AuthOptions configure an [Auth]. A nil *AuthOptions means no users, no tokens and no
// roles but [AdminRole]: nobody gets in.
type AuthOptions struct {
	Users  []User
	Tokens []APIToken
	// Roles maps role names to what they allow. [AdminRole] is defined as ["admin"] unless
	// Roles defines it.
	Roles map[string][]Grant
	// SigningKey signs the tokens that Login issues (HMAC-SHA256); at least 32 bytes. nil
	// means a random key: tokens then stop working when the process ends.
	SigningKey []byte
	// TokenTTL is how long a token issued by Login is valid; 0 means [DefaultTokenTTL].
	TokenTTL time.Duration
	// Store, when set, is read for the stream ACLs ([annals.StreamMetadata.ACL]) of the
	// streams the requests are about; nil means role grants only.
	Store annals.Store
	// Logger gets failed logins and store errors; nil means slog.Default().
	Logger *slog.Logger
	// Now is the clock; nil means time.Now.
	Now func() time.Time
}

// Auth authenticates requests (bearer tokens: those Login issues, and static API tokens) and
// authorizes them by role and stream prefix, honouring stream ACLs. Its methods are safe for
// concurrent use.
//
// Wire it as [Auth.Middleware] around every route that is not public, [Auth.Authorize] as
// [Options.Authorize], and [Auth.Register] for the login endpoint.
type Auth struct {
	users  map[string]*principal
	tokens map[[sha256.Size]byte]*principal
	key    []byte
	ttl    time.Duration
	store  annals.Store
	log    *slog.Logger
	now    func() time.Time
	// logins bounds the bcrypt comparisons running at once, so that a flood of logins cannot
	// take every core.
	logins chan struct{}
	errw   *connect.ErrorWriter
	// dummy is compared against when the user does not exist, so that a login takes as long
	// for an unknown user as for a wrong password.
	dummy []byte
}

// principal is a user or a token with its resolved grants.
type principal struct {
	Caller
	hash   []byte // users: bcrypt hash
	grants []Grant
	// expires is when the token Login issued that a request came with expires (the
	// principal of the request is a copy); zero for static API tokens and in a.users.
	expires time.Time
}

// Caller is who made a request, as [CallerFrom] returns it.
type Caller struct {
	// Name is the user's or the token's name.
	Name string
	// Kind is "user" or "token".
	Kind  string
	Roles []string
}

type callerKey struct{}

// CallerFrom returns the caller that [Auth.Middleware] put in ctx.
func CallerFrom(ctx context.Context) (Caller, bool) {
	p, ok := ctx.Value(callerKey{}).(*principal)
	if !ok {
		return Caller{}, false
	}
	return p.Caller, true
}

// NewAuth checks opts and returns an [Auth]. It returns an error matching
// [annals.ErrInvalidArgument] for a user or token without a name, a name used twice, a
// password hash that is not bcrypt, a token hash that is not 64 hex digits, a role that is
// not defined, or a signing key shorter than 32 bytes.
func NewAuth(opts *AuthOptions) (*Auth, error) {
	var o AuthOptions
	if opts != nil {
		o = *opts
	}
	bad := func(format string, args ...any) error {
		return fmt.Errorf("%w: auth: "+format, append([]any{annals.ErrInvalidArgument}, args...)...)
	}
	roles := map[string][]Grant{AdminRole: {{Op: OpAdmin}}}
	for name, gs := range o.Roles {
		for _, g := range gs {
			if _, err := ParseGrant(g.String()); err != nil {
				return nil, bad("role %q: %w", name, err)
			}
		}
		roles[name] = gs
	}
	resolve := func(what string, rs []string) ([]Grant, error) {
		var gs []Grant
		for _, r := range rs {
			g, ok := roles[r]
			if !ok {
				return nil, bad("%s: role %q is not defined (roles: %s)", what, r, strings.Join(slices.Sorted(mapKeys(roles)), ", "))
			}
			gs = append(gs, g...)
		}
		return gs, nil
	}
	a := &Auth{
		users:  make(map[string]*principal),
		tokens: make(map[[sha256.Size]byte]*principal),
		key:    o.SigningKey,
		ttl:    o.TokenTTL,
		store:  o.Store,
		log:    o.Logger,
		now:    o.Now,
		logins: make(chan struct{}, max(2, runtime.GOMAXPROCS(0))),
		errw:   connect.NewErrorWriter(),
	}
	// Users, tokens and roles share one namespace: an ACL entry names any of them, and a user
	// named like a role would match every entry meant for the role.
	names := map[string]string{AdminRole: "role"}
	for r := range o.Roles {
		names[r] = "role"
	}
	for _, u := range o.Users {
		if u.Name == "" {
			return nil, bad("a user has no name")
		}
		if prev, ok := names[u.Name]; ok {
			return nil, bad("user %q: the name is already the name of a %s", u.Name, prev)
		}
		names[u.Name] = "user"
		if _, err := bcrypt.Cost([]byte(u.PasswordHash)); err != nil {
			return nil, bad("user %q: passwordHash is not a bcrypt hash (make one with 'annals passwd'): %w", u.Name, err)
		}
		gs, err := resolve(fmt.Sprintf("user %q", u.Name), u.Roles)
		if err != nil {
			return nil, err
		}
		a.users[u.Name] = &principal{Caller: Caller{Name: u.Name, Kind: "user", Roles: slices.Clone(u.Roles)}, hash: []byte(u.PasswordHash), grants: gs}
	}
	for _, t := range o.Tokens {
		if t.Name == "" {
			return nil, bad("a token has no name")
		}
		if prev, ok := names[t.Name]; ok {
			return nil, bad("token %q: the name is already the name of a %s", t.Name, prev)
		}
		names[t.Name] = "token"
		h, err := hex.DecodeString(t.SHA256)
		if err != nil || len(h) != sha256.Size {
			return nil, bad("token %q: sha256 must be 64 hex digits (the SHA-256 of the token; 'annals passwd --token' makes a token and its hash)", t.Name)
		}
		gs, err := resolve(fmt.Sprintf("token %q", t.Name), t.Roles)
		if err != nil {
			return nil, err
		}
		a.tokens[[sha256.Size]byte(h)] = &principal{Caller: Caller{Name: t.Name, Kind: "token", Roles: slices.Clone(t.Roles)}, grants: gs}
	}
	switch {
	case a.key == nil:
		a.key = make([]byte, 32)
		_, _ = rand.Read(a.key)
	case len(a.key) < 32:
		return nil, bad("signing key of %d bytes: want at least 32", len(a.key))
	}
	if a.ttl <= 0 {
		a.ttl = DefaultTokenTTL
	}
	if a.log == nil {
		a.log = slog.Default()
	}
	if a.now == nil {
		a.now = time.Now
	}
	dummy, err := bcrypt.GenerateFromPassword([]byte("not a password"), bcrypt.DefaultCost)
	if err != nil {
		return nil, fmt.Errorf("auth: %w", err)
	}
	a.dummy = dummy
	return a, nil
}

func mapKeys[K comparable, V any](m map[K]V) func(func(K) bool) {
	return func(yield func(K) bool) {
		for k := range m {
			if !yield(k) {
				return
			}
		}
	}
}

// tokenPrefix starts the tokens Login issues, so that they are told apart from static ones.
const tokenPrefix = "annals1."

// tokenClaims is the signed part of a token Login issues.
type tokenClaims struct {
	Subject string `json:"sub"`
	Expires int64  `json:"exp"` // Unix seconds
}

// issue returns a token for the user name, valid until exp.
func (a *Auth) issue(name string, exp time.Time) string {
	payload, _ := json.Marshal(tokenClaims{Subject: name, Expires: exp.Unix()})
	enc := base64.RawURLEncoding
	body := tokenPrefix + enc.EncodeToString(payload)
	mac := hmac.New(sha256.New, a.key)
	mac.Write([]byte(body))
	return body + "." + enc.EncodeToString(mac.Sum(nil))
}

// verify returns the principal of a bearer token, or an error matching ErrUnauthenticated.
func (a *Auth) verify(token string) (*principal, error) {
	if !strings.HasPrefix(token, tokenPrefix) {
		if p, ok := a.tokens[sha256.Sum256([]byte(token))]; ok {
			return p, nil
		}
		return nil, fmt.Errorf("%w: unknown token", ErrUnauthenticated)
	}
	payload64, sig, ok := strings.Cut(strings.TrimPrefix(token, tokenPrefix), ".")
	body := tokenPrefix + payload64
	enc := base64.RawURLEncoding
	got, err := enc.DecodeString(sig)
	if !ok || err != nil {
		return nil, fmt.Errorf("%w: malformed token", ErrUnauthenticated)
	}
	mac := hmac.New(sha256.New, a.key)
	mac.Write([]byte(body))
	if !hmac.Equal(got, mac.Sum(nil)) {
		return nil, fmt.Errorf("%w: token signature does not match (issued by another server, or before a restart without a fixed signing key?)", ErrUnauthenticated)
	}
	payload, err := enc.DecodeString(payload64)
	var c tokenClaims
	if err != nil || json.Unmarshal(payload, &c) != nil {
		return nil, fmt.Errorf("%w: malformed token", ErrUnauthenticated)
	}
	if exp := time.Unix(c.Expires, 0); !a.now().Before(exp) {
		return nil, fmt.Errorf("%w: token expired at %s (log in again)", ErrUnauthenticated, exp.UTC().Format(time.RFC3339))
	}
	p, ok := a.users[c.Subject]
	if !ok {
		return nil, fmt.Errorf("%w: user %q no longer exists", ErrUnauthenticated, c.Subject)
	}
	q := *p
	q.expires = time.Unix(c.Expires, 0)
	return &q, nil
}

// Login checks a user's password and returns a signed token that expires after
// [AuthOptions.TokenTTL]. A wrong user name or password gives an error matching
// [ErrUnauthenticated] (the same for both, after the same time); more logins at once than the
// server has cores wait their turn, until ctx ends.
func (a *Auth) Login(ctx context.Context, username, password string) (token string, expires time.Time, err error) {
	select {
	case a.logins <- struct{}{}:
		defer func() { <-a.logins }()
	case <-ctx.Done():
		return "", time.Time{}, ctx.Err()
	}
	p, ok := a.users[username]
	hash := a.dummy
	if ok {
		hash = p.hash
	}
	if err := bcrypt.CompareHashAndPassword(hash, []byte(password)); err != nil || !ok {
		a.log.WarnContext(ctx, "login failed", slog.String("user", username))
		return "", time.Time{}, fmt.Errorf("%w: wrong user name or password", ErrUnauthenticated)
	}
	exp := a.now().Add(a.ttl).Truncate(time.Second)
	return a.issue(username, exp), exp, nil
}

// authenticate returns the principal of a request: "Authorization: Bearer <token>", or on
// the SSE routes (which a browser's EventSource reaches without headers) ?access_token=.
func (a *Auth) authenticate(r *http.Request) (*principal, error) {
	h := r.Header.Get("Authorization")
	if h != "" {
		scheme, token, _ := strings.Cut(h, " ")
		if !strings.EqualFold(scheme, "Bearer") || strings.TrimSpace(token) == "" {
			return nil, fmt.Errorf("%w: want an Authorization: Bearer <token> header", ErrUnauthenticated)
		}
		return a.verify(strings.TrimSpace(token))
	}
	if r.Method == http.MethodGet && strings.HasPrefix(r.URL.Path, "/v1/sse/") {
		if token := r.URL.Query().Get("access_token"); token != "" {
			return a.verify(token)
		}
	}
	return nil, fmt.Errorf("%w: no credentials (send Authorization: Bearer <token>; log in with POST /v1/login)", ErrUnauthenticated)
}

// Middleware returns a handler that refuses every request without valid credentials (401,
// in the request's protocol: gRPC, gRPC-Web, Connect, or a JSON body) and passes the others
// to next with the caller in their context ([CallerFrom]). It removes access_token from the
// query of the requests it passes on.
func (a *Auth) Middleware(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p, err := a.authenticate(r)
		if err != nil {
			a.writeError(w, r, err)
			return
		}
		if q := r.URL.Query(); q.Has("access_token") {
			q.Del("access_token")
			r = r.Clone(r.Context())
			r.URL.RawQuery = q.Encode()
		}
		next.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), callerKey{}, p)))
	})
}

// Require returns a handler that passes to next only the requests whose caller (put in the
// context by [Auth.Middleware]) has the server-wide permission op ([OpAdmin] or
// [OpMetrics]); others get 401 or 403.
func (a *Auth) Require(op Op, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p, ok := r.Context().Value(callerKey{}).(*principal)
		switch {
		case !ok:
			a.writeError(w, r, fmt.Errorf("%w: no credentials", ErrUnauthenticated))
		case !p.has(op):
			a.writeError(w, r, fmt.Errorf("%w: %s %q may not %s", ErrPermissionDenied, p.Kind, p.Name, op))
		default:
			next.ServeHTTP(w, r)
		}
	})
}

// writeError answers a request refused before it reached its handler: in the protocol of a
// Connect service's request, with an [ErrorBody] on the server's plain routes (under /v1/,
// whose JSON POSTs Connect would take for its own).
func (a *Auth) writeError(w http.ResponseWriter, r *http.Request, err error) {
	row := lookup(err)
	if row.status == http.StatusUnauthorized {
		w.Header().Set("WWW-Authenticate", `Bearer realm="annals"`)
	}
	if a.errw.IsSupported(r) && !strings.HasPrefix(r.URL.Path, "/v1/") {
		ce := connect.NewError(row.code, errors.New(err.Error()))
		if d, derr := connect.NewErrorDetail(&annalsv1.ErrorDetail{Reason: row.reason}); derr == nil {
			ce.AddDetail(d)
		}
		_ = a.errw.Write(w, r, ce)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(row.status)
	_ = json.NewEncoder(w).Encode(ErrorBody{Code: row.code.String(), Reason: row.reason, Message: err.Error()})
}

// LoginRequest is the JSON body of POST /v1/login.
type LoginRequest struct {
	Username string `json:"username"`
	Password string `json:"password"`
}

// LoginResponse is the JSON answer of a successful POST /v1/login: the token to send as
// "Authorization: Bearer <token>" (or ?access_token= on the SSE routes) until ExpiresAt.
type LoginResponse struct {
	Token     string    `json:"token"`
	ExpiresAt time.Time `json:"expiresAt"`
	Username  string    `json:"username"`
	Roles     []string  `json:"roles"`
}

// Register adds the login endpoint to mux: POST /v1/login with a JSON [LoginRequest],
// answered with a [LoginResponse], or 401 and an [ErrorBody] for a wrong user name or
// password, 400 for a malformed body. It is public: put it outside [Auth.Middleware].
func (a *Auth) Register(mux *http.ServeMux) {
	mux.HandleFunc(LoginRoute, a.serveLogin)
}

func (a *Auth) serveLogin(w http.ResponseWriter, r *http.Request) {
	var req LoginRequest
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, 4<<10))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&req); err != nil {
		a.writeError(w, r, fmt.Errorf(`%w: want a JSON body {"username":..,"password":..}: %w`, annals.ErrInvalidArgument, err))
		return
	}
	if req.Username == "" {
		a.writeError(w, r, fmt.Errorf(`%w: want a JSON body {"username":..,"password":..} with a username`, annals.ErrInvalidArgument))
		return
	}
	token, exp, err := a.Login(r.Context(), req.Username, req.Password)
	if err != nil {
		a.writeError(w, r, err)
		return
	}
	p := a.users[req.Username]
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	_ = json.NewEncoder(w).Encode(LoginResponse{Token: token, ExpiresAt: exp.UTC(), Username: p.Name, Roles: p.Roles})
}

// has reports whether p has the server-wide permission op.
func (p *principal) has(op Op) bool {
	for _, g := range p.grants {
		if g.Op == OpAdmin || g.Op == op {
			return true
		}
	}
	return false
}

// canStream reports whether a grant of p allows op on every stream whose id starts with
// prefix (a stream id is its own prefix).
func (p *principal) canStream(op Op, prefix string) bool {
	for _, g := range p.grants {
		if g.Op == OpAdmin || ((g.Op == op || g.Op == OpAllStreams && isStreamOp(op)) && strings.HasPrefix(prefix, g.Prefix)) {
			return true
		}
	}
	return false
}

// isStreamOp reports whether op is one of the operations on streams that "*" grants.
func isStreamOp(op Op) bool {
	switch op {
	case OpRead, OpWrite, OpDelete, OpMetaRead, OpMetaWrite:
		return true
	}
	return false
}

// inACL reports whether p is named by an entry of an ACL list: one of its roles, its name,
// or "$all" (every authenticated caller).
func (p *principal) inACL(list []string) bool {
	for _, e := range list {
		if e == "$all" || e == p.Name || slices.Contains(p.Roles, e) {
			return true
		}
	}
	return false
}

// Authorize decides whether the caller in ctx ([Auth.Middleware] put it there) may do a; use
// it as [Options.Authorize]. The rules:
//
//   - no caller: [ErrUnauthenticated];
//   - a caller with [OpAdmin] may do everything; any caller may ask for ServerInfo;
//   - an operation on a stream: a grant for the operation whose prefix starts the stream id
//     and, when the stream's metadata has an ACL list for the operation, an entry of that list
//     naming the caller (one of its roles, its user or token name, or "$all"). A stream ACL
//     only narrows what the grants allow, never widens it: otherwise whoever may set a
//     stream's metadata (metaWrite) could grant everyone, themselves included, every other
//     operation on it;
//   - a listing of streams: a read grant whose prefix starts the listing's prefix;
//   - an operation on leases ([IsLeaseAccess]; leases are not streams): lease names are
//     matched against the prefixes of grants as stream ids are. Acquire, Renew and Release
//     need a write grant ("write" or "*") whose prefix starts the lease's name ("write" with
//     no prefix: every lease); a listing of leases a read grant whose prefix starts the
//     listing's prefix. Stream ACLs do not apply;
//   - a read or subscription of $all: read grants that cover the filter: each of its stream
//     prefixes and categories must start with a granted prefix; without such a filter (all
//     streams) a read grant on every stream ("read" with no prefix) is needed. Stream ACLs do
//     not apply to $all.
//
// A token Login issued is checked for expiry here too, not only when the request came: the
// appends of a BatchAppend stream, each authorized as it comes, are refused with
// [ErrUnauthenticated] once the stream's token has expired (the client logs in again and
// opens a new stream). A subscription is authorized once, when it starts.
//
// A refusal wraps [ErrPermissionDenied] (or [ErrUnauthenticated]); a failure to read the
// stream's metadata is returned as it is (the server answers Internal).
func (a *Auth) Authorize(ctx context.Context, acc Access) error {
	p, ok := ctx.Value(callerKey{}).(*principal)
	if !ok {
		return fmt.Errorf("%w: no credentials", ErrUnauthenticated)
	}
	if !p.expires.IsZero() && !a.now().Before(p.expires) {
		return fmt.Errorf("%w: token expired at %s (log in again)", ErrUnauthenticated, p.expires.UTC().Format(time.RFC3339))
	}
	if p.has(OpAdmin) || acc.Procedure == annalsv1connect.EventStoreServiceServerInfoProcedure {
		return nil
	}
	denied := func(what string) error {
		return fmt.Errorf("%w: %s %q may not %s %s", ErrPermissionDenied, p.Kind, p.Name, acc.Op, what)
	}
	if IsLeaseAccess(acc) {
		if p.canStream(acc.Op, acc.Lease) {
			return nil
		}
		if acc.Op == OpWrite {
			return denied(fmt.Sprintf("lease %q", acc.Lease))
		}
		return denied(fmt.Sprintf("leases starting %q", acc.Lease))
	}
	if acc.Stream != "" {
		if !p.canStream(acc.Op, acc.Stream) {
			return denied(fmt.Sprintf("stream %q", acc.Stream))
		}
		if list, ok, err := a.acl(ctx, acc.Stream, acc.Op); err != nil {
			return err
		} else if ok && !p.inACL(list) {
			return denied(fmt.Sprintf("stream %q (its ACL allows %s)", acc.Stream, strings.Join(list, ", ")))
		}
		return nil
	}
	if acc.Op != OpRead {
		return denied("the server")
	}
	f := acc.Filter
	if f == nil || len(f.StreamPrefixes)+len(f.Categories) == 0 {
		if p.canStream(OpRead, acc.Prefix) {
			return nil
		}
		if acc.Prefix != "" {
			return denied(fmt.Sprintf("streams starting %q", acc.Prefix))
		}
		return denied("every stream (filter by stream prefix or category)")
	}
	for _, s := range slices.Concat(f.StreamPrefixes, f.Categories) {
		if !p.canStream(OpRead, s) {
			return denied(fmt.Sprintf("streams starting %q", s))
		}
	}
	return nil
}

// acl returns the stream's ACL list for op, and whether it has one.
func (a *Auth) acl(ctx context.Context, stream string, op Op) ([]string, bool, error) {
	if a.store == nil || strings.HasPrefix(stream, "$") {
		return nil, false, nil
	}
	meta, _, err := a.store.GetMetadata(ctx, stream)
	switch {
	case errors.Is(err, annals.ErrStreamDeleted), errors.Is(err, annals.ErrStreamNotFound), errors.Is(err, annals.ErrInvalidArgument):
		return nil, false, nil // the operation itself reports it
	case err != nil:
		return nil, false, fmt.Errorf("read the ACL of %q: %w", stream, err)
	case meta.ACL == nil:
		return nil, false, nil
	}
	var list []string
	switch op {
	case OpRead:
		list = meta.ACL.Read
	case OpWrite:
		list = meta.ACL.Write
	case OpDelete:
		list = meta.ACL.Delete
	case OpMetaRead:
		list = meta.ACL.MetaRead
	case OpMetaWrite:
		list = meta.ACL.MetaWrite
	}
	return list, list != nil, nil
}

// HashToken returns the hex SHA-256 of a static API token, as [APIToken.SHA256] wants it.
func HashToken(token string) string {
	h := sha256.Sum256([]byte(token))
	return hex.EncodeToString(h[:])
}

// NewToken returns a random static API token (32 bytes of crypto/rand, base64url).
func NewToken() string {
	b := make([]byte, 32)
	_, _ = rand.Read(b)
	return base64.RawURLEncoding.EncodeToString(b)
}
