// Package gen holds the code generated from proto/annals/v1 by buf: the protobuf messages in
// annals/v1 (package annalsv1) and the Connect client and handler in
// annals/v1/annalsv1connect. Regenerate it, after a lint of the definitions, with
//
//	go generate ./internal/gen
//
// buf runs at the version pinned below and the plugins at the versions go.mod pins (see
// buf.gen.yaml). Check an edit of the .proto for breaking changes against main with
//
//	go run github.com/bufbuild/buf/cmd/buf@v1.75.0 breaking --against '.git#branch=main'
package gen

//go:generate go -C ../.. run github.com/bufbuild/buf/cmd/buf@v1.75.0 lint
//go:generate go -C ../.. run github.com/bufbuild/buf/cmd/buf@v1.75.0 generate
