package bustest

import (
	"testing"

	"github.com/twmb/franz-go/pkg/kfake"
)

// Kafka is an in-process Kafka cluster.
type Kafka struct {
	t       testing.TB
	cluster *kfake.Cluster
}
