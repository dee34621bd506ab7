package wire

import (
	"encoding/json"
	"errors"
	"math"
	"testing"
	"time"

	"github.com/annalsdb/annals"
	annalsv1 "github.com/annalsdb/annals/internal/gen/annals/v1"
	"github.com/google/go-cmp/cmp"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"
)

func TestExpectedRoundTrip(t *testing.T) {
	for _, e := range []annals.ExpectedRevision{annals.Any, annals.NoStream, annals.StreamExists, annals.Exact(0), annals.Exact(42), annals.Exact(math.MaxInt64)} {
		m := ExpectedToProto(e)
		b, err := proto.Marshal(m)
		if err != nil {
			t.Fatal(err)
		}
		var back annalsv1.ExpectedRevision
		if err := proto.Unmarshal(b, &back); err != nil {
			t.Fatal(err)
		}
		if got := ExpectedFromProto(&back); got != e {
			t.Errorf("%v: got %v after the round trip", e, got)
		}
	}
	// Unset means any; invalid stays invalid on the other side.
	if got := ExpectedFromProto(nil); got != annals.Any {
		t.Errorf("nil: got %v, want any", got)
	}
	for _, e := range []annals.ExpectedRevision{-4, -7, annals.ExpectedRevision(math.MinInt64)} {
		if got := ExpectedFromProto(ExpectedToProto(e)); got.Validate() == nil {
			t.Errorf("%d: got valid %v after the round trip, want an invalid expectation", int64(e), got)
		}
	}
	big := &annalsv1.ExpectedRevision{Kind: &annalsv1.ExpectedRevision_Revision{Revision: math.MaxInt64 + 1}}
	if err := ExpectedFromProto(big).Validate(); !errors.Is(err, annals.ErrInvalidArgument) {
		t.Errorf("revision 2^63: got %v, want ErrInvalidArgument", err)
	}
}

func TestEventRoundTrip(t *testing.T) {
	e := annals.Event{ID: annals.NewUUID(), Type: "T", ContentType: "text/plain", Data: []byte("d"), Metadata: []byte("m")}
	got, err := EventFromProto(EventToProto(&e))
	if err != nil || !cmp.Equal(got, e) {
		t.Errorf("got %+v, %v; want %+v", got, err, e)
	}
	if m := EventToProto(&annals.Event{Type: "T"}); m.Id != "" {
		t.Errorf("zero ID sent as %q, want empty", m.Id)
	}
	if _, err := EventFromProto(&annalsv1.Event{Id: "nope", Type: "T"}); !errors.Is(err, annals.ErrInvalidArgument) {
		t.Errorf("bad id: got %v, want ErrInvalidArgument", err)
	}

	r := annals.RecordedEvent{ID: e.ID, Stream: "s-1", Type: "T", ContentType: "application/json", Data: []byte(`{}`),
		Revision: 3, Position: 9, Time: time.Date(2026, 12, 1, 8, 0, 0, 123456789, time.UTC)}
	back, err := RecordedFromProto(RecordedToProto(&r))
	if err != nil || !cmp.Equal(back, r) || back.Time.Location() != time.UTC {
		t.Errorf("recorded: got %+v, %v; want %+v in UTC", back, err, r)
	}
}

func TestMetadataRoundTrip(t *testing.T) {
	m := annals.StreamMetadata{MaxCount: 5, MaxAge: 36 * time.Hour, TruncateBefore: 2,
		ACL: &annals.ACL{Read: []string{"r"}, MetaWrite: []string{"ops"}}, Custom: json.RawMessage(`{"a":[1,2]}`)}
	got, err := MetadataFromProto(MetadataToProto(&m))
	if err != nil || !cmp.Equal(got, m) {
		t.Errorf("got %+v, %v; want %+v", got, err, m)
	}
	if got, err := MetadataFromProto(nil); err != nil || !cmp.Equal(got, annals.StreamMetadata{}) {
		t.Errorf("nil: got %+v, %v; want the zero metadata", got, err)
	}
	bad := &annalsv1.StreamMetadata{MaxAge: &durationpb.Duration{Seconds: 1, Nanos: -1}}
	if _, err := MetadataFromProto(bad); !errors.Is(err, annals.ErrInvalidArgument) {
		t.Errorf("invalid max age: got %v, want ErrInvalidArgument", err)
	}
}

func TestTimeAndLimit(t *testing.T) {
	if ts := TimeToProto(time.Time{}); ts != nil {
		t.Errorf("zero time: got %v, want nil", ts)
	}
	if _, err := TimeFromProto(&timestamppb.Timestamp{Seconds: math.MaxInt64}); !errors.Is(err, annals.ErrInvalidArgument) {
		t.Errorf("timestamp out of range: got %v, want ErrInvalidArgument", err)
	}
	if _, err := LimitFromProto(1 << 63); !errors.Is(err, annals.ErrInvalidArgument) {
		t.Errorf("limit 2^63: got %v, want ErrInvalidArgument", err)
	}
	for _, want := range []int{7, math.MaxInt32 + 1, math.MaxInt} {
		if n, err := LimitFromProto(uint64(want)); n != want || err != nil {
			t.Errorf("limit %d: got %d, %v", want, n, err)
		}
	}
}
