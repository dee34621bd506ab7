// Package transportbench measures the transports the BatchAppend stream could run on, side by
// side, so that the choice is made with figures (docs/server.md, "Choosing the transport of
// BatchAppend"). It is a measuring harness, not a server: each transport carries the same
// minimal multiplexed append protocol, the generated BatchAppendRequest and
// BatchAppendResponse messages of proto/annals/v1, and nothing else (no auth, no metrics;
// message sizes bounded by each library's defaults and, for the framing, by [maxFrame]).
//
// The protocol, the same on every transport (mux.go): the client multiplexes the appends of
// all its goroutines over one stream on one connection, each append with an id of its own;
// the server runs the appends of a stream concurrently against the store (so that the store
// group-commits them) and answers them by id, in the order they finish, with every result
// that is ready at once in one response message.
//
// The transports:
//
//   - connect.go: Connect's bidirectional stream (gRPC protocol) on net/http, unencrypted
//     HTTP/2 (h2c), as server.Server is served today;
//   - grpc.go: grpc-go's own HTTP/2 transport, a grpc.Server with a hand-written service
//     description of annals.v1.EventStoreService/BatchAppend: real gRPC on the wire, so the
//     grpc-go client also talks to the Connect server and the other way round;
//   - framed.go: length-prefixed protobuf frames on a plain TCP connection through bufio,
//     flushed only when nothing more is queued, reached on the HTTP server's port through an
//     HTTP/1.1 Upgrade (so that HTTP middleware runs first) or on a port of its own.
//
// The benchmarks (bench_test.go) run each workload through each transport beside the store
// called in process, in the same run:
//
//	go test -run '^$' -bench . -benchtime 2s ./internal/transportbench
package transportbench
