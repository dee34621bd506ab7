package server

import (
	"context"
	"errors"
	"strings"
	"testing"

	"connectrpc.com/connect"
	"github.com/annalsdb/annals"
	annalsv1 "github.com/annalsdb/annals/internal/gen/annals/v1"
	"github.com/annalsdb/annals/memstore"
)

// stuckStore is a store whose appends wait for their context to end.
type stuckStore struct{ annals.Store }

func (stuckStore) Append(ctx context.Context, _ string, _ annals.ExpectedRevision, _ ...annals.Event) (annals.AppendResult, error) {
	<-ctx.Done()
	return annals.AppendResult{}, ctx.Err()
}

// TestServeBatchDuplicateInFlight drives serveBatch through functions, as a transport does: an
// id reused while its append is in flight ends the stream with InvalidArgument, and the
// append with the reused id is not made.
func TestServeBatchDuplicateInFlight(t *testing.T) {
	st := memstore.New(nil)
	defer st.Close()
	s := New(stuckStore{st}, nil)
	defer s.Close()
	one := func(stream string) *annalsv1.BatchAppendRequest {
		return &annalsv1.BatchAppendRequest{Appends: []*annalsv1.BatchAppend{{Id: 1, Append: &annalsv1.AppendRequest{Stream: stream, Events: []*annalsv1.Event{{Type: "E"}}}}}}
	}
	msgs := []*annalsv1.BatchAppendRequest{one("a-1"), one("a-2")}
	// recv is called a third time only if the second message was let in; serveBatch calls
	// interrupt once it has decided to end the stream, before it waits for the append in
	// flight.
	third, interrupted := make(chan struct{}), make(chan struct{})
	recv := func() (*annalsv1.BatchAppendRequest, error) {
		if len(msgs) > 0 {
			m := msgs[0]
			msgs = msgs[1:]
			return m, nil
		}
		close(third)
		<-interrupted
		return nil, context.Canceled
	}
	send := func(*annalsv1.BatchAppendResponse) error { return nil }
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() {
		done <- s.serveBatch(ctx, "/test", recv, send, streamControl{interrupt: func() { close(interrupted) }, abortWrites: func() {}, wait: true})
	}()
	select {
	case <-interrupted:
	case <-third:
		t.Error("the message with id 1 in flight was let in")
	}
	// Ending the request ends the append in flight.
	cancel()
	err := <-done
	if ce, ok := errors.AsType[*connect.Error](err); !ok || ce.Code() != connect.CodeInvalidArgument || !strings.Contains(ce.Message(), "id 1 is already in flight") {
		t.Errorf("got %v, want invalid_argument naming id 1", err)
	}
}
