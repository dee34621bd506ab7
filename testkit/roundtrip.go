package testkit

import (
	"encoding/json"
	"fmt"
	"reflect"

	"github.com/annalsdb/annals"
	"github.com/annalsdb/annals/codec"
	"github.com/google/go-cmp/cmp"
)

// roundTrip encodes the event v as it is appended and decodes it back as a handler or a
// projection reads it: with reg, through its registered type (reg.Encode, reg.Decode); without,
// through encoding/json into a new value of v's Go type. It returns an error that names the
// event when v does not encode or decode, decodes as a value that is not an as (when as is
// not nil), or decodes as a different value (a diff with opts).
func roundTrip(reg *codec.Registry, v any, as reflect.Type, opts []cmp.Option) error {
	got, err := decodeBack(reg, v)
	if err != nil {
		return fmt.Errorf("event %T%+v does not survive the codec: %w", v, v, err)
	}
	if as != nil && !reflect.TypeOf(got).AssignableTo(as) {
		return fmt.Errorf("event %T%+v decodes as a %T, which is not a %s", v, v, got, as)
	}
	want := v
	if rv := reflect.ValueOf(v); rv.Kind() == reflect.Pointer && !rv.IsNil() {
		want = rv.Elem().Interface() // the codec decodes a pointer event as its value
	}
	if diff := cmp.Diff(want, got, opts...); diff != "" {
		return fmt.Errorf("event %T%+v does not survive the codec (unexported fields and fields tagged json:\"-\" are lost) (-event +decoded):\n%s", v, v, diff)
	}
	return nil
}

func decodeBack(reg *codec.Registry, v any) (any, error) {
	if reg == nil {
		b, err := json.Marshal(v)
		if err != nil {
			return nil, err
		}
		t := reflect.TypeOf(v)
		if t == nil {
			return nil, fmt.Errorf("a nil event")
		}
		if t.Kind() == reflect.Pointer {
			t = t.Elem()
		}
		out := reflect.New(t)
		if err := json.Unmarshal(b, out.Interface()); err != nil {
			return nil, err
		}
		return out.Elem().Interface(), nil
	}
	ev, err := reg.Encode(v, codec.Metadata{})
	if err != nil {
		return nil, err
	}
	got, _, err := reg.Decode(annals.RecordedEvent{Stream: "testkit-1", Type: ev.Type, ContentType: ev.ContentType, Data: ev.Data, Metadata: ev.Metadata})
	return got, err
}
