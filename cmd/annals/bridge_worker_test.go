package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"testing"

	"github.com/annalsdb/annals"
)

// TestBridgeWorkerPermanentConnectError: in a server (retry on), a failure to connect that
// waiting does not cure (settings refused) is not tried again: run returns it, and the status
// says failed; a broker out of reach is tried again, the status connecting.
func TestBridgeWorkerPermanentConnectError(t *testing.T) {
	for _, tc := range []struct {
		name      string
		err       error
		wantState string
		wantRun   bool // run returns (with the error) before ctx ends
	}{
		{"refused settings", fmt.Errorf("connect: %w: bad option", annals.ErrInvalidArgument), "failed", true},
		{"broker down", errors.New("dial tcp 127.0.0.1:1: connect: connection refused"), "connecting", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			calls := make(chan struct{}, 100)
			w := &bridgeWorker{kind: "relay", name: "r", log: slog.New(slog.NewTextHandler(io.Discard, nil)),
				connect: func(context.Context) (bridgeRunner, func(context.Context) error, error) {
					calls <- struct{}{}
					return nil, nil, tc.err
				}}
			p := &relayPlan{name: "r", target: "kafka k:9092 topic {category}"}
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			done := make(chan error, 1)
			go func() { done <- w.run(ctx, true) }()
			<-calls // the first attempt was made
			// Then either run returns, or the worker tries again: whichever comes first.
			var err error
			returned := false
			select {
			case err = <-done:
				returned = true
			case <-calls:
			}
			if returned != tc.wantRun || (returned && !errors.Is(err, annals.ErrInvalidArgument)) {
				t.Errorf("run returned: %v (%v); want %v (a permanent failure returns, a transient one is tried again)", returned, err, tc.wantRun)
			}
			if st := relayStatus(w, p); st.State != tc.wantState || st.LastError == "" {
				t.Errorf("status %q, %q; want %q with the error", st.State, st.LastError, tc.wantState)
			}
			cancel()
			if !returned {
				<-done
			}
		})
	}
}
