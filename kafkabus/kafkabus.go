// Package kafkabus connects Annals to Apache Kafka with github.com/twmb/franz-go: a
// [Publisher] for the relay (package relay), a [Source] for the ingest (package ingest), and
// [Dedup], the consumer-side helper that drops the duplicates a relay's restart publishes.
//
// Records are keyed by stream id, so that one stream's events go to one partition and stay
// in order; the producer is idempotent (the broker drops the retries of one producer
// session), and a relay restart's duplicates carry the event id in the annals-id header (ce_id
// in the CloudEvents formats) for consumers to drop.
package kafkabus

import (
	"fmt"

	"github.com/annalsdb/annals"
)

// invalid returns an error matching annals.ErrInvalidArgument.
func invalid(format string, args ...any) error {
	return fmt.Errorf("%w: kafkabus: %s", annals.ErrInvalidArgument, fmt.Sprintf(format, args...))
}
