package main

import (
	"log/slog"

	"github.com/annalsdb/annals"
	"github.com/annalsdb/annals/relay"
	"github.com/annalsdb/annals/server"
	"github.com/annalsdb/annals/supervisor"
	"github.com/spf13/cobra"
)

const relayLong = `Publish the events of the store to Kafka or NATS JetStream, until Ctrl-C or SIGTERM: the
relay follows the global log $all from its checkpoint, publishes each event that passes the
filters (--category, --type, --stream-prefix; system streams never), and moves its checkpoint,
kept in the store, only over events the broker acknowledged. After a crash it starts again
from the checkpoint and publishes again at most the unacknowledged tail, under the same event
ids: JetStream drops those duplicates by Nats-Msg-Id, Kafka consumers by the annals-id header
(kafkabus.Dedup does it for Go). Events of one stream arrive in order.

Kafka (--kafka BROKERS): the topic of each event is --topic, a template of {stream},
{category} and {type} (default {category}); the record key is the stream id.
NATS (--nats URL): the subject is --subject (default events.{category}.{stream}), published
into the JetStream stream --nats-stream (default EVENTS). The relay creates that stream when
it is missing if the subject template starts with fixed text: "events.{category}.{stream}"
makes a stream binding "events.>"; a template that starts with a placeholder needs the
stream made beforehand, binding the subjects it publishes to.

--format json sends the data as stored with annals-* headers; cloudevents a CloudEvents 1.0
JSON envelope; cloudevents-binary the data with ce_ (Kafka) or ce- (NATS) headers.

The store is the one the global flags name: --server URL (the realistic deployment: the relay
is a client of the server, which keeps its checkpoint and lease), --postgres, or the data
directory (which the relay then holds: no other process can open it). Run a relay of one
--name on several machines for failover: one publishes, the others stand by and take over
about --lease-ttl after it dies. "annals serve" can run relays itself (relays: in its config
file, the same keys as these flags). See docs/bridges.md.

Exit status: 0 after Ctrl-C or SIGTERM (the checkpoint of what was acknowledged is written
first), 1 when the relay stopped on an error (one line on stderr says which), 2 for a usage
error.`

func (m *Main) newRelayCmd() *cobra.Command {
	var (
		spec   relaySpec
		common bridgeCommon
	)
	cmd := &cobra.Command{
		Use:   "relay",
		Short: "Publish the store's events to Kafka or NATS JetStream, exactly once in effect",
		Long:  relayLong,
		Example: `  annals --server http://localhost:2113 relay --name orders --kafka localhost:9092 --category order
  annals --server http://localhost:2113 relay --name all-events --nats nats://localhost:4222
  annals relay --config relay.yaml`,
		Args: argsBetween(0, 0, "no arguments"),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := m.applyBridgeConfig(cmd, common.configPath, relaySettings); err != nil {
				return err
			}
			plan, err := spec.build(cmd.Flags().Changed, flagSetter)
			if err != nil {
				return usageErrorf(cmd, "%s", trimSentinels(err.Error()))
			}
			return m.runBridge(cmd.Context(), &common, "relay", true, func(store annals.Store, log *slog.Logger) (*bridgeWorker, func() server.BridgeStatuses) {
				w := relayWorker(plan, store, supervisor.Policy{}, log)
				return w, func() server.BridgeStatuses {
					return server.BridgeStatuses{Relays: []relay.Status{relayStatus(w, plan)}}
				}
			})
		},
	}
	spec.register(cmd.Flags())
	common.register(cmd.Flags(), "relay")
	return cmd
}
