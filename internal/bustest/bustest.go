// Package bustest starts the brokers the bridge tests run against, in process: a Kafka
// (github.com/twmb/franz-go/pkg/kfake, which speaks the real protocol) and a NATS server with
// JetStream (github.com/nats-io/nats-server/v2). Both can be stopped and started again on the
// same address, to test a broker outage.
package bustest

import (
	"testing"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/twmb/franz-go/pkg/kfake"
)

// Kafka is an in-process Kafka cluster.
type Kafka struct {
	t       testing.TB
	cluster *kfake.Cluster
}

// NATS is an in-process NATS server with JetStream, its store in a directory of the test.
type NATS struct {
	t      testing.TB
	server *server.Server
}
