package ingest_test

import (
	"context"
	"fmt"
	"sync"

	"github.com/annalsdb/annals/bridge"
	"github.com/annalsdb/annals/ingest"
	"github.com/annalsdb/annals/memstore"
	"github.com/annalsdb/annals/supervisor"
)

// sliceSource serves fixed messages of one source, then cancels the ingest (a real Source,
// kafkabus.Source or natsbus.Source, waits for more).
type sliceSource struct {
	mu     sync.Mutex
	msgs   []bridge.Incoming
	next   int
	finish context.CancelFunc
}

func (s *sliceSource) Start(ctx context.Context, resume func(context.Context, string) (uint64, bool, error)) error {
	done, ok, err := resume(ctx, "demo:orders")
	s.mu.Lock()
	defer s.mu.Unlock()
	s.next = 0
	if ok {
		s.next = int(done) + 1
	}
	return err
}

func (s *sliceSource) Fetch(ctx context.Context, max int) ([]bridge.Incoming, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.next == len(s.msgs) {
		s.finish()
		<-ctx.Done()
		return nil, ctx.Err()
	}
	n := min(max, len(s.msgs)-s.next)
	s.next += n
	return s.msgs[s.next-n : s.next], nil
}

func (s *sliceSource) Commit(context.Context, []bridge.Incoming) error { return nil }
func (s *sliceSource) Stop() error                                     { return nil }

func Example() {
	store := memstore.New(nil)
	defer store.Close()
	ctx, cancel := context.WithCancel(context.Background())
	src := &sliceSource{finish: cancel}
	for i, body := range []string{`{"sku":"a"}`, `{"sku":"b"}`, `{"sku":"a"}`} {
		src.msgs = append(src.msgs, bridge.Incoming{
			Message: bridge.Message{
				Subject: "orders",
				Key:     []byte("order-42"),
				Headers: []bridge.Header{{Key: bridge.HeaderType, Value: []byte("ItemAdded")}},
				Value:   []byte(body),
			},
			Source: "demo:orders",
			Offset: uint64(i),
		})
	}
	stream, err := bridge.ParseTemplate("{key}")
	if err != nil {
		panic(err)
	}
	in, err := ingest.New(store, src, &ingest.Options{
		Name:    "orders",
		Decoder: bridge.Decoder{Stream: stream},
		Policy:  supervisor.Policy{NoLease: true},
	})
	if err != nil {
		panic(err)
	}
	if err := in.Run(ctx); err != nil {
		panic(err)
	}
	for ev, err := range store.ReadStream(context.Background(), "order-42", nil) {
		if err != nil {
			panic(err)
		}
		fmt.Println(ev.Revision, ev.Type, string(ev.Data))
	}
	fmt.Println("offsets:", in.Status().Offsets)
	// Output:
	// 0 ItemAdded {"sku":"a"}
	// 1 ItemAdded {"sku":"b"}
	// 2 ItemAdded {"sku":"a"}
	// offsets: map[demo:orders:2]
}
