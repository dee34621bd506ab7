package server_test

import (
	"context"
	"fmt"
	"net/http"
	"testing"

	"connectrpc.com/connect"
	"github.com/annalsdb/annals"
	annalsv1 "github.com/annalsdb/annals/internal/gen/annals/v1"
	"github.com/annalsdb/annals/internal/gen/annals/v1/annalsv1connect"
	"github.com/annalsdb/annals/internal/wire"
	"github.com/google/go-cmp/cmp"
	"google.golang.org/protobuf/testing/protocmp"
)

// TestReadsEveryProtocol checks that reads and subscriptions deliver every field of the
// events, as the generated code of each protocol and codec decodes them: the server encodes
// batches of events itself, and must give the bytes of the messages.
func TestReadsEveryProtocol(t *testing.T) {
	f := newFixture(t, nil, nil)
	events := []annals.Event{
		{Type: "Placed", Data: []byte(`{"a":1}`), Metadata: []byte(`{"m":"é"}`)},
		{Type: "Noted", ContentType: "text/plain", Data: []byte("plain")},
		{Type: "Empty", ContentType: "application/octet-stream"},
	}
	for i := range 3 {
		if _, err := f.store.Append(t.Context(), fmt.Sprintf("order-%d", i), annals.Any, events...); err != nil {
			t.Fatal(err)
		}
	}
	var want []*annalsv1.RecordedEvent
	for e, err := range f.store.ReadAll(t.Context(), nil) {
		if err != nil {
			t.Fatal(err)
		}
		want = append(want, wire.RecordedToProto(&e))
	}
	var h2 http.Protocols
	h2.SetUnencryptedHTTP2(true)
	hc := &http.Client{Transport: &http.Transport{Protocols: &h2}}
	for name, opts := range map[string][]connect.ClientOption{
		"gRPC":          {connect.WithGRPC()},
		"gRPC-Web":      {connect.WithGRPCWeb()},
		"Connect proto": nil,
		"Connect JSON":  {connect.WithProtoJSON()},
		"gRPC JSON":     {connect.WithGRPC(), connect.WithProtoJSON()},
	} {
		t.Run(name, func(t *testing.T) {
			rpc := annalsv1connect.NewEventStoreServiceClient(hc, f.url, opts...)
			check := func(method string, got []*annalsv1.RecordedEvent, err error, want []*annalsv1.RecordedEvent) {
				t.Helper()
				if err != nil {
					t.Fatalf("%s: %v", method, err)
				}
				if diff := cmp.Diff(want, got, protocmp.Transform()); diff != "" {
					t.Errorf("%s (-want +got):\n%s", method, diff)
				}
			}
			all, err := rpc.ReadAll(t.Context(), connect.NewRequest(&annalsv1.ReadAllRequest{}))
			got, err := receive(all, err, (*annalsv1.ReadAllResponse).GetEvents, -1)
			check("ReadAll", got, err, want)
			one, err := rpc.ReadStream(t.Context(), connect.NewRequest(&annalsv1.ReadStreamRequest{Stream: "order-1"}))
			got, err = receive(one, err, (*annalsv1.ReadStreamResponse).GetEvents, -1)
			check("ReadStream", got, err, want[3:6])
			ctx, cancel := context.WithTimeout(t.Context(), waitTimeout)
			defer cancel()
			sub, err := rpc.Subscribe(ctx, connect.NewRequest(&annalsv1.SubscribeRequest{Stream: "$all"}))
			got, err = receive(sub, err, func(m *annalsv1.SubscribeResponse) []*annalsv1.RecordedEvent { return m.GetEvents().GetEvents() }, len(want))
			check("Subscribe", got, err, want)
		})
	}
}

// receive returns the events of the messages of st (opened with the error err) to its end,
// or until it has n when n >= 0.
func receive[M any](st *connect.ServerStreamForClient[M], err error, events func(*M) []*annalsv1.RecordedEvent, n int) ([]*annalsv1.RecordedEvent, error) {
	if err != nil {
		return nil, err
	}
	defer st.Close()
	var got []*annalsv1.RecordedEvent
	for (n < 0 || len(got) < n) && st.Receive() {
		got = append(got, events(st.Msg())...)
	}
	if n >= 0 && len(got) >= n {
		return got, nil
	}
	return got, st.Err()
}
