package server

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"connectrpc.com/connect"
	"github.com/annalsdb/annals"
	annalsv1 "github.com/annalsdb/annals/internal/gen/annals/v1"
	"github.com/annalsdb/annals/internal/gen/annals/v1/annalsv1connect"
	"github.com/annalsdb/annals/internal/wire"
	"github.com/annalsdb/annals/lease"
)

// leasesRoute lists the leases held now as plain JSON, for the console, curl and scripts.
const leasesRoute = "GET /v1/leases"

// The prefixes of the names of the leases the runners take: "projection/<Name>" for a
// projection.Runner, "process/<Name>" for a process manager. GET /v1/projections reports them.
const (
	ProjectionLeasePrefix = "projection/"
	ProcessLeasePrefix    = "process/"
)

// MaxListedLeases bounds the leases that GET /v1/projections lists and that the metrics
// label (annals_lease_holder); GET /v1/leases and ListLeases list them all.
const MaxListedLeases = 1000

// leaseProcedures are the procedures and routes that concern leases, not streams: their
// [Access] names a lease (or the prefix of a listing of leases) in Access.Lease.
var leaseProcedures = map[string]bool{
	annalsv1connect.LeaseServiceAcquireProcedure:    true,
	annalsv1connect.LeaseServiceRenewProcedure:      true,
	annalsv1connect.LeaseServiceReleaseProcedure:    true,
	annalsv1connect.LeaseServiceListLeasesProcedure: true,
	leasesRoute: true,
}

// IsLeaseAccess reports whether a is about leases (the LeaseService and GET /v1/leases), not
// streams: then a.Lease is the lease's name, or the prefix of a listing of leases.
func IsLeaseAccess(a Access) bool { return leaseProcedures[a.Procedure] }

// LeaseStatus is the JSON of a lease held now, in the answers of GET /v1/leases and
// GET /v1/projections.
type LeaseStatus struct {
	Name   string `json:"name"`
	Holder string `json:"holder"`
	// Token is the fencing token, as a string: tokens exceed the integers JavaScript reads
	// exactly.
	Token uint64 `json:"token,string"`
	// TTLSeconds is the time to live the holder asked for.
	TTLSeconds float64 `json:"ttlSeconds"`
	// Expires is the keeper's time at which the lease runs out unless it is renewed, and
	// Acquired that of its acquisition.
	Expires  time.Time `json:"expires"`
	Acquired time.Time `json:"acquired"`
}

func leaseStatus(l lease.Lease) LeaseStatus {
	return LeaseStatus{Name: l.Name, Holder: l.Holder, Token: l.Token, TTLSeconds: l.TTL.Seconds(), Expires: l.Expires.UTC(), Acquired: l.Acquired.UTC()}
}

// LeaseList is the JSON answer of GET /v1/leases: the leases held now, by name.
type LeaseList struct {
	Leases []LeaseStatus `json:"leases"`
}

// leaseStats counts the acquisitions the server handed out, for the metrics. A takeover is an
// acquisition of a name whose last lease, as this server saw it, was another holder's and was
// not released through this server: it ran out. Servers that share a keeper (pgstore) each
// count what they saw.
type leaseStats struct {
	acquisitions atomic.Uint64
	takeovers    atomic.Uint64

	mu struct {
		sync.Mutex
		// last is the holder and token of the last lease seen on each name, at most
		// maxTrackedLeases of them.
		last map[string]lease.Lease
	}
}

// maxTrackedLeases bounds the names leaseStats remembers; past it, new names are not
// remembered (their takeovers are not counted) until releases make room.
const maxTrackedLeases = 10000

// acquired records a successful Acquire.
func (ls *leaseStats) acquired(l lease.Lease) {
	ls.mu.Lock()
	defer ls.mu.Unlock()
	prev, ok := ls.mu.last[l.Name]
	if ok && prev.Token == l.Token {
		return // the holder acquired it again: a renewal
	}
	ls.acquisitions.Add(1)
	if ok && prev.Holder != l.Holder {
		ls.takeovers.Add(1)
	}
	ls.remember(l)
}

// held records the lease that refused an Acquire.
func (ls *leaseStats) held(l lease.Lease) {
	ls.mu.Lock()
	defer ls.mu.Unlock()
	ls.remember(l)
}

