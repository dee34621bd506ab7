package server

import (
	"context"
	"errors"
	"fmt"
	"math"
	"net/http"
	"time"

	"connectrpc.com/connect"
	"github.com/annalsdb/annals"
	"github.com/annalsdb/annals/groups"
	annalsv1 "github.com/annalsdb/annals/internal/gen/annals/v1"
	"github.com/annalsdb/annals/internal/gen/annals/v1/annalsv1connect"
	"github.com/annalsdb/annals/internal/wire"
)

// groupsRoute lists the consumer groups as plain JSON, for the console, curl and scripts.
const groupsRoute = "GET /v1/groups"

// maxGroupMessageBytes bounds a request message of the GroupService: the largest is an ack
// or nack of groups.MaxWindow ids (about 400 KB).
const maxGroupMessageBytes = 1 << 20

// groupsOpenTimeout bounds the loading of the groups when the server opens its manager.
const groupsOpenTimeout = time.Minute

// errNoGroups is the error of the GroupService over a store that cannot keep groups.
var errNoGroups = connect.NewError(connect.CodeUnimplemented,
	errors.New("consumer groups: the server's store does not keep them (it does not implement groups.Store)"))

// groupState is the server's consumer-group manager, opened at the first need.
type groupState struct {
	// lock is held (a token in it) while the manager is opened or closed; a channel, so that
	// a caller waiting for it can give up with its context.
	lock chan struct{}
	// m is the manager once opened; read and written under lock.
	m      *groups.Manager
	closed bool
}

