package natsbus_test

import (
	"context"
	"errors"
	"slices"
	"strings"
	"testing"

	"github.com/annalsdb/annals"
	"github.com/annalsdb/annals/internal/bustest"
	"github.com/annalsdb/annals/internal/testwait"
	"github.com/annalsdb/annals/natsbus"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// machineStream returns the machine's NATS URL (skipping the test when there is none) and a
// stream name and subject prefix of its own, deleting the stream when the test ends.
func machineStream(t *testing.T) (url, stream, prefix string) {
	t.Helper()
	url = bustest.MachineJetStream(t)
	id := strings.ReplaceAll(annals.NewUUID().String(), "-", "")
	stream, prefix = "ANNALS_TEST_"+id, "annalstest."+id
	t.Cleanup(func() {
		nc, err := nats.Connect(url)
		if err != nil {
			t.Errorf("cleanup: %v", err)
			return
		}
		defer nc.Close()
		js, _ := jetstream.New(nc)
		if err := js.DeleteStream(context.Background(), stream); err != nil && !errors.Is(err, jetstream.ErrStreamNotFound) {
			t.Errorf("cleanup: delete stream %s: %v", stream, err)
		}
	})
	return url, stream, prefix
}

// TestMachinePublisherSource publishes to the machine's own JetStream (an older server) and
// reads back with a Source, with a duplicate dropped.
func TestMachinePublisherSource(t *testing.T) {
	url, stream, prefix := machineStream(t)
	p := openPublisher(t, url, natsbus.PublisherOptions{Stream: natsbus.StreamOptions{Name: stream, Subjects: []string{prefix + ".>"}}})
	ids := publishN(t, p, prefix+".cart.cart-1", 20)
	var r results
	if err := p.Publish(testwait.Context(t), message(prefix+".cart.cart-1", ids[3], "3"), r.done(0)); err != nil {
		t.Fatal(err)
	}
	if err := r.wait(t, 1)[0]; err != nil {
		t.Fatalf("duplicate publish: %v", err)
	}
	s, err := natsbus.OpenSource(testwait.Context(t), natsbus.SourceOptions{URL: url, Stream: stream, FilterSubjects: []string{prefix + ".cart.>"}})
	if err != nil {
		t.Fatalf("OpenSource: %v", err)
	}
	defer s.Close()
	if err := s.Start(testwait.Context(t), func(context.Context, string) (uint64, bool, error) { return 5, true, nil }); err != nil {
		t.Fatalf("Start: %v", err)
	}
	got := fetchN(t, s, 15)
	for i, m := range got {
		if m.Offset != uint64(i+6) || m.ID != ids[i+5] {
			t.Errorf("message %d: offset %d id %s, want %d %s", i, m.Offset, m.ID, i+6, ids[i+5])
		}
	}
	if all := bustest.NATSMessages(t, url, stream); len(all) != 20 {
		t.Errorf("stream holds %d messages, want 20 (the duplicate dropped)", len(all))
	}
}

// TestMachineSourceFilters: a source with two filter subjects works on a server that has
// them (2.10 on), and fails with an error that says so on an older one.
func TestMachineSourceFilters(t *testing.T) {
	url, stream, prefix := machineStream(t)
	p := openPublisher(t, url, natsbus.PublisherOptions{Stream: natsbus.StreamOptions{Name: stream, Subjects: []string{prefix + ".>"}}})
	publishN(t, p, prefix+".a.x", 3)
	publishN(t, p, prefix+".b.x", 3)
	publishN(t, p, prefix+".c.x", 3)
	s, err := natsbus.OpenSource(testwait.Context(t), natsbus.SourceOptions{URL: url, Stream: stream, FilterSubjects: []string{prefix + ".a.>", prefix + ".c.>"}})
	if err != nil {
		t.Fatalf("OpenSource: %v", err)
	}
	defer s.Close()
	err = s.Start(testwait.Context(t), func(context.Context, string) (uint64, bool, error) { return 0, false, nil })
	if err == nil {
		var got []uint64
		for len(got) < 6 {
			batch, ferr := s.Fetch(testwait.Context(t), 10)
			if ferr != nil {
				err = ferr
				break
			}
			for _, m := range batch {
				got = append(got, m.Offset)
			}
		}
		if err == nil {
			if want := []uint64{1, 2, 3, 7, 8, 9}; !slices.Equal(got, want) {
				t.Errorf("offsets %v, want %v", got, want)
			}
			return
		}
	}
	// Permanent for the ingest (it stops instead of retrying forever), and says what to do.
	if !errors.Is(err, jetstream.ErrConsumerMultipleFilterSubjectsNotSupported) || !errors.Is(err, annals.ErrInvalidArgument) ||
		!strings.Contains(err.Error(), "2.10") {
		t.Errorf("two filter subjects: %v, want ErrConsumerMultipleFilterSubjectsNotSupported matching annals.ErrInvalidArgument, naming NATS 2.10", err)
	}
	t.Logf("two filter subjects: %v", err)
}
