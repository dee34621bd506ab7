package client

import (
	"fmt"
	"sync"

	"github.com/annalsdb/annals"
	"github.com/annalsdb/annals/internal/wire"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
)

// codec is the protobuf codec of the client's reads and subscriptions. Their responses are
// decoded by [wire.Decoder] straight into annals.RecordedEvents: a *readBatch for
// ReadStreamResponse and ReadAllResponse, a *subscribeMessage for SubscribeResponse. Other
// messages (the requests) go through proto as usual.
type codec struct{}

func (codec) Name() string { return "proto" }

func (codec) Marshal(m any) ([]byte, error) { return codec{}.MarshalAppend(nil, m) }

// MarshalAppend lets Connect marshal requests into its pooled buffers.
func (codec) MarshalAppend(dst []byte, m any) ([]byte, error) {
	pm, ok := m.(proto.Message)
	if !ok {
		return nil, fmt.Errorf("annals client: cannot marshal %T", m)
	}
	return proto.MarshalOptions{}.MarshalAppend(dst, pm)
}

func (codec) Unmarshal(b []byte, m any) error {
	switch m := m.(type) {
	case *readBatch:
		var d wire.Decoder
		var err error
		m.events, err = d.AppendEvents(getEvents(), b, 1) // ReadStreamResponse.events, ReadAllResponse.events
		return err
	case *subscribeMessage:
		return m.unmarshal(b)
	case proto.Message:
		return proto.Unmarshal(b, m)
	}
	return fmt.Errorf("annals client: cannot unmarshal %T", m)
}

// readBatch is one message of a ReadStream or ReadAll call.
type readBatch struct {
	events []annals.RecordedEvent
}

// subscribeMessage is one message of a Subscribe call: started (with from), or events.
type subscribeMessage struct {
	started bool
	from    uint64
	events  []annals.RecordedEvent
}

// unmarshal decodes a SubscribeResponse: its oneof content is SubscriptionStarted started = 1
// (from = 1) or EventBatch events = 2 (events = 1); the last one present wins.
func (m *subscribeMessage) unmarshal(b []byte) error {
	for len(b) > 0 {
		n, typ, l := protowire.ConsumeTag(b)
		if l < 0 {
			return protowire.ParseError(l)
		}
		b = b[l:]
		if typ != protowire.BytesType || (n != 1 && n != 2) {
			if l = protowire.ConsumeFieldValue(n, typ, b); l < 0 {
				return protowire.ParseError(l)
			}
			b = b[l:]
			continue
		}
		v, l := protowire.ConsumeBytes(b)
		if l < 0 {
			return protowire.ParseError(l)
		}
		b = b[l:]
		if n == 2 {
			var d wire.Decoder
			events, err := d.AppendEvents(getEvents(), v, 1)
			if err != nil {
				return err
			}
			putEvents(m.events)
			*m = subscribeMessage{events: events}
			continue
		}
		putEvents(m.events)
		*m = subscribeMessage{started: true}
		for len(v) > 0 {
			n, typ, l := protowire.ConsumeTag(v)
			if l < 0 {
				return protowire.ParseError(l)
			}
			v = v[l:]
			if n == 1 && typ == protowire.VarintType {
				if m.from, l = protowire.ConsumeVarint(v); l < 0 {
					return protowire.ParseError(l)
				}
			} else if l = protowire.ConsumeFieldValue(n, typ, v); l < 0 {
				return protowire.ParseError(l)
			}
			v = v[l:]
		}
	}
	return nil
}

// eventSlices recycles the slices that batches are decoded into: once a batch has been
// yielded, its events are the caller's copies and the slice is free.
var eventSlices = sync.Pool{New: func() any { return new([]annals.RecordedEvent) }}

func getEvents() []annals.RecordedEvent {
	return (*eventSlices.Get().(*[]annals.RecordedEvent))[:0]
}

// putEvents gives back a slice that nothing refers to any more.
func putEvents(s []annals.RecordedEvent) {
	if cap(s) == 0 || cap(s) > 4096 {
		return
	}
	clear(s) // drop the references to the events' strings and data
	s = s[:0]
	eventSlices.Put(&s)
}
