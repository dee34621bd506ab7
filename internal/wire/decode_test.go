package wire

import (
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	"github.com/annalsdb/annals"
	annalsv1 "github.com/annalsdb/annals/internal/gen/annals/v1"
	"github.com/google/go-cmp/cmp"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"
)

// viaProto decodes a ReadAllResponse the ordinary way: proto.Unmarshal, then RecordedFromProto.
func viaProto(b []byte) ([]annals.RecordedEvent, error) {
	var m annalsv1.ReadAllResponse
	if err := proto.Unmarshal(b, &m); err != nil {
		return nil, err
	}
	var out []annals.RecordedEvent
	for _, pm := range m.Events {
		e, err := RecordedFromProto(pm)
		if err != nil {
			return nil, err
		}
		out = append(out, e)
	}
	return out, nil
}

func randomRecorded(r *rand.Rand) *annalsv1.RecordedEvent {
	pick := func(ss ...string) string { return ss[r.IntN(len(ss))] }
	var u annals.UUID
	for i := range u {
		u[i] = byte(r.Uint32())
	}
	m := &annalsv1.RecordedEvent{
		Id: u.String(), Stream: pick("order-1", "order-2", "cart-é", ""), Type: pick("Placed", "Shipped", ""),
		ContentType: pick("", "application/json", "text/plain"), Revision: r.Uint64N(1000), Position: r.Uint64(),
	}
	if r.IntN(2) == 0 {
		m.Id = strings.ToUpper(m.Id)
	}
	if n := r.IntN(300); n > 0 {
		m.Data = []byte(strings.Repeat("d", n))
	}
	if r.IntN(3) == 0 {
		m.Metadata = []byte(`{"m":1}`)
	}
	switch r.IntN(3) {
	case 0:
		m.Time = timestamppb.New(time.Unix(r.Int64N(1<<40)-1<<39, r.Int64N(1e9)))
	case 1:
		m.Time = &timestamppb.Timestamp{}
	}
	return m
}

func TestDecoderMatchesProto(t *testing.T) {
	seed := rand.Uint64()
	t.Logf("seed %d", seed)
	r := rand.New(rand.NewPCG(seed, 0))
	var d Decoder
	for range 200 {
		m := &annalsv1.ReadAllResponse{}
		for range r.IntN(20) {
			m.Events = append(m.Events, randomRecorded(r))
		}
		b, err := proto.Marshal(m)
		if err != nil {
			t.Fatal(err)
		}
		// Unknown fields, at the top and in an event, are skipped.
		b = protowire.AppendTag(b, 99, protowire.BytesType)
		b = protowire.AppendBytes(b, []byte("x"))
		want, err := viaProto(b)
		if err != nil {
			t.Fatal(err)
		}
		got, err := d.AppendEvents(nil, b, 1)
		if err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff(want, got); diff != "" {
			t.Fatalf("decoded events differ from proto's (-want +got):\n%s", diff)
		}
		// The events share nothing with the input.
		for i := range b {
			b[i] = 0
		}
		if diff := cmp.Diff(want, got); diff != "" {
			t.Fatalf("decoded events changed with their input (-want +got):\n%s", diff)
		}
	}
}

func TestDecoderErrors(t *testing.T) {
	good := randomRecorded(rand.New(rand.NewPCG(1, 2)))
	for name, m := range map[string]*annalsv1.RecordedEvent{
		"bad id":    {Id: "nope", Stream: "s", Type: "t"},
		"no id":     {Stream: "s", Type: "t"},
		"bad hex":   {Id: strings.Replace(good.Id, good.Id[:1], "g", 1)},
		"bad utf-8": {Id: good.Id, Stream: "\xff"},
	} {
		b, err := proto.Marshal(&annalsv1.ReadAllResponse{Events: []*annalsv1.RecordedEvent{m}})
		if err != nil && name != "bad utf-8" {
			t.Fatal(err)
		}
		if name == "bad utf-8" {
			b, _ = proto.MarshalOptions{}.Marshal(&annalsv1.ReadAllResponse{}) // proto refuses to encode it
			ev := protowire.AppendTag(nil, 1, protowire.BytesType)
			ev = protowire.AppendString(ev, good.Id)
			ev = protowire.AppendTag(ev, 2, protowire.BytesType)
			ev = protowire.AppendString(ev, "\xff")
			b = protowire.AppendTag(b, 1, protowire.BytesType)
			b = protowire.AppendBytes(b, ev)
		}
		var d Decoder
		if _, err := d.AppendEvents(nil, b, 1); err == nil {
			t.Errorf("%s: got no error", name)
		}
		if _, err := viaProto(b); err == nil {
			t.Errorf("%s: proto gave no error either", name)
		}
	}
}

// FuzzDecoder checks the decoder against proto.Unmarshal and RecordedFromProto: the same
// events, or an error from both.
func FuzzDecoder(f *testing.F) {
	r := rand.New(rand.NewPCG(3, 4))
	for range 8 {
		b, _ := proto.Marshal(&annalsv1.ReadAllResponse{Events: []*annalsv1.RecordedEvent{randomRecorded(r), randomRecorded(r)}})
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		want, werr := viaProto(b)
		var d Decoder
		got, gerr := d.AppendEvents(nil, b, 1)
		if (werr == nil) != (gerr == nil) {
			t.Fatalf("proto: %v; decoder: %v", werr, gerr)
		}
		if werr == nil {
			if diff := cmp.Diff(want, got); diff != "" {
				t.Fatalf("decoded events differ from proto's (-want +got):\n%s", diff)
			}
		}
	})
}

func TestParseUUID(t *testing.T) {
	id := annals.NewUUID()
	good := id.String()
	for _, s := range []string{good, strings.ToUpper(good), "", "nope", good[:35], good + "0"} {
		want, werr := annals.ParseUUID(s)
		got, ok := parseUUID([]byte(s))
		if ok != (werr == nil) || ok && got != want {
			t.Errorf("parseUUID(%q) = %v, %v; ParseUUID gives %v, %v", s, got, ok, want, werr)
		}
	}
	// Every byte in every digit's place.
	for i := range len(good) {
		for c := range 256 {
			s := good[:i] + string([]byte{byte(c)}) + good[i+1:]
			want, werr := annals.ParseUUID(s)
			got, ok := parseUUID([]byte(s))
			if ok != (werr == nil) || ok && got != want {
				t.Fatalf("parseUUID(%q) = %v, %v; ParseUUID gives %v, %v", s, got, ok, want, werr)
			}
		}
	}
}

// TestDecoderDataOwned checks that an event's data and metadata, which share a block with
// the other events', can be appended to without changing the others'.
func TestDecoderDataOwned(t *testing.T) {
	var b []byte
	for i := range 3 {
		e := annals.RecordedEvent{ID: annals.NewUUID(), Data: []byte{byte('a' + i)}, Metadata: []byte{byte('x' + i)}}
		b = AppendEvents(b, 1, []annals.RecordedEvent{e})
	}
	var d Decoder
	events, err := d.AppendEvents(nil, b, 1)
	if err != nil {
		t.Fatal(err)
	}
	_ = append(events[0].Data, "!!"...)
	_ = append(events[0].Metadata, "!!"...)
	var got string
	for _, e := range events {
		got += string(e.Data) + string(e.Metadata)
	}
	if got != "axbycz" {
		t.Errorf("after appending to the first event's data and metadata: got %q, want %q", got, "axbycz")
	}
}
