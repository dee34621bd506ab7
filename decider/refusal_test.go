package decider_test

import (
	"context"
	"errors"
	"iter"
	"testing"

	"github.com/annalsdb/annals"
	"github.com/annalsdb/annals/decider"
	"github.com/annalsdb/annals/memstore"
)

// brokenStore fails every read and append with errUnreachable, as a store that cannot be
// reached does.
type brokenStore struct{ annals.Store }

var errUnreachable = errors.New("store unreachable")

func (brokenStore) ReadStream(context.Context, string, *annals.ReadOptions) iter.Seq2[annals.RecordedEvent, error] {
	return func(yield func(annals.RecordedEvent, error) bool) { yield(annals.RecordedEvent{}, errUnreachable) }
}

func (brokenStore) Append(context.Context, string, annals.ExpectedRevision, ...annals.Event) (annals.AppendResult, error) {
	return annals.AppendResult{}, errUnreachable
}

// TestRefusals checks that the domain's refusals (Decide's and Validate's errors) match
// ErrRefused, keep their own identity and message, and that no failure of the store or of the
// handler does.
func TestRefusals(t *testing.T) {
	ctx := context.Background()
	s := memstore.New(nil)
	t.Cleanup(func() { s.Close() })
	h := newHandler(t, s, &decider.Options[cartCmd]{MaxRetries: -1})
	if _, err := h.Handle(ctx, "cart-1", AddItem{"apple", 1}, nil); err != nil {
		t.Fatal(err)
	}
	// An event that does not decode, on its own stream.
	if _, err := s.Append(ctx, "cart-bad", annals.NoStream, annals.Event{Type: "ItemAdded", Data: []byte(`{"qty":"many"}`)}); err != nil {
		t.Fatal(err)
	}
	cancelled, cancel := context.WithCancel(ctx)
	cancel()
	racing := &racingStore{Store: s, stream: "cart-1"}
	racing.left.Store(1)

	for _, tc := range []struct {
		name    string
		h       *decider.Handler[cart, cartCmd, cartEvent]
		ctx     context.Context
		stream  string
		cmd     cartCmd
		refused bool
		is      error  // the error must also match this
		msg     string // and have this message, when not empty
	}{
		{name: "rule", h: h, ctx: ctx, stream: "cart-1", cmd: RemoveItem{"pear"}, refused: true, is: errNotInCart, msg: "remove pear: item not in cart"},
		{name: "validation", h: h, ctx: ctx, stream: "cart-1", cmd: AddItem{"apple", 0}, refused: true, is: decider.ErrInvalidCommand},
		{name: "store unreachable", h: newHandler(t, brokenStore{s}, nil), ctx: ctx, stream: "cart-1", cmd: AddItem{"apple", 1}, is: errUnreachable},
		{name: "append fails", h: newHandler(t, &appendFails{Store: s}, nil), ctx: ctx, stream: "cart-1", cmd: AddItem{"apple", 1}, is: errUnreachable},
		{name: "too many conflicts", h: newHandler(t, racing, &decider.Options[cartCmd]{MaxRetries: -1}), ctx: ctx, stream: "cart-1", cmd: AddItem{"apple", 1}, is: decider.ErrTooManyConflicts},
		{name: "cancelled", h: h, ctx: cancelled, stream: "cart-2", cmd: AddItem{"apple", 1}, is: context.Canceled},
		{name: "undecodable event", h: h, ctx: ctx, stream: "cart-bad", cmd: AddItem{"apple", 1}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := tc.h.Handle(tc.ctx, tc.stream, tc.cmd, nil)
			if err == nil {
				t.Fatal("got no error")
			}
			if got := errors.Is(err, decider.ErrRefused); got != tc.refused {
				t.Errorf("errors.Is(%v, ErrRefused): got %v, want %v", err, got, tc.refused)
			}
			if tc.is != nil && !errors.Is(err, tc.is) {
				t.Errorf("got %v, want an error matching %v", err, tc.is)
			}
			if tc.msg != "" && err.Error() != tc.msg {
				t.Errorf("message: got %q, want %q", err.Error(), tc.msg)
			}
		})
	}
}

// appendFails reads as its store does and fails every append with errUnreachable.
type appendFails struct{ annals.Store }

func (*appendFails) Append(context.Context, string, annals.ExpectedRevision, ...annals.Event) (annals.AppendResult, error) {
	return annals.AppendResult{}, errUnreachable
}
