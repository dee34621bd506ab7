package client_test

import (
	"context"
	"errors"
	"iter"
	"math"
	"testing"

	"github.com/annalsdb/annals"
	"github.com/annalsdb/annals/memstore"
)

// first returns the first error of seq, nil when it has none.
func first[T any](seq iter.Seq2[T, error]) error {
	for _, err := range seq {
		if err != nil {
			return err
		}
	}
	return nil
}

// TestInputBeforeContext checks that the client refuses bad input with ErrInvalidArgument even
// when its context is already canceled, as the in-process stores do (input first, then the
// context), and that good input with a canceled context gets context.Canceled.
func TestInputBeforeContext(t *testing.T) {
	mem := memstore.New(nil)
	t.Cleanup(func() { mem.Close() })
	remote := openMem(t)
	canceled, cancel := context.WithCancel(context.Background())
	cancel()
	badFilter := &annals.Filter{StreamPrefixes: []string{""}}
	calls := []struct {
		name string
		call func(s annals.Store) error
	}{
		{"AppendEmptyStream", func(s annals.Store) error {
			_, err := s.Append(canceled, "", annals.Any, annals.Event{Type: "E"})
			return err
		}},
		{"AppendSystemStream", func(s annals.Store) error {
			_, err := s.Append(canceled, "$x", annals.Any, annals.Event{Type: "E"})
			return err
		}},
		{"AppendNoEvents", func(s annals.Store) error {
			_, err := s.Append(canceled, "a-1", annals.Any)
			return err
		}},
		{"AppendEmptyType", func(s annals.Store) error {
			_, err := s.Append(canceled, "a-1", annals.Any, annals.Event{})
			return err
		}},
		{"AppendBadExpected", func(s annals.Store) error {
			_, err := s.Append(canceled, "a-1", annals.Exact(math.MaxUint64), annals.Event{Type: "E"})
			return err
		}},
		{"ReadStreamEmpty", func(s annals.Store) error { return first(s.ReadStream(canceled, "", nil)) }},
		{"ReadStreamNegativeLimit", func(s annals.Store) error {
			return first(s.ReadStream(canceled, "a-1", &annals.ReadOptions{Limit: -1}))
		}},
		{"ReadAllBadFilter", func(s annals.Store) error { return first(s.ReadAll(canceled, &annals.ReadOptions{Filter: badFilter})) }},
		{"SubscribeStreamEmpty", func(s annals.Store) error { return first(s.SubscribeStream(canceled, "", nil)) }},
		{"SubscribeAllBadFilter", func(s annals.Store) error {
			return first(s.SubscribeAll(canceled, &annals.SubscribeOptions{Filter: badFilter}))
		}},
		{"GetMetadataEmpty", func(s annals.Store) error {
			_, _, err := s.GetMetadata(canceled, "")
			return err
		}},
		{"SetMetadataBadJSON", func(s annals.Store) error {
			_, err := s.SetMetadata(canceled, "a-1", annals.Any, annals.StreamMetadata{Custom: []byte("{nope")})
			return err
		}},
		{"DeleteEmpty", func(s annals.Store) error {
			_, err := s.Delete(canceled, "", annals.Any)
			return err
		}},
		{"TombstoneSystem", func(s annals.Store) error {
			_, err := s.Tombstone(canceled, "$x", annals.Any)
			return err
		}},
		{"ListNegativeLimit", func(s annals.Store) error {
			return first(s.ListStreams(canceled, &annals.ListOptions{Limit: -1}))
		}},
	}
	for _, tt := range calls {
		t.Run(tt.name, func(t *testing.T) {
			if err := tt.call(mem); !errors.Is(err, annals.ErrInvalidArgument) {
				t.Fatalf("memstore: got %v, want ErrInvalidArgument (the reference)", err)
			}
			if err := tt.call(remote); !errors.Is(err, annals.ErrInvalidArgument) {
				t.Errorf("client: got %v, want ErrInvalidArgument", err)
			}
		})
	}
	if _, err := remote.Append(canceled, "a-1", annals.Any, annals.Event{Type: "E"}); !errors.Is(err, context.Canceled) {
		t.Errorf("good append with a canceled context: got %v, want context.Canceled", err)
	}
}

// TestLargeLimit checks that a read or listing limit above 2^31-1, which the in-process stores
// accept, works through the client too.
func TestLargeLimit(t *testing.T) {
	s := openMem(t)
	ctx := t.Context()
	if _, err := s.Append(ctx, "a-1", annals.Any, annals.Event{Type: "E"}, annals.Event{Type: "E"}); err != nil {
		t.Fatal(err)
	}
	for _, limit := range []int{math.MaxInt32 + 1, math.MaxInt} {
		n := 0
		for _, err := range s.ReadStream(ctx, "a-1", &annals.ReadOptions{Limit: limit}) {
			if err != nil {
				t.Fatalf("ReadStream with limit %d: %v", limit, err)
			}
			n++
		}
		for _, err := range s.ReadAll(ctx, &annals.ReadOptions{Limit: limit}) {
			if err != nil {
				t.Fatalf("ReadAll with limit %d: %v", limit, err)
			}
			n++
		}
		for _, err := range s.ListStreams(ctx, &annals.ListOptions{Limit: limit}) {
			if err != nil {
				t.Fatalf("ListStreams with limit %d: %v", limit, err)
			}
			n++
		}
		if n != 5 {
			t.Errorf("limit %d: %d events and streams, want 5", limit, n)
		}
	}
}
