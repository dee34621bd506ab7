package server

import (
	"context"
	"errors"

	"connectrpc.com/connect"
	annalsv1 "github.com/annalsdb/annals/internal/gen/annals/v1"
)

// BatchAppend is not served yet.
func (v *service) BatchAppend(ctx context.Context, stream *connect.BidiStream[annalsv1.BatchAppendRequest, annalsv1.BatchAppendResponse]) error {
	return connect.NewError(connect.CodeUnimplemented, errors.New("BatchAppend is not served yet"))
}
