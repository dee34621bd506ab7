package client

import (
	"errors"
	"fmt"

	"connectrpc.com/connect"
	"github.com/annalsdb/annals"
	"github.com/annalsdb/annals/groups"
	annalsv1 "github.com/annalsdb/annals/internal/gen/annals/v1"
	"github.com/annalsdb/annals/internal/wire"
	"github.com/annalsdb/annals/lease"
)

// sentinels maps the reasons of the server's ErrorDetail back to the store's errors.
var sentinels = map[string]error{
	wire.ReasonStreamNotFound:  annals.ErrStreamNotFound,
	wire.ReasonStreamDeleted:   annals.ErrStreamDeleted,
	wire.ReasonInvalidArgument: annals.ErrInvalidArgument,
	wire.ReasonTooLarge:        annals.ErrTooLarge,
	wire.ReasonClosed:          annals.ErrClosed,
	wire.ReasonCorrupt:         annals.ErrCorrupt,
	wire.ReasonLeaseLost:       lease.ErrLost,
	// The consumer groups' (TOO_MANY depends on the call: see remoteGroups.fail).
	wire.ReasonGroupNotFound:  groups.ErrGroupNotFound,
	wire.ReasonGroupExists:    groups.ErrGroupExists,
	wire.ReasonGroupDeleted:   groups.ErrGroupDeleted,
	wire.ReasonNotInFlight:    groups.ErrNotInFlight,
	wire.ReasonConsumerClosed: groups.ErrConsumerClosed,
}

// remoteError is a store error the server reported: it matches its sentinel with errors.Is,
// reads as the server's message, and unwraps to the *connect.Error.
type remoteError struct {
	sentinel error
	err      *connect.Error
}

func (e *remoteError) Error() string { return e.err.Message() }

func (e *remoteError) Is(target error) bool { return errors.Is(e.sentinel, target) }

func (e *remoteError) Unwrap() error { return e.err }

// detailOf returns the ErrorDetail of ce, or nil.
func detailOf(ce *connect.Error) *annalsv1.ErrorDetail {
	for _, d := range ce.Details() {
		if v, err := d.Value(); err == nil {
			if ed, ok := v.(*annalsv1.ErrorDetail); ok {
				return ed
			}
		}
	}
	return nil
}

// fromConnect turns an error of the Connect client into the store's error it stands for.
func fromConnect(err error) error {
	ce, ok := errors.AsType[*connect.Error](err)
	if !ok {
		return fmt.Errorf("annals client: %w", err)
	}
	d := detailOf(ce)
	if d == nil {
		return fmt.Errorf("annals client: %w", err)
	}
	if d.Reason == wire.ReasonWrongExpectedVersion {
		return &annals.WrongExpectedVersionError{
			Stream:   d.Stream,
			Expected: wire.ExpectedFromProto(d.Expected),
			Actual:   wire.ExpectedFromProto(d.Actual),
		}
	}
	if d.Reason == wire.ReasonLeaseHeld {
		held := &lease.HeldError{}
		if d.Lease != nil {
			if l, err := wire.LeaseFromProto(d.Lease); err == nil {
				held.Lease = l
			}
		}
		return held
	}
	if s, ok := sentinels[d.Reason]; ok {
		return &remoteError{sentinel: s, err: ce}
	}
	return fmt.Errorf("annals client: %w", err)
}

// statusError returns the error of the Status that answers one append of a BatchAppend
// stream, as the *connect.Error a unary Append would have failed with, for [fromConnect].
func statusError(st *annalsv1.Status) error {
	code := connect.Code(st.Code)
	if code == 0 {
		code = connect.CodeUnknown // a Status is an error: OK is none
	}
	ce := connect.NewError(code, errors.New(st.Message))
	if st.Detail != nil {
		if d, err := connect.NewErrorDetail(st.Detail); err == nil {
			ce.AddDetail(d)
		}
	}
	return ce
}
