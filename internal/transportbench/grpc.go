package transportbench

import (
	"context"

	"github.com/annalsdb/annals"
	annalsv1 "github.com/annalsdb/annals/internal/gen/annals/v1"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
)

// grpcBatchAppend is the full method name of BatchAppend, the same in Connect's gRPC protocol.
const grpcBatchAppend = "/annals.v1.EventStoreService/BatchAppend"

// grpcService describes annals.v1.EventStoreService to grpc-go with BatchAppend alone; the
// server registers it with the store as its implementation, and grpc's proto codec encodes
// the generated messages.
var grpcService = grpc.ServiceDesc{
	ServiceName: "annals.v1.EventStoreService",
	HandlerType: (*annals.Store)(nil),
	Streams: []grpc.StreamDesc{{
		StreamName:    "BatchAppend",
		ServerStreams: true,
		ClientStreams: true,
		Handler: func(srv any, ss grpc.ServerStream) error {
			return serve(ss.Context(), srv.(annals.Store), grpcServerStream{ss})
		},
	}},
	Metadata: "annals/v1/annals.proto",
}

// newGRPCServer returns a grpc.Server that serves BatchAppend over st.
func newGRPCServer(st annals.Store) *grpc.Server {
	s := grpc.NewServer()
	s.RegisterService(&grpcService, st)
	return s
}

type grpcServerStream struct{ grpc.ServerStream }

func (s grpcServerStream) Recv() (*annalsv1.BatchAppendRequest, error) {
	m := new(annalsv1.BatchAppendRequest)
	return m, s.RecvMsg(m)
}

func (s grpcServerStream) Send(m *annalsv1.BatchAppendResponse) error { return s.SendMsg(m) }

// Flush does nothing: grpc-go's writer flushes when it has nothing more to write.
func (grpcServerStream) Flush() error { return nil }

// dialGRPC opens a BatchAppend stream through grpc-go on its own connection to addr
// (host:port), without TLS.
func dialGRPC(addr string) (*client, error) {
	conn, err := grpc.NewClient("passthrough:///"+addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(context.Background())
	cs, err := conn.NewStream(ctx, &grpcService.Streams[0], grpcBatchAppend)
	if err != nil {
		cancel()
		conn.Close()
		return nil, err
	}
	return newClient(grpcClientStream{cs, cancel, conn}), nil
}

type grpcClientStream struct {
	grpc.ClientStream
	cancel context.CancelFunc
	conn   *grpc.ClientConn
}

func (s grpcClientStream) Send(m *annalsv1.BatchAppendRequest) error { return s.SendMsg(m) }

func (s grpcClientStream) Recv() (*annalsv1.BatchAppendResponse, error) {
	m := new(annalsv1.BatchAppendResponse)
	return m, s.RecvMsg(m)
}

// Flush does nothing: grpc-go's writer flushes when it has nothing more to write.
func (grpcClientStream) Flush() error { return nil }

func (s grpcClientStream) Close() error {
	s.cancel()
	return s.conn.Close()
}
