package transportbench

import (
	"net"
	"net/http"
	"testing"

	"github.com/annalsdb/annals"
	"github.com/annalsdb/annals/internal/gen/annals/v1/annalsv1connect"
	"github.com/annalsdb/annals/server"
)

// servers is every transport's server over one store, each on a loopback port: the HTTP
// server (Connect and the framed upgrade), grpc-go's, grpc-go's handlers on net/http's HTTP/2
// (grpc.Server.ServeHTTP, the way to share the HTTP server's port), and the framed
// transport's own port.
type servers struct {
	http, grpc, grpcHTTP, framed string // host:port
}

func startServers(tb testing.TB, st annals.Store) *servers {
	tb.Helper()
	mux := http.NewServeMux()
	mux.Handle(annalsv1connect.NewEventStoreServiceHandler(connectService{store: st}))
	mux.Handle(upgradePath, upgradeHandler(st))
	hs := &http.Server{Handler: mux, Protocols: h2c()}
	hln := listen(tb)
	go hs.Serve(server.BufferedListener(hln)) // as annals serve does
	gs := newGRPCServer(st)
	gln := listen(tb)
	go gs.Serve(gln)
	ghs := &http.Server{Handler: gs, Protocols: h2c()}
	ghln := listen(tb)
	go ghs.Serve(server.BufferedListener(ghln))
	fln := listen(tb)
	go serveFramed(fln, st)
	tb.Cleanup(func() {
		hs.Close()
		ghs.Close()
		gs.Stop()
		fln.Close()
	})
	return &servers{http: hln.Addr().String(), grpc: gln.Addr().String(), grpcHTTP: ghln.Addr().String(), framed: fln.Addr().String()}
}

func listen(tb testing.TB) net.Listener {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	return ln
}

// transports are the ways to reach the servers, each dialing one connection per client:
// the four transports, then each gRPC client on the other gRPC server (the protocol is the
// same; the pairs tell the client's cost from the server's) and grpc-go on net/http.
var transports = []struct {
	name string
	dial func(*servers) (*client, error)
}{
	{"connect", func(s *servers) (*client, error) { return dialConnect("http://" + s.http) }},
	{"grpc", func(s *servers) (*client, error) { return dialGRPC(s.grpc) }},
	{"framed-upgrade", func(s *servers) (*client, error) { return dialFramed(s.http, true) }},
	{"framed-port", func(s *servers) (*client, error) { return dialFramed(s.framed, false) }},
	{"grpc-client-connect-server", func(s *servers) (*client, error) { return dialGRPC(s.http) }},
	{"connect-client-grpc-server", func(s *servers) (*client, error) { return dialConnect("http://" + s.grpc) }},
	{"grpc-servehttp", func(s *servers) (*client, error) { return dialGRPC(s.grpcHTTP) }},
}
