package server

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"log/slog"
	"net/http"

	"connectrpc.com/connect"
	"github.com/annalsdb/annals"
	"github.com/annalsdb/annals/groups"
	annalsv1 "github.com/annalsdb/annals/internal/gen/annals/v1"
	"github.com/annalsdb/annals/internal/wire"
	"github.com/annalsdb/annals/lease"
)

// Errors for the hooks that others plug into the server ([Options.Authorize], and middleware
// such as [Auth.Middleware]). Wrap them with detail; the error table maps them to codes.
var (
	// ErrUnauthenticated: the request carries no valid credentials (Unauthenticated, 401).
	ErrUnauthenticated = errors.New("annals server: unauthenticated")
	// ErrPermissionDenied: the caller may not do this (PermissionDenied, 403).
	ErrPermissionDenied = errors.New("annals server: permission denied")
	// ErrShuttingDown: the server is stopping; retry against the next one (Unavailable, 503).
	ErrShuttingDown = errors.New("annals server: shutting down")
)

// errorRow is one line of the error table.
type errorRow struct {
	err    error
	code   connect.Code
	reason string
	// status is the HTTP status of the server's own HTTP endpoints (SSE). Connect's endpoints
	// use the status its protocol defines for the code.
	status int
	// internal errors are logged in full and answered with a generic message.
	internal bool
}

// errorTable is THE mapping from errors to status codes, for every endpoint of the server. The
// first row whose error matches (errors.Is) wins, so ErrTooLarge comes before
// ErrInvalidArgument. Anything that matches no row is Internal.
//
// A lease held by another holder (lease.ErrHeld) is AlreadyExists, with the current lease in
// the ErrorDetail; a lease lost (lease.ErrLost: released, or expired and taken over, found by
// Renew or by a fenced write) is Aborted, as a conflict is: the reasons LEASE_HELD and
// LEASE_LOST tell them apart from the store's errors.
//
// The errors of consumer groups (package groups) have reasons of their own: a group not
// found is NotFound (GROUP_NOT_FOUND), a name taken AlreadyExists (GROUP_EXISTS), a group
// deleted under its consumers FailedPrecondition (GROUP_DELETED, HTTP 410 as a tombstoned
// stream), an ack of an event not in flight FailedPrecondition (NOT_IN_FLIGHT), a consumer
// closed FailedPrecondition (CONSUMER_CLOSED), and a limit of groups or consumers
// ResourceExhausted (TOO_MANY).
//
// Stream deleted (tombstoned) is FailedPrecondition, as EventStoreDB's gRPC API reports it:
// the request is well formed, but the stream is in a state that refuses it for good. Its HTTP
// status on the SSE endpoints is 410 Gone, as EventStoreDB's HTTP API answered.
var errorTable = []errorRow{
	{err: annals.ErrWrongExpectedVersion, code: connect.CodeAborted, reason: wire.ReasonWrongExpectedVersion, status: http.StatusConflict},
	{err: annals.ErrStreamNotFound, code: connect.CodeNotFound, reason: wire.ReasonStreamNotFound, status: http.StatusNotFound},
	{err: annals.ErrStreamDeleted, code: connect.CodeFailedPrecondition, reason: wire.ReasonStreamDeleted, status: http.StatusGone},
	{err: errUnsupportedMediaType, code: connect.CodeInvalidArgument, reason: wire.ReasonInvalidArgument, status: http.StatusUnsupportedMediaType},
	{err: annals.ErrTooLarge, code: connect.CodeInvalidArgument, reason: wire.ReasonTooLarge, status: http.StatusRequestEntityTooLarge},
	{err: annals.ErrInvalidArgument, code: connect.CodeInvalidArgument, reason: wire.ReasonInvalidArgument, status: http.StatusBadRequest},
	{err: lease.ErrInvalid, code: connect.CodeInvalidArgument, reason: wire.ReasonInvalidArgument, status: http.StatusBadRequest},
	{err: lease.ErrHeld, code: connect.CodeAlreadyExists, reason: wire.ReasonLeaseHeld, status: http.StatusConflict},
	{err: lease.ErrLost, code: connect.CodeAborted, reason: wire.ReasonLeaseLost, status: http.StatusConflict},
	{err: groups.ErrGroupNotFound, code: connect.CodeNotFound, reason: wire.ReasonGroupNotFound, status: http.StatusNotFound},
	{err: groups.ErrGroupExists, code: connect.CodeAlreadyExists, reason: wire.ReasonGroupExists, status: http.StatusConflict},
	{err: groups.ErrGroupDeleted, code: connect.CodeFailedPrecondition, reason: wire.ReasonGroupDeleted, status: http.StatusGone},
	{err: groups.ErrNotInFlight, code: connect.CodeFailedPrecondition, reason: wire.ReasonNotInFlight, status: http.StatusConflict},
	{err: groups.ErrConsumerClosed, code: connect.CodeFailedPrecondition, reason: wire.ReasonConsumerClosed, status: http.StatusGone},
	{err: groups.ErrTooManyGroups, code: connect.CodeResourceExhausted, reason: wire.ReasonTooMany, status: http.StatusTooManyRequests},
	{err: groups.ErrTooManyConsumers, code: connect.CodeResourceExhausted, reason: wire.ReasonTooMany, status: http.StatusTooManyRequests},
	{err: annals.ErrClosed, code: connect.CodeUnavailable, reason: wire.ReasonClosed, status: http.StatusServiceUnavailable},
	{err: ErrShuttingDown, code: connect.CodeUnavailable, reason: wire.ReasonShuttingDown, status: http.StatusServiceUnavailable},
	{err: ErrUnauthenticated, code: connect.CodeUnauthenticated, reason: wire.ReasonUnauthenticated, status: http.StatusUnauthorized},
	{err: ErrPermissionDenied, code: connect.CodePermissionDenied, reason: wire.ReasonPermissionDenied, status: http.StatusForbidden},
	{err: annals.ErrCorrupt, code: connect.CodeDataLoss, reason: wire.ReasonCorrupt, status: http.StatusInternalServerError, internal: true},
	{err: context.Canceled, code: connect.CodeCanceled, status: 499},
	{err: context.DeadlineExceeded, code: connect.CodeDeadlineExceeded, status: http.StatusGatewayTimeout},
}