// released records a Release of l.
func (ls *leaseStats) released(l lease.Lease) {
	ls.mu.Lock()
	defer ls.mu.Unlock()
	if prev, ok := ls.mu.last[l.Name]; ok && prev.Token == l.Token && prev.Holder == l.Holder {
		delete(ls.mu.last, l.Name)
	}
}

func (ls *leaseStats) remember(l lease.Lease) {
	if ls.mu.last == nil {
		ls.mu.last = make(map[string]lease.Lease)
	}
	if _, ok := ls.mu.last[l.Name]; ok || len(ls.mu.last) < maxTrackedLeases {
		ls.mu.last[l.Name] = lease.Lease{Name: l.Name, Holder: l.Holder, Token: l.Token}
	}
}

// Leases returns the keeper of the server's leases: [Options.Leases], the store when it keeps
// leases, or the server's own in-process keeper. An application that runs its projections in
// the server's process takes its leases there, so that the server reports them.
func (s *Server) Leases() lease.Keeper { return s.leases }

// appendLease returns the lease an append is fenced by (nil when none), checked as the
// keepers check a lease.
func appendLease(m *annalsv1.Lease) (*lease.Lease, error) {
	if m == nil {
		return nil, nil
	}
	l, err := leaseOf(m)
	if err != nil {
		return nil, fmt.Errorf("the lease of the append: %w", err)
	}
	return &l, nil
}

// fencer is a keeper that can run a write under the check of a lease (lease.Memory and the
// embedded stores that embed one, pgstore.Store).
type fencer interface {
	Fenced(ctx context.Context, write func() error) error
}

// fence runs write, fenced by l when it is not nil: the server's keeper runs the write under
// its check (Fenced), so that no other holder can take l while it runs. A keeper that cannot
// fence refuses fenced writes with Unimplemented. A lease that is not current is an error
// matching lease.ErrLost.
func (s *Server) fence(ctx context.Context, l *lease.Lease, write func(context.Context) error) error {
	if l == nil {
		return write(ctx)
	}
	ctx = lease.NewContext(ctx, *l)
	if f, ok := s.leases.(fencer); ok {
		return f.Fenced(ctx, func() error { return write(ctx) })
	}
	return connect.NewError(connect.CodeUnimplemented, errors.New("the server's lease keeper cannot fence writes (it has no Fenced method)"))
}

// leaseService implements the Connect handler of LeaseService over the server's keeper.
type leaseService struct {
	s *Server
}

var _ annalsv1connect.LeaseServiceHandler = (*leaseService)(nil)

func (v *leaseService) Acquire(ctx context.Context, req *connect.Request[annalsv1.AcquireRequest]) (*connect.Response[annalsv1.AcquireResponse], error) {
	m, proc := req.Msg, req.Spec().Procedure
	ttl, err := wire.TTLFromProto(m.Ttl)
	if err == nil {
		err = lease.Validate(m.Name, m.Holder, ttl)
	}
	if err != nil {
		return nil, v.s.toConnect(ctx, proc, err)
	}
	if err := v.s.authorize(ctx, Access{Op: OpWrite, Procedure: proc, Lease: m.Name}); err != nil {
		return nil, v.s.toConnect(ctx, proc, err)
	}
	l, err := v.s.leases.Acquire(ctx, m.Name, m.Holder, ttl)
	if held, ok := errors.AsType[*lease.HeldError](err); ok {
		v.s.leaseStats.held(held.Lease)
	}
	if err != nil {
		return nil, v.s.toConnect(ctx, proc, err)
	}
	v.s.leaseStats.acquired(l)
	return connect.NewResponse(&annalsv1.AcquireResponse{Lease: wire.LeaseToProto(l)}), nil
}

// leaseOf returns the lease of a Renew or Release, checked as the keepers check it.
func leaseOf(m *annalsv1.Lease) (lease.Lease, error) {
	l, err := wire.LeaseFromProto(m)
	if err != nil {
		return lease.Lease{}, err
	}
	if err := lease.ValidateHeld(l); err != nil {
		return lease.Lease{}, err
	}
	return l, nil
}

// held returns the lease of a Renew or Release, checked and then authorized (OpWrite on its
// name), or the error to answer.
func (v *leaseService) held(ctx context.Context, proc string, m *annalsv1.Lease) (lease.Lease, error) {
	l, err := leaseOf(m)
	if err != nil {
		return lease.Lease{}, v.s.toConnect(ctx, proc, err)
	}
	if err := v.s.authorize(ctx, Access{Op: OpWrite, Procedure: proc, Lease: l.Name}); err != nil {
		return lease.Lease{}, v.s.toConnect(ctx, proc, err)
	}
	return l, nil
}