// groupManager returns the server's groups.Manager, opening it over the store the first time
// (it loads the groups, within [groupsOpenTimeout]). It returns an Unimplemented
// *connect.Error when the store does not implement groups.Store, [ErrShuttingDown] once Close
// was called, ctx's error, or the error of groups.Open (the next call tries again).
func (s *Server) groupManager(ctx context.Context) (*groups.Manager, error) {
	store, ok := s.store.(groups.Store)
	if !ok {
		return nil, errNoGroups
	}
	select {
	case s.groups.lock <- struct{}{}:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	defer func() { <-s.groups.lock }()
	switch {
	case s.groups.closed:
		return nil, ErrShuttingDown
	case s.groups.m != nil:
		return s.groups.m, nil
	}
	octx, cancel := context.WithTimeout(s.closing, groupsOpenTimeout)
	defer cancel()
	// The groups take their leases from the server's keeper, so that of several servers on one
	// store (pgstore) each group is active in one at a time.
	m, err := groups.Open(octx, store, &groups.Options{Logger: s.log, Leases: s.leases})
	if err != nil {
		if s.closing.Err() != nil {
			return nil, ErrShuttingDown
		}
		return nil, fmt.Errorf("open the consumer groups: %w", err)
	}
	s.groups.m = m
	return m, nil
}

// closeGroups closes the manager, if open, and refuses to open it again.
func (s *Server) closeGroups() error {
	s.groups.lock <- struct{}{}
	defer func() { <-s.groups.lock }()
	s.groups.closed = true
	if s.groups.m == nil {
		return nil
	}
	return s.groups.m.Close()
}

// Groups returns the consumer groups the server serves (its groups.Manager, opened over the
// store at the first need), for an application that consumes them in the server's process.
// It returns the errors of the GroupService: Unimplemented when the store does not keep
// groups, [ErrShuttingDown] after Close. The server closes the manager in [Server.Close].
func (s *Server) Groups(ctx context.Context) (groups.Service, error) {
	m, err := s.groupManager(ctx)
	if err != nil {
		return nil, err
	}
	return m, nil
}

// groupAccess returns the Access of reading group d's events: [OpRead] on its stream, or on
// $all with its filter.
func groupAccess(proc string, d groups.Definition) Access {
	a := Access{Op: OpRead, Procedure: proc, Group: d.Name, Stream: d.Settings.Stream, Filter: d.Settings.Filter}
	if a.Stream == annals.AllStream {
		a.Stream = ""
	}
	return a
}

// authorizeGroupRead authorizes reading the group name ([groupAccess]), finding it with m.
// A group that does not exist is [groups.ErrGroupNotFound] only for a caller who may read
// every stream (the group could be on any), so that others learn nothing of which groups
// exist; they get the refusal of that access.
func (s *Server) authorizeGroupRead(ctx context.Context, proc string, m *groups.Manager, name string) (groups.Info, error) {
	info, err := m.Info(ctx, name)
	if errors.Is(err, groups.ErrGroupNotFound) {
		if aerr := s.authorize(ctx, Access{Op: OpRead, Procedure: proc, Group: name}); aerr != nil {
			return groups.Info{}, aerr
		}
	}
	if err != nil {
		return groups.Info{}, err
	}
	if err := s.authorize(ctx, groupAccess(proc, info.Definition)); err != nil {
		return groups.Info{}, err
	}
	return info, nil
}

// readableGroups returns the groups of m that the caller may read ([groupAccess]), by name.
// A refusal leaves the group out; any other error of the authorizer is returned.
func (s *Server) readableGroups(ctx context.Context, proc string, m *groups.Manager) ([]groups.Info, error) {
	all, err := m.List(ctx)
	if err != nil {
		return nil, err
	}
	out := all[:0]
	for _, info := range all {
		err := s.authorize(ctx, groupAccess(proc, info.Definition))
		switch {
		case err == nil:
			out = append(out, info)
		case isRefusal(err):
		default:
			return nil, err
		}
	}
	return out, nil
}

// isRefusal reports whether err is an authorizer's refusal (not a failure to decide).
func isRefusal(err error) bool {
	if errors.Is(err, ErrPermissionDenied) || errors.Is(err, ErrUnauthenticated) {
		return true
	}
	code := connect.CodeOf(err)
	return code == connect.CodePermissionDenied || code == connect.CodeUnauthenticated
}

// groupService implements the Connect handler of GroupService over the server's manager.
type groupService struct {
	s *Server
}

var _ annalsv1connect.GroupServiceHandler = (*groupService)(nil)

// admin checks the group name, authorizes [OpAdmin] for the group, and returns the manager.
func (v *groupService) admin(ctx context.Context, proc, name string) (*groups.Manager, error) {
	if err := groups.ValidateName("group", name); err != nil {
		return nil, err
	}
	if err := v.s.authorize(ctx, Access{Op: OpAdmin, Procedure: proc, Group: name}); err != nil {
		return nil, err
	}
	return v.s.groupManager(ctx)
}

// settings returns the checked settings of a CreateGroup or UpdateGroup.
func settingsOf(m *annalsv1.GroupSettings) (groups.Settings, error) {
	st, err := wire.GroupSettingsFromProto(m)
	if err != nil {
		return groups.Settings{}, err
	}
	if err := st.Validate(); err != nil {
		return groups.Settings{}, err
	}
	return st, nil
}

func (v *groupService) CreateGroup(ctx context.Context, req *connect.Request[annalsv1.CreateGroupRequest]) (*connect.Response[annalsv1.CreateGroupResponse], error) {
	m, proc := req.Msg, req.Spec().Procedure
	d, err := v.createOrUpdate(ctx, proc, m.Name, m.Settings, (*groups.Manager).Create)
	if err != nil {
		return nil, v.s.toConnect(ctx, proc, err)
	}
	return connect.NewResponse(&annalsv1.CreateGroupResponse{Definition: wire.GroupDefinitionToProto(d)}), nil
}

func (v *groupService) UpdateGroup(ctx context.Context, req *connect.Request[annalsv1.UpdateGroupRequest]) (*connect.Response[annalsv1.UpdateGroupResponse], error) {
	m, proc := req.Msg, req.Spec().Procedure
	d, err := v.createOrUpdate(ctx, proc, m.Name, m.Settings, (*groups.Manager).Update)
	if err != nil {
		return nil, v.s.toConnect(ctx, proc, err)
	}
	return connect.NewResponse(&annalsv1.UpdateGroupResponse{Definition: wire.GroupDefinitionToProto(d)}), nil
}

func (v *groupService) createOrUpdate(ctx context.Context, proc, name string, pm *annalsv1.GroupSettings,
	do func(*groups.Manager, context.Context, string, groups.Settings) (groups.Definition, error)) (groups.Definition, error) {
	if err := groups.ValidateName("group", name); err != nil {
		return groups.Definition{}, err
	}
	st, err := settingsOf(pm)
	if err != nil {
		return groups.Definition{}, err
	}
	mgr, err := v.admin(ctx, proc, name)
	if err != nil {
		return groups.Definition{}, err
	}
	return do(mgr, ctx, name, st)
}

func (v *groupService) DeleteGroup(ctx context.Context, req *connect.Request[annalsv1.DeleteGroupRequest]) (*connect.Response[annalsv1.DeleteGroupResponse], error) {
	proc := req.Spec().Procedure
	mgr, err := v.admin(ctx, proc, req.Msg.Name)
	if err == nil {
		err = mgr.Delete(ctx, req.Msg.Name)
	}
	if err != nil {
		return nil, v.s.toConnect(ctx, proc, err)
	}
	return connect.NewResponse(&annalsv1.DeleteGroupResponse{}), nil
}

func (v *groupService) ReplayParked(ctx context.Context, req *connect.Request[annalsv1.ReplayParkedRequest]) (*connect.Response[annalsv1.ReplayParkedResponse], error) {
	m, proc := req.Msg, req.Spec().Procedure
	if m.Limit > math.MaxInt32 {
		return nil, v.s.toConnect(ctx, proc, fmt.Errorf("%w: replay limit %d is over %d", annals.ErrInvalidArgument, m.Limit, math.MaxInt32))
	}
	mgr, err := v.admin(ctx, proc, m.Name)
	var n int
	if err == nil {
		n, err = mgr.ReplayParked(ctx, m.Name, int(m.Limit))
	}
	if err != nil {
		return nil, v.s.toConnect(ctx, proc, err)
	}
	return connect.NewResponse(&annalsv1.ReplayParkedResponse{Replayed: uint32(min(n, math.MaxUint32))}), nil
}

func (v *groupService) ListGroups(ctx context.Context, req *connect.Request[annalsv1.ListGroupsRequest]) (*connect.Response[annalsv1.ListGroupsResponse], error) {
	proc := req.Spec().Procedure
	mgr, err := v.s.groupManager(ctx)
	var list []groups.Info
	if err == nil {
		list, err = v.s.readableGroups(ctx, proc, mgr)
	}
	if err != nil {
		return nil, v.s.toConnect(ctx, proc, err)
	}
	out := &annalsv1.ListGroupsResponse{Groups: make([]*annalsv1.GroupInfo, len(list))}
	for i, info := range list {
		out.Groups[i] = wire.GroupInfoToProto(info)
	}
	return connect.NewResponse(out), nil
}

func (v *groupService) GetGroup(ctx context.Context, req *connect.Request[annalsv1.GetGroupRequest]) (*connect.Response[annalsv1.GetGroupResponse], error) {
	proc, name := req.Spec().Procedure, req.Msg.Name
	if err := groups.ValidateName("group", name); err != nil {
		return nil, v.s.toConnect(ctx, proc, err)
	}
	mgr, err := v.s.groupManager(ctx)
	var info groups.Info
	if err == nil {
		info, err = v.s.authorizeGroupRead(ctx, proc, mgr, name)
	}
	if err != nil {
		return nil, v.s.toConnect(ctx, proc, err)
	}
	return connect.NewResponse(&annalsv1.GetGroupResponse{Group: wire.GroupInfoToProto(info)}), nil
}

// GroupList is the JSON answer of GET /v1/groups.
type GroupList struct {
	// Available reports whether the server serves consumer groups (its store keeps them).
	Available bool `json:"available"`
	// Groups are the groups the caller may read, by name, with their figures and consumers
	// (groups.Info: durations in nanoseconds).
	Groups []groups.Info `json:"groups"`
}

// serveGroups answers GET /v1/groups.
func (s *Server) serveGroups(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	if err := checkQuery(r.URL.Query()); err != nil {
		s.writeHTTPError(w, r, groupsRoute, err)
		return
	}
	out := GroupList{Groups: []groups.Info{}}
	mgr, err := s.groupManager(ctx)
	if errors.Is(err, errNoGroups) {
		writeJSON(w, out)
		return
	}
	if err == nil {
		out.Available = true
		out.Groups, err = s.readableGroups(ctx, groupsRoute, mgr)
	}
	if err != nil {
		s.writeHTTPError(w, r, groupsRoute, err)
		return
	}
	if out.Groups == nil {
		out.Groups = []groups.Info{}
	}
	writeJSON(w, out)
}
