package transportbench

import (
	"context"
	"net"
	"net/http"
	"time"

	"connectrpc.com/connect"
	"github.com/annalsdb/annals"
	annalsv1 "github.com/annalsdb/annals/internal/gen/annals/v1"
	"github.com/annalsdb/annals/internal/gen/annals/v1/annalsv1connect"
)

// connectService serves BatchAppend through Connect; every other method is Unimplemented.
type connectService struct {
	annalsv1connect.UnimplementedEventStoreServiceHandler
	store annals.Store
}

func (v connectService) BatchAppend(ctx context.Context, stream *connect.BidiStream[annalsv1.BatchAppendRequest, annalsv1.BatchAppendResponse]) error {
	return serve(ctx, v.store, connectServerStream{stream})
}

type connectServerStream struct {
	*connect.BidiStream[annalsv1.BatchAppendRequest, annalsv1.BatchAppendResponse]
}

func (s connectServerStream) Recv() (*annalsv1.BatchAppendRequest, error) { return s.Receive() }

// Flush does nothing: Connect flushes every message it sends.
func (connectServerStream) Flush() error { return nil }

// h2c returns the protocols annals serve uses without TLS: HTTP/1.1 and unencrypted HTTP/2.
func h2c() *http.Protocols {
	var p http.Protocols
	p.SetHTTP1(true)
	p.SetUnencryptedHTTP2(true)
	return &p
}

// dialConnect opens a BatchAppend stream through Connect's gRPC protocol on its own h2c
// connection to the server at baseURL, as client.Open's transport does: without accepting
// gzip, which the server would otherwise apply to every response message.
func dialConnect(baseURL string) (*client, error) {
	var p http.Protocols
	p.SetUnencryptedHTTP2(true)
	tr := &http.Transport{
		Protocols:   &p,
		DialContext: (&net.Dialer{Timeout: 10 * time.Second}).DialContext,
	}
	rpc := annalsv1connect.NewEventStoreServiceClient(&http.Client{Transport: tr}, baseURL, connect.WithGRPC(), connect.WithAcceptCompression("gzip", nil, nil))
	ctx, cancel := context.WithCancel(context.Background())
	stream := rpc.BatchAppend(ctx)
	if err := stream.Send(nil); err != nil { // sends the headers: the call is open
		cancel()
		return nil, err
	}
	return newClient(connectClientStream{stream, cancel, tr}), nil
}

type connectClientStream struct {
	*connect.BidiStreamForClient[annalsv1.BatchAppendRequest, annalsv1.BatchAppendResponse]
	cancel context.CancelFunc
	tr     *http.Transport
}

func (s connectClientStream) Recv() (*annalsv1.BatchAppendResponse, error) { return s.Receive() }

// Flush does nothing: the HTTP/2 transport writes every message as it is sent.
func (connectClientStream) Flush() error { return nil }

func (s connectClientStream) Close() error {
	s.cancel()
	s.tr.CloseIdleConnections()
	return nil
}
