package bustest

import (
	"testing"

	"github.com/nats-io/nats-server/v2/server"
)

// NATS is an in-process NATS server with JetStream, its store in a directory of the test.
type NATS struct {
	t      testing.TB
	server *server.Server
}