func (v *leaseService) Renew(ctx context.Context, req *connect.Request[annalsv1.RenewRequest]) (*connect.Response[annalsv1.RenewResponse], error) {
	proc := req.Spec().Procedure
	l, err := v.held(ctx, proc, req.Msg.Lease)
	if err != nil {
		return nil, err
	}
	r, err := v.s.leases.Renew(ctx, l)
	if err != nil {
		return nil, v.s.toConnect(ctx, proc, err)
	}
	return connect.NewResponse(&annalsv1.RenewResponse{Lease: wire.LeaseToProto(r)}), nil
}

func (v *leaseService) Release(ctx context.Context, req *connect.Request[annalsv1.ReleaseRequest]) (*connect.Response[annalsv1.ReleaseResponse], error) {
	proc := req.Spec().Procedure
	l, err := v.held(ctx, proc, req.Msg.Lease)
	if err != nil {
		return nil, err
	}
	if err := v.s.leases.Release(ctx, l); err != nil {
		return nil, v.s.toConnect(ctx, proc, err)
	}
	v.s.leaseStats.released(l)
	return connect.NewResponse(&annalsv1.ReleaseResponse{}), nil
}

func (v *leaseService) ListLeases(ctx context.Context, req *connect.Request[annalsv1.ListLeasesRequest]) (*connect.Response[annalsv1.ListLeasesResponse], error) {
	m, proc := req.Msg, req.Spec().Procedure
	if err := wire.CheckLeasePrefix(m.Prefix); err != nil {
		return nil, v.s.toConnect(ctx, proc, err)
	}
	if err := v.s.authorize(ctx, Access{Op: OpRead, Procedure: proc, Lease: m.Prefix}); err != nil {
		return nil, v.s.toConnect(ctx, proc, err)
	}
	ls, err := v.s.leases.Leases(ctx, m.Prefix)
	if err != nil {
		return nil, v.s.toConnect(ctx, proc, err)
	}
	out := &annalsv1.ListLeasesResponse{Leases: make([]*annalsv1.Lease, len(ls))}
	for i, l := range ls {
		out.Leases[i] = wire.LeaseToProto(l)
	}
	return connect.NewResponse(out), nil
}

// serveLeases answers GET /v1/leases. Query: prefix=.
func (s *Server) serveLeases(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	q := r.URL.Query()
	if err := checkQuery(q, "prefix"); err != nil {
		s.writeHTTPError(w, r, leasesRoute, err)
		return
	}
	prefix := q.Get("prefix")
	if len(q["prefix"]) > 1 {
		s.writeHTTPError(w, r, leasesRoute, fmt.Errorf("%w: query parameter \"prefix\" given %d times", annals.ErrInvalidArgument, len(q["prefix"])))
		return
	}
	if err := wire.CheckLeasePrefix(prefix); err != nil {
		s.writeHTTPError(w, r, leasesRoute, err)
		return
	}
	if err := s.authorize(ctx, Access{Op: OpRead, Procedure: leasesRoute, Lease: prefix}); err != nil {
		s.writeHTTPError(w, r, leasesRoute, err)
		return
	}
	ls, err := s.leases.Leases(ctx, prefix)
	if err != nil {
		s.writeHTTPError(w, r, leasesRoute, err)
		return
	}
	out := LeaseList{Leases: make([]LeaseStatus, len(ls))}
	for i, l := range ls {
		out.Leases[i] = leaseStatus(l)
	}
	writeJSON(w, out)
}

// runnerLeases returns the leases of the runners held now (names starting with
// [ProjectionLeasePrefix] or [ProcessLeasePrefix]), by name, at most [MaxListedLeases].
func (s *Server) runnerLeases(ctx context.Context) ([]lease.Lease, error) {
	var out []lease.Lease
	for _, p := range []string{ProcessLeasePrefix, ProjectionLeasePrefix} {
		ls, err := s.leases.Leases(ctx, p)
		if err != nil {
			return nil, err
		}
		out = append(out, ls[:min(len(ls), MaxListedLeases-len(out))]...)
	}
	return out, nil
}
