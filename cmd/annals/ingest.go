package main

import (
	"log/slog"

	"github.com/annalsdb/annals"
	"github.com/annalsdb/annals/ingest"
	"github.com/annalsdb/annals/server"
	"github.com/annalsdb/annals/supervisor"
	"github.com/spf13/cobra"
)

const ingestLong = `Append the messages of a Kafka topic or a JetStream stream to streams of the store, until
Ctrl-C or SIGTERM: the mirror of 'annals relay'. Each message becomes one event, appended to
the stream --stream names (a template; default {stream}, the annals-stream header or the
CloudEvents subject of the message), batch by batch; the broker's offsets are committed only
after the batch's events are durable, and the ingest keeps its own progress in the store, so
that a message delivered again (after a crash, or a relay's duplicate) is appended once.

The event id is the message's: the annals-id header, the CloudEvents id, or Nats-Msg-Id when
it is a UUID, else a UUID derived from it (a CloudEvents id with its source), else one
derived from where the message was read (topic, partition and offset, or the JetStream
stream and sequence). The type is the annals-type header or the CloudEvents type, else
--type; a message with none stops the ingest with an error naming it.

Kafka: --kafka BROKERS --topic T (repeatable) [--group G, default annals-ingest-NAME].
NATS: --nats URL --nats-stream S [--filter-subject SUBJECT, repeatable].

The store is the one the global flags name (--server URL, --postgres, or the data directory).
Run an ingest of one --name on several machines for failover, as a relay. "annals serve" can
run ingests itself (ingests: in its config file, the same keys as these flags). See
docs/bridges.md.`

func (m *Main) newIngestCmd() *cobra.Command {
	var (
		spec   ingestSpec
		common bridgeCommon
	)
	cmd := &cobra.Command{
		Use:   "ingest",
		Short: "Append the messages of a Kafka topic or JetStream stream to the store, once each",
		Long:  ingestLong,
		Example: `  annals --server http://localhost:2113 ingest --name payments --kafka localhost:9092 --topic payments --stream 'payment-{key}' --type PaymentReceived
  annals --server http://localhost:2113 ingest --name partner --nats nats://localhost:4222 --nats-stream PARTNER`,
		Args: argsBetween(0, 0, "no arguments"),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := m.applyBridgeConfig(cmd, common.configPath, ingestSettings); err != nil {
				return err
			}
			plan, err := spec.build(cmd.Flags().Changed, flagSetter)
			if err != nil {
				return usageErrorf(cmd, "%s", trimSentinels(err.Error()))
			}
			plan.hints = m.storeHints(plan.hints)
			return m.runBridge(cmd.Context(), &common, "ingest", false, func(store annals.Store, log *slog.Logger) (*bridgeWorker, func() server.BridgeStatuses) {
				w := ingestWorker(plan, store, supervisor.Policy{}, log)
				return w, func() server.BridgeStatuses {
					return server.BridgeStatuses{Ingests: []ingest.Status{ingestStatus(w, plan)}}
				}
			})
		},
	}
	spec.register(cmd.Flags())
	common.register(cmd.Flags(), "ingest")
	return cmd
}
