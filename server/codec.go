package server

import (
	"errors"
	"fmt"

	"connectrpc.com/connect"
	annalsv1 "github.com/annalsdb/annals/internal/gen/annals/v1"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
)

// strictJSON is the server's JSON codec: Connect's own, but a field the API does not know is
// an error (Connect's discards it), so that a typo such as "revison" in an expectation or
// "dat" in an event is refused with InvalidArgument naming the field instead of turning off
// the check or dropping the data. Connect answers a decoding error with InvalidArgument.
type strictJSON struct {
	name string
}

// jsonCodecs are the codecs that replace Connect's JSON ones: it registers the same codec
// under both names a client may use.
var jsonCodecs = []connect.HandlerOption{
	connect.WithCodec(strictJSON{name: "json"}),
	connect.WithCodec(strictJSON{name: "json; charset=utf-8"}),
}

func (c strictJSON) Name() string { return c.name }

func (c strictJSON) Marshal(m any) ([]byte, error) { return c.MarshalAppend(nil, m) }

// MarshalAppend lets Connect marshal answers into its pooled buffers, as its own codec does.
func (strictJSON) MarshalAppend(dst []byte, m any) ([]byte, error) {
	pm, ok := m.(proto.Message)
	if !ok {
		return nil, fmt.Errorf("annals server: cannot marshal %T", m)
	}
	pm, err := withEventFields(pm)
	if err != nil {
		return nil, err
	}
	return protojson.MarshalOptions{}.MarshalAppend(dst, pm)
}

// withEventFields returns a message of the types that carry events as the encoding of a
// [protoBatch] (in their unknown fields) with the events decoded into their fields, for JSON;
// other messages as they are.
func withEventFields(m proto.Message) (proto.Message, error) {
	switch m.(type) {
	case *annalsv1.ReadStreamResponse, *annalsv1.ReadAllResponse, *annalsv1.SubscribeResponse:
	default:
		return m, nil
	}
	b, err := proto.Marshal(m)
	if err != nil {
		return nil, err
	}
	decoded := m.ProtoReflect().New().Interface()
	if err := proto.Unmarshal(b, decoded); err != nil {
		return nil, err
	}
	return decoded, nil
}

func (strictJSON) Unmarshal(b []byte, m any) error {
	pm, ok := m.(proto.Message)
	if !ok {
		return fmt.Errorf("annals server: cannot unmarshal into %T", m)
	}
	if len(b) == 0 {
		return errors.New("empty body: want a JSON object")
	}
	return protojson.UnmarshalOptions{DiscardUnknown: false}.Unmarshal(b, pm)
}
