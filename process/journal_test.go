package process_test

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/annalsdb/annals"
	"github.com/annalsdb/annals/codec"
	"github.com/annalsdb/annals/internal/teststores"
	"github.com/annalsdb/annals/internal/testwait"
	"github.com/annalsdb/annals/process"
	"github.com/google/go-cmp/cmp"
)

// TestJournalKeepsWhatItNeeds: a journal keeps of an event its id, place, time, type and data
// (byte for byte, JSON or not) and of its metadata only the schema version, correlation and
// causation; Evolve sees the event so, live and on replay alike.
func TestJournalKeepsWhatItNeeds(t *testing.T) {
	teststores.Each(t, func(t *testing.T, s annals.Store) {
		seen := func(ev *annals.RecordedEvent) string {
			return fmt.Sprintf("%s %s %q %q", ev.Type, ev.ContentType, ev.Data, ev.Metadata)
		}
		var live []string // the state React saw before each event
		m := process.Manager[[]string, annals.RecordedEvent]{
			Name:   "keep",
			Filter: &annals.Filter{Categories: []string{"thing"}},
			Decode: func(ev annals.RecordedEvent) (annals.RecordedEvent, bool, error) { return ev, true, nil },
			Instance: func(_ annals.RecordedEvent, ev annals.RecordedEvent) (string, bool) {
				return strings.TrimPrefix(ev.Stream, "thing-"), true
			},
			Initial: func() []string { return nil },
			React: func(_ string, st []string, in process.Input[annals.RecordedEvent]) []process.Action {
				live = append(live[:0], st...)
				return nil
			},
			Evolve: func(st []string, in process.Input[annals.RecordedEvent]) []string {
				return append(slices.Clip(st), seen(in.Recorded))
			},
		}
		send := func(context.Context, process.Command) error { return nil }
		r, err := process.NewRunner(s, m, send, nil)
		if err != nil {
			t.Fatal(err)
		}
		md, err := codec.Metadata{SchemaVersion: 2, CorrelationID: "corr", CausationID: "cause", IdempotencyKey: "key-1",
			Extra: map[string]json.RawMessage{"tenant": json.RawMessage(`"acme"`)}}.Marshal()
		if err != nil {
			t.Fatal(err)
		}
		binary := []byte{0, 0xff, '{', '"'}
		for _, ev := range []annals.Event{
			{Type: "Made", Data: []byte(`{"n":1}`), Metadata: md},
			{Type: "Spaced", Data: []byte(`{"n": 2}`)}, // JSON, not as encoding/json writes it
			{Type: "Blob", ContentType: "application/octet-stream", Data: binary, Metadata: []byte("not json")},
		} {
			if _, err := s.Append(context.Background(), "thing-1", annals.Any, ev); err != nil {
				t.Fatal(err)
			}
		}
		stop := start(t, r)
		testwait.UntilNil(t, "the three events", func() error { return r.WaitFor(testwait.Context(t), lastOf(t, s, "thing-1")) })
		stop()

		ct := readOne(t, s, "thing-1").ContentType // the store's default, when an event has none
		want := []string{
			`Made ` + ct + ` "{\"n\":1}" "{\"$schemaVersion\":2,\"$correlationId\":\"corr\",\"$causationId\":\"cause\"}"`,
			`Spaced ` + ct + ` "{\"n\": 2}" ""`,
			`Blob application/octet-stream "\x00\xff{\"" ""`,
		}
		replayed, err := r.State(context.Background(), "1")
		if err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff(want, replayed); diff != "" {
			t.Errorf("state replayed from the journal (-want +got):\n%s", diff)
		}
		if diff := cmp.Diff(want[:2], live); diff != "" {
			t.Errorf("state live, before the last event (-want +got):\n%s", diff)
		}
		var raw []string
		for ev, err := range s.ReadStream(context.Background(), "keep-1", nil) {
			if err != nil {
				t.Fatal(err)
			}
			raw = append(raw, string(ev.Data))
		}
		if len(raw) != 3 {
			t.Fatalf("journal: %d steps, want 3", len(raw))
		}
		for _, leak := range []string{"acme", "key-1", "not json"} {
			if j := strings.Join(raw, "\n"); strings.Contains(j, leak) {
				t.Errorf("the journal keeps %q of the metadata:\n%s", leak, j)
			}
		}
		if !strings.Contains(raw[0], `"data":{"n":1}`) {
			t.Errorf("journal step %s: want the JSON data as is", raw[0])
		}
		if !strings.Contains(raw[2], base64.StdEncoding.EncodeToString(binary)) {
			t.Errorf("journal step %s: want the binary data in base64", raw[2])
		}
	})
}

