package kafkabus

import (
	"strings"

	"github.com/annalsdb/annals"
	"github.com/annalsdb/annals/bridge"
	"github.com/twmb/franz-go/pkg/kgo"
)

// Dedup drops records a consumer already handled, by event id (the annals-id header, or ce_id
// in the CloudEvents formats, or the id in a structured CloudEvent). See bridge.Dedup for its
// bound. It is safe for concurrent use.
type Dedup struct {
	seen *bridge.Dedup
}

// NewDedup returns a Dedup that remembers up to size ids (0: bridge.DefaultDedupSize).
func NewDedup(size int) *Dedup { return &Dedup{seen: bridge.NewDedup(size)} }

// Duplicate reports whether r carries an event id seen before, and remembers it. A record
// with no event id is never a duplicate.
func (d *Dedup) Duplicate(r *kgo.Record) bool {
	m := Message(r)
	if m.ID.IsZero() {
		return false
	}
	return d.seen.Seen(m.ID)
}

// ceID is the CloudEvents id attribute in binary mode on Kafka.
const ceID = "ce_id"

// Message returns r as a bridge.Message (for bridge.Recorded): the topic as Subject, the
// key, the headers and the value. Its ID is the event id the record carries (the annals-id
// header, the ce_id header, or the id of a structured CloudEvent), read as a UUID or, when it
// is not one, as bridge.DerivedID of it; zero when the record carries none.
func Message(r *kgo.Record) bridge.Message {
	m := bridge.Message{Subject: r.Topic, Key: r.Key, Value: r.Value}
	if len(r.Headers) > 0 {
		m.Headers = make([]bridge.Header, len(r.Headers))
		for i, h := range r.Headers {
			m.Headers[i] = bridge.Header{Key: h.Key, Value: h.Value}
		}
	}
	m.ID = recordID(&m)
	return m
}

// recordID returns the event id m carries, or zero.
func recordID(m *bridge.Message) annals.UUID {
	for _, key := range []string{bridge.HeaderID, ceID} {
		if v, ok := m.Get(key); ok && len(v) > 0 {
			return idOf(string(v))
		}
	}
	if ct, ok := m.Get(bridge.HeaderContentType); ok && strings.HasPrefix(strings.ToLower(string(ct)), "application/cloudevents+json") {
		if ev, err := bridge.Recorded(m); err == nil {
			return ev.ID
		}
	}
	return annals.UUID{}
}

// idOf reads an id: a UUID, or else the UUID bridge.DerivedID makes of it.
func idOf(s string) annals.UUID {
	if id, err := annals.ParseUUID(s); err == nil {
		return id
	}
	return bridge.DerivedID(s)
}
