package kafkabus_test

import (
	"fmt"
	"strconv"
	"sync/atomic"
	"testing"

	"github.com/annalsdb/annals/bridge"
	"github.com/annalsdb/annals/internal/bustest"
	"github.com/annalsdb/annals/internal/testwait"
	"github.com/annalsdb/annals/kafkabus"
	"github.com/twmb/franz-go/pkg/kgo"
)

// checkStreams checks records read from a topic: after dropping repeated event ids, each
// stream's revisions are 0, 1, 2, … in offset order, and every stream has perStream of them.
// It returns the number of repeated records dropped.
func checkStreams(t *testing.T, recs []*kgo.Record, streams, perStream int) int {
	t.Helper()
	seen := map[string]bool{}
	next := map[string]int{}
	dups := 0
	for _, r := range recs {
		id := header(r, bridge.HeaderID)
		if seen[id] {
			dups++
			continue
		}
		seen[id] = true
		stream := header(r, bridge.HeaderStream)
		rev, err := strconv.Atoi(header(r, bridge.HeaderRevision))
		if err != nil {
			t.Fatalf("record %d/%d: revision: %v", r.Partition, r.Offset, err)
		}
		if rev != next[stream] {
			t.Fatalf("stream %s: revision %d at %d/%d where %d was next", stream, rev, r.Partition, r.Offset, next[stream])
		}
		next[stream]++
	}
	if len(next) != streams {
		t.Fatalf("%d streams arrived, want %d", len(next), streams)
	}
	for s, n := range next {
		if n != perStream {
			t.Fatalf("stream %s: %d events arrived, want %d", s, n, perStream)
		}
	}
	return dups
}

func TestPublisherBrokerOutage(t *testing.T) {
	k := bustest.StartKafka(t, nil)
	p := openPublisher(t, k, &kafkabus.PublisherOptions{MaxBufferedRecords: 300})
	const streams, perStream = 10, 300
	var a acks
	var published atomic.Int64
	writerDone := make(chan error, 1)
	go func() {
		for rev := range perStream {
			for s := range streams {
				stream := fmt.Sprintf("order-%d", s)
				if err := p.Publish(t.Context(), message("events", stream, rev, []byte("{}")), a.done); err != nil {
					writerDone <- err
					return
				}
				published.Add(1)
			}
		}
		writerDone <- nil
	}()
	testwait.Until(t, "500 acks before the outage", func() bool { n, _ := a.count(); return n >= 500 })
	k.Stop()
	acked, _ := a.count()
	// The writer goes on until the publisher's bound blocks it.
	testwait.Until(t, "publishes to go on while the broker is down", func() bool { return published.Load() >= int64(acked)+300 })
	k.Start()
	if err := <-writerDone; err != nil {
		t.Fatal(err)
	}
	testwait.Until(t, "every publish answered", func() bool { n, _ := a.count(); return n == streams*perStream })
	if _, errs := a.count(); len(errs) > 0 {
		t.Fatalf("%d publishes failed across the outage, first: %v", len(errs), errs[0])
	}
	dups := checkStreams(t, k.ReadAll(t.Context(), t, "events"), streams, perStream)
	t.Logf("%d records written twice across the outage", dups)
}