// lastOf returns the position of the last event of stream.
func lastOf(t *testing.T, s annals.Store, stream string) uint64 {
	t.Helper()
	for ev, err := range s.ReadStream(context.Background(), stream, &annals.ReadOptions{Backwards: true, From: annals.End, Limit: 1}) {
		if err != nil {
			t.Fatal(err)
		}
		return ev.Position
	}
	t.Fatalf("%s is empty", stream)
	return 0
}

// TestOldJournalFormat writes by hand a journal in the format that kept the whole input
// event (an order placed, then its stock reserved and the payment deadline set): a runner
// resumes from it, handles neither event again, fires the deadline it holds, and appends
// its own step after the old ones.
func TestOldJournalFormat(t *testing.T) {
	teststores.Each(t, func(t *testing.T, s annals.Store) {
		ctx := context.Background()
		append1(t, s, "order-1", "Placed", `{"SKU":"apple"}`)
		append1(t, s, "stock-apple", "Reserved", `{"Order":"1"}`)
		placed := readOne(t, s, "order-1")
		reserved := readOne(t, s, "stock-apple")
		due := reserved.Time.Add(time.Hour)
		old := func(ev annals.RecordedEvent, deadlines string) annals.Event {
			data := fmt.Sprintf(`{"input":{"event":{"ID":%q,"Stream":%q,"Type":%q,"ContentType":"","Data":%q,"Metadata":null,"Revision":%d,"Position":%d,"Time":%q}}%s}`,
				ev.ID, ev.Stream, ev.Type, base64.StdEncoding.EncodeToString(ev.Data), ev.Revision, ev.Position, ev.Time.Format(time.RFC3339Nano), deadlines)
			return annals.Event{ID: process.DerivedID("orderflow-1", "event:"+ev.ID.String()), Type: process.StepEventType, Data: []byte(data)}
		}
		if _, err := s.Append(ctx, "orderflow-1", annals.NoStream,
			old(placed, ""),
			old(reserved, fmt.Sprintf(`,"deadlines":[{"set":{"name":"payment","at":%q,"correlationId":%q,"causationId":%q}}]`,
				due.Format(time.RFC3339Nano), placed.ID, reserved.ID)),
		); err != nil {
			t.Fatal(err)
		}

		h := &handlers{store: s, seen: map[string]bool{}}
		clock := newFakeClock(time.Now().Add(time.Minute))
		r, err := process.NewRunner(s, orderManager(time.Hour), h.send, &process.RunnerOptions{Clock: clock})
		if err != nil {
			t.Fatal(err)
		}
		start(t, r)
		testwait.Until(t, "the runner to catch up", func() bool { return r.Status().Position >= lastPosition(t, s) })
		st, err := r.State(ctx, "1")
		if err != nil {
			t.Fatal(err)
		}
		if want := (orderState{Placed: true, Reserved: true, SKU: "apple"}); st != want {
			t.Errorf("state from the old journal: %+v, want %+v", st, want)
		}
		pending := r.Status().Pending
		if len(pending) != 1 || pending[0].Instance != "1" || pending[0].Name != "payment" || !pending[0].At.Equal(due) {
			t.Fatalf("pending from the old journal: %+v, want the payment deadline of order 1 at %v", pending, due)
		}
		clock.Advance(time.Hour)
		testwait.Until(t, "the order cancelled", func() bool { return slices.Equal(types(t, s, "order-1"), []string{"Placed", "Cancelled"}) })
		testwait.Until(t, "the runner to catch up", func() bool { return r.Status().Position >= lastPosition(t, s) })
		h.mu.Lock()
		if want := []string{"order-1 process_test.cancel"}; !slices.Equal(h.sent, want) {
			t.Errorf("commands sent: %q, want %q (the old journal's events handled once)", h.sent, want)
		}
		h.mu.Unlock()
		var inputs []string
		for in, err := range r.Journal(ctx, "1") {
			if err != nil {
				t.Fatal(err)
			}
			switch {
			case in.Recorded != nil:
				inputs = append(inputs, "event "+in.Recorded.Type+" "+string(in.Recorded.Data))
			case in.Deadline != nil:
				inputs = append(inputs, "deadline "+in.Deadline.Name)
			}
		}
		if want := []string{`event Placed {"SKU":"apple"}`, `event Reserved {"Order":"1"}`, "deadline payment", "event Cancelled {}"}; !slices.Equal(inputs, want) {
			t.Errorf("journal: %q, want %q", inputs, want)
		}
	})
}

func readOne(t *testing.T, s annals.Store, stream string) annals.RecordedEvent {
	t.Helper()
	for ev, err := range s.ReadStream(context.Background(), stream, nil) {
		if err != nil {
			t.Fatal(err)
		}
		return ev
	}
	t.Fatalf("%s is empty", stream)
	return annals.RecordedEvent{}
}