var internalRow = errorRow{code: connect.CodeInternal, reason: wire.ReasonInternal, status: http.StatusInternalServerError, internal: true}

// lookup returns the row of the table for err.
func lookup(err error) errorRow {
	for _, r := range errorTable {
		if errors.Is(err, r.err) {
			return r
		}
	}
	if ce, ok := errors.AsType[*connect.Error](err); ok {
		return errorRow{code: ce.Code(), status: connectStatus[ce.Code()]}
	}
	return internalRow
}

// connectStatus is the HTTP status the Connect protocol gives each code, for a *connect.Error
// (from an Authorize hook, say) answered on an SSE endpoint.
var connectStatus = map[connect.Code]int{
	connect.CodeCanceled:           499,
	connect.CodeUnknown:            http.StatusInternalServerError,
	connect.CodeInvalidArgument:    http.StatusBadRequest,
	connect.CodeDeadlineExceeded:   http.StatusGatewayTimeout,
	connect.CodeNotFound:           http.StatusNotFound,
	connect.CodeAlreadyExists:      http.StatusConflict,
	connect.CodePermissionDenied:   http.StatusForbidden,
	connect.CodeResourceExhausted:  http.StatusTooManyRequests,
	connect.CodeFailedPrecondition: http.StatusBadRequest,
	connect.CodeAborted:            http.StatusConflict,
	connect.CodeOutOfRange:         http.StatusBadRequest,
	connect.CodeUnimplemented:      http.StatusNotImplemented,
	connect.CodeInternal:           http.StatusInternalServerError,
	connect.CodeUnavailable:        http.StatusServiceUnavailable,
	connect.CodeDataLoss:           http.StatusInternalServerError,
	connect.CodeUnauthenticated:    http.StatusUnauthorized,
}

// toConnect returns the error to answer a request with: a *connect.Error passes unchanged
// (Connect's own errors, and those of interceptors that chose a code), anything else goes
// through the table ([Server.explain]).
func (s *Server) toConnect(ctx context.Context, procedure string, err error) error {
	if ce := (*connect.Error)(nil); errors.As(err, &ce) {
		return ce
	}
	code, msg, detail := s.explain(ctx, procedure, err)
	ce := connect.NewError(code, errors.New(msg))
	if detail != nil {
		if d, derr := connect.NewErrorDetail(detail); derr == nil {
			ce.AddDetail(d)
		}
	}
	return ce
}

// toStatus returns the Status that answers one append of a BatchAppend stream that failed
// with err: the code, message and ErrorDetail [Server.toConnect] gives a unary call.
func (s *Server) toStatus(ctx context.Context, procedure string, err error) *annalsv1.Status {
	if ce := (*connect.Error)(nil); errors.As(err, &ce) {
		st := &annalsv1.Status{Code: int32(ce.Code()), Message: ce.Message()}
		for _, d := range ce.Details() {
			if v, derr := d.Value(); derr == nil {
				if ed, ok := v.(*annalsv1.ErrorDetail); ok {
					st.Detail = ed
					break
				}
			}
		}
		return st
	}
	code, msg, detail := s.explain(ctx, procedure, err)
	return &annalsv1.Status{Code: int32(code), Message: msg, Detail: detail}
}

// explain returns what the table answers for err: its code, the message the client gets and
// the ErrorDetail (nil for a row without a reason). Internal errors are logged with the
// procedure and an error id, and the client gets only that id.
func (s *Server) explain(ctx context.Context, procedure string, err error) (connect.Code, string, *annalsv1.ErrorDetail) {
	row := lookup(err)
	msg := err.Error()
	if row.internal {
		msg = s.logInternal(ctx, procedure, err)
	}
	if row.reason == "" {
		return row.code, msg, nil
	}
	detail := &annalsv1.ErrorDetail{Reason: row.reason}
	if wev, ok := errors.AsType[*annals.WrongExpectedVersionError](err); ok {
		detail.Stream = wev.Stream
		detail.Expected = wire.ExpectedToProto(wev.Expected)
		detail.Actual = wire.ExpectedToProto(wev.Actual)
	}
	if held, ok := errors.AsType[*lease.HeldError](err); ok {
		detail.Lease = wire.LeaseToProto(held.Lease)
	}
	return row.code, msg, detail
}

// logInternal logs err in full and returns the generic message for the client, with an id
// that finds the log line.
func (s *Server) logInternal(ctx context.Context, procedure string, err error) string {
	var b [6]byte
	_, _ = rand.Read(b[:])
	id := hex.EncodeToString(b[:])
	s.log.ErrorContext(ctx, "request failed", slog.String("procedure", procedure), slog.String("error_id", id), slog.Any("error", err))
	return "internal error (error id " + id + "; the server's log has the detail)"
}
