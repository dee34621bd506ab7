package wire

import (
	"bytes"
	"math"
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	"github.com/annalsdb/annals"
	annalsv1 "github.com/annalsdb/annals/internal/gen/annals/v1"
	"github.com/google/go-cmp/cmp"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/testing/protocmp"
)

// checkEncoding checks that AppendEvents gives for events the bytes proto.Marshal gives for
// a ReadAllResponse of their messages, and that the generated code decodes them back to the
// same messages.
func checkEncoding(t *testing.T, events []annals.RecordedEvent) {
	t.Helper()
	m := &annalsv1.ReadAllResponse{}
	for i := range events {
		m.Events = append(m.Events, RecordedToProto(&events[i]))
	}
	want, err := proto.MarshalOptions{Deterministic: true}.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	got := AppendEvents([]byte("prefix"), 1, events)
	if !bytes.HasPrefix(got, []byte("prefix")) {
		t.Fatalf("AppendEvents lost what b held")
	}
	got = got[len("prefix"):]
	if !bytes.Equal(got, want) {
		t.Fatalf("AppendEvents of %d events:\n got %.200x\nwant %.200x", len(events), got, want)
	}
	var back annalsv1.ReadAllResponse
	if err := proto.Unmarshal(got, &back); err != nil {
		t.Fatal(err)
	}
	if !proto.Equal(m, &back) {
		t.Fatalf("decoded by proto.Unmarshal (-sent +decoded):\n%s", cmp.Diff(m, &back, protocmp.Transform()))
	}
}

func TestAppendEventsMatchesProto(t *testing.T) {
	id := annals.UUID{0x01, 0x23, 0x45, 0x67, 0x89, 0xab, 0xcd, 0xef, 0xfe, 0xdc, 0xba, 0x98, 0x76, 0x54, 0x32, 0x10}
	full := annals.RecordedEvent{
		ID: id, Stream: "order-1", Type: "Placed", ContentType: "application/json",
		Data: []byte(`{"a":1}`), Metadata: []byte(`{"m":2}`), Revision: 3, Position: 300,
		Time: time.Date(2026, 12, 3, 13, 22, 26, 123456789, time.UTC),
	}
	with := func(f func(e *annals.RecordedEvent)) annals.RecordedEvent {
		e := full
		f(&e)
		return e
	}
	for name, events := range map[string][]annals.RecordedEvent{
		"none":           nil,
		"every field":    {full},
		"zero":           {{}},
		"zero id":        {with(func(e *annals.RecordedEvent) { e.ID = annals.UUID{} })},
		"no metadata":    {with(func(e *annals.RecordedEvent) { e.Metadata = nil })},
		"empty data":     {with(func(e *annals.RecordedEvent) { e.Data = []byte{} })},
		"no strings":     {with(func(e *annals.RecordedEvent) { e.Stream, e.Type, e.ContentType = "", "", "" })},
		"unicode":        {with(func(e *annals.RecordedEvent) { e.Stream, e.Type = "cart-é", "Añadido✓" })},
		"revision 0":     {with(func(e *annals.RecordedEvent) { e.Revision = 0 })},
		"max numbers":    {with(func(e *annals.RecordedEvent) { e.Revision, e.Position = math.MaxUint64, math.MaxUint64 })},
		"unix epoch":     {with(func(e *annals.RecordedEvent) { e.Time = time.Unix(0, 0).UTC() })},
		"nanos only":     {with(func(e *annals.RecordedEvent) { e.Time = time.Unix(0, 1).UTC() })},
		"seconds only":   {with(func(e *annals.RecordedEvent) { e.Time = time.Unix(1, 0).UTC() })},
		"before 1970":    {with(func(e *annals.RecordedEvent) { e.Time = time.Unix(-12345, 999999999).UTC() })},
		"zero time":      {with(func(e *annals.RecordedEvent) { e.Time = time.Time{} })},
		"local time":     {with(func(e *annals.RecordedEvent) { e.Time = e.Time.In(time.FixedZone("x", 3600)) })},
		"large data":     {with(func(e *annals.RecordedEvent) { e.Data = bytes.Repeat([]byte("x"), 1<<20) })},
		"length 127-128": {with(func(e *annals.RecordedEvent) { e.Data = bytes.Repeat([]byte("x"), 127-67) })},
		"several":        {full, {}, with(func(e *annals.RecordedEvent) { e.Stream = "other" })},
	} {
		t.Run(name, func(t *testing.T) { checkEncoding(t, events) })
	}
}

func TestAppendEventsMatchesProtoRandom(t *testing.T) {
	seed := rand.Uint64()
	t.Logf("seed %d", seed)
	r := rand.New(rand.NewPCG(seed, 0))
	for range 500 {
		events := make([]annals.RecordedEvent, r.IntN(10))
		for i := range events {
			e, err := RecordedFromProto(randomRecorded(r))
			if err != nil {
				t.Fatal(err)
			}
			if r.IntN(50) == 0 {
				e.Data = []byte(strings.Repeat("d", r.IntN(70000)))
			}
			events[i] = e
		}
		checkEncoding(t, events)
	}
}

func TestAppendEventsOtherField(t *testing.T) {
	e := annals.RecordedEvent{ID: annals.NewUUID(), Stream: "s", Type: "T", Time: time.Now()}
	m := &annalsv1.SubscribeResponse{Content: &annalsv1.SubscribeResponse_Events{Events: &annalsv1.EventBatch{Events: []*annalsv1.RecordedEvent{RecordedToProto(&e)}}}}
	want, err := proto.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	inner := AppendEvents(nil, 1, []annals.RecordedEvent{e})
	got := append([]byte{2<<3 | 2}, byte(len(inner)))
	if got = append(got, inner...); !bytes.Equal(got, want) {
		t.Fatalf("got %x, want %x", got, want)
	}
}
