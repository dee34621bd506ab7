// Package natsbus connects Annals to NATS JetStream with github.com/nats-io/nats.go: a
// [Publisher] for the relay (package relay) and a [Source] for the ingest (package ingest).
//
// Each event is published with Nats-Msg-Id set to its event id, so that JetStream drops the
// duplicates a relay's restart publishes within the stream's duplicate window (its
// Duplicates setting, 2 minutes by default): a relay must come back within it, and it
// checkpoints often (relay.Options.CheckpointInterval) so that little is published again.
//
// Both work with NATS servers from 2.9 on: they use no feature a 2.9 server lacks, except
// that a [Source] with more than one filter subject needs 2.10.
package natsbus

import (
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/nats-io/nats.go"
)

// DefaultSubject is the subject template of a relay to NATS.
const DefaultSubject = "events.{category}.{stream}"

// ErrClosed is the error of a publish after [Publisher.Close], and of the publishes Close
// gave up waiting for.
var ErrClosed = errors.New("natsbus: closed")

// reconnectWait is the pause between two attempts to reconnect to a server that went away.
const reconnectWait = 250 * time.Millisecond

// connect dials url with reconnects forever, logging disconnections and reconnections. name
// is the connection's name, shown in the server's monitoring.
func connect(url, name string, log *slog.Logger, extra ...nats.Option) (*nats.Conn, error) {
	if url == "" {
		return nil, errors.New("no NATS URL (nor connection)")
	}
	opts := append([]nats.Option{
		nats.Name(name),
		nats.MaxReconnects(-1),
		nats.ReconnectWait(reconnectWait),
		nats.DisconnectErrHandler(func(nc *nats.Conn, err error) {
			if nc.IsClosed() {
				return // closed by its owner
			}
			log.Warn("natsbus: disconnected", "name", name, "url", url, "err", err)
		}),
		nats.ReconnectHandler(func(nc *nats.Conn) {
			log.Info("natsbus: reconnected", "name", name, "url", nc.ConnectedUrl())
		}),
	}, extra...)
	nc, err := nats.Connect(url, opts...)
	if err != nil {
		return nil, fmt.Errorf("connect to NATS at %s: %w", url, err)
	}
	return nc, nil
}
