package kafkabus

import (
	"github.com/annalsdb/annals/bridge"
	"github.com/twmb/franz-go/pkg/kgo"
)

// Dedup drops records a consumer already handled, by event id (the annals-id header, or ce_id
// in the CloudEvents formats, or the id in a structured CloudEvent: bridge.EventID). See
// bridge.Dedup for its bound. It is safe for concurrent use.
type Dedup struct {
	seen *bridge.Dedup
}

// NewDedup returns a Dedup that remembers up to size ids (0: bridge.DefaultDedupSize).
func NewDedup(size int) *Dedup { return &Dedup{seen: bridge.NewDedup(size)} }

// Duplicate reports whether r carries an event id seen before, and remembers it. A record
// with no event id (none that is a UUID) is never a duplicate.
func (d *Dedup) Duplicate(r *kgo.Record) bool {
	m := Message(r)
	if m.ID.IsZero() {
		return false
	}
	return d.seen.Seen(m.ID)
}

// Message returns r as a bridge.Message (for bridge.Recorded): the topic as Subject, the
// key, the headers and the value. Its ID is the event id the record carries
// (bridge.EventID), zero when it carries none.
func Message(r *kgo.Record) bridge.Message {
	m := bridge.Message{Subject: r.Topic, Key: r.Key, Value: r.Value}
	if len(r.Headers) > 0 {
		m.Headers = make([]bridge.Header, len(r.Headers))
		for i, h := range r.Headers {
			m.Headers[i] = bridge.Header{Key: h.Key, Value: h.Value}
		}
	}
	m.ID, _ = bridge.EventID(&m)
	return m
}
