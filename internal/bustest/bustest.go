// Package bustest starts the brokers the bridge tests run against, in process: a Kafka
// (github.com/twmb/franz-go/pkg/kfake, which speaks the real protocol; kafka.go) and a NATS
// server with JetStream (github.com/nats-io/nats-server/v2; nats.go). Both can be stopped and
// started again on the same address, to test a broker outage.
package bustest
