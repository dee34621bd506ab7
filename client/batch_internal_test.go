package client

import (
	"context"
	"errors"
	"sync"
	"testing"

	"connectrpc.com/connect"
	annalsv1 "github.com/annalsdb/annals/internal/gen/annals/v1"
	"github.com/annalsdb/annals/internal/testwait"
)

// fakeBatch is a batchStream that answers every append ok, until an error sent on broken
// ends it; its Close ends it and blocks until release is closed, holding fail between
// breaking the stream and answering its appends.
type fakeBatch struct {
	results chan *annalsv1.BatchAppendResponse
	broken  chan error // buffered
	closing chan struct{}
	release chan struct{}
	once    sync.Once
}

func newFakeBatch() *fakeBatch {
	return &fakeBatch{results: make(chan *annalsv1.BatchAppendResponse, MaxPendingAppends), broken: make(chan error, 1), closing: make(chan struct{}), release: make(chan struct{})}
}

func (f *fakeBatch) Send(m *annalsv1.BatchAppendRequest) error {
	r := &annalsv1.BatchAppendResponse{}
	for _, a := range m.Appends {
		r.Results = append(r.Results, &annalsv1.BatchAppendResult{Id: a.Id, Result: &annalsv1.BatchAppendResult_Ok{Ok: &annalsv1.AppendResponse{}}})
	}
	f.results <- r
	return nil
}

func (f *fakeBatch) Receive() (*annalsv1.BatchAppendResponse, error) {
	select {
	case r := <-f.results:
		return r, nil
	case err := <-f.broken:
		return nil, err
	case <-f.closing:
		return nil, errors.New("closed")
	}
}

func (f *fakeBatch) Close() {
	f.once.Do(func() { close(f.closing) })
	<-f.release
}

// TestBatchEnqueueOnBrokenStream: an append that comes while a stream is failing (its error
// set, its Close not returned) was not sent: it goes to a new stream, or, when the failure
// says the server does not serve BatchAppend, returns errNoBatch for the unary call.
func TestBatchEnqueueOnBrokenStream(t *testing.T) {
	for _, tc := range []struct {
		name    string
		cause   error
		want    error // nil: the append goes to a new stream
		streams int
	}{
		{"unavailable", connect.NewError(connect.CodeUnavailable, errors.New("gone")), nil, 2},
		{"unimplemented", connect.NewError(connect.CodeUnimplemented, errors.New("unknown method")), errNoBatch, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			first := newFakeBatch()
			var mu sync.Mutex
			var opened []*fakeBatch
			b := newBatcher(t.Context(), func(context.Context) batchStream {
				mu.Lock()
				defer mu.Unlock()
				f := first
				if len(opened) > 0 {
					f = newFakeBatch()
					close(f.release)
				}
				opened = append(opened, f)
				return f
			})
			t.Cleanup(func() {
				close(first.release)
				b.close()
			})
			req := &annalsv1.AppendRequest{Stream: "s-1"}
			if tc.want != nil {
				// An answer would tell that the server serves BatchAppend.
				if _, err := b.conn(); err != nil {
					t.Fatal(err)
				}
			} else if _, err := b.append(t.Context(), req); err != nil {
				t.Fatalf("append on the first stream: %v", err)
			}
			first.broken <- tc.cause
			testwait.Recv(t, "the first stream's Close", first.closing)
			if _, err := b.append(t.Context(), req); !errors.Is(err, tc.want) {
				t.Errorf("append while the first stream fails: %v, want %v", err, tc.want)
			}
			mu.Lock()
			defer mu.Unlock()
			if len(opened) != tc.streams {
				t.Errorf("%d streams opened, want %d", len(opened), tc.streams)
			}
		})
	}
}
