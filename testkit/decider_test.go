package testkit_test

import (
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/annalsdb/annals/codec"
	"github.com/annalsdb/annals/decider"
	"github.com/annalsdb/annals/testkit"
)

type added struct {
	SKU string
	Qty int
}
type removed struct{ SKU string }

type event interface{ isEvent() }

func (added) isEvent()   {}
func (removed) isEvent() {}

type add struct {
	SKU string
	Qty int
}
type remove struct{ SKU string }

var errNotInCart = errors.New("not in cart")

var cart = decider.Decider[map[string]int, any, event]{
	Initial: func() map[string]int { return map[string]int{} },
	Decide: func(s map[string]int, c any) ([]event, error) {
		switch c := c.(type) {
		case add:
			return []event{added(c)}, nil
		case remove:
			if s[c.SKU] == 0 {
				return nil, fmt.Errorf("remove %s: %w", c.SKU, errNotInCart)
			}
			return []event{removed(c)}, nil
		}
		return nil, nil
	},
	Evolve: func(s map[string]int, e event) map[string]int {
		switch e := e.(type) {
		case added:
			s[e.SKU] += e.Qty
		case removed:
			delete(s, e.SKU)
		}
		return s
	},
}

func TestGivenWhenThen(t *testing.T) {
	testkit.Given(t, cart).When(add{"a", 1}).Then(added{"a", 1})
	testkit.Given(t, cart, added{"a", 1}).When(remove{"a"}).Then(removed{"a"})
	testkit.Given(t, cart).When(remove{"a"}).ThenError(errNotInCart)
	testkit.Given(t, cart).When(remove{"a"}).ThenError(decider.ErrRefused) // as a Handler's refusal
	testkit.Given(t, cart).When(struct{}{}).Then()
	testkit.Given(t, cart, added{"a", 1}, added{"a", 2}).When(add{"b", 1}).ThenState(map[string]int{"a": 3, "b": 1})
}

// failRecorder is a testing.TB that records failures instead of failing.
type failRecorder struct {
	testing.TB
	errs []string
}

func (r *failRecorder) Helper() {}
func (r *failRecorder) Errorf(format string, args ...any) {
	r.errs = append(r.errs, fmt.Sprintf(format, args...))
}
func (r *failRecorder) Fatalf(format string, args ...any) { r.Errorf(format, args...) }

func TestFailureMessages(t *testing.T) {
	tests := []struct {
		name string
		run  func(tb testing.TB)
		want []string // substrings of the one failure message
	}{
		{"wrong events", func(tb testing.TB) {
			testkit.Given(tb, cart).When(add{"a", 1}).Then(added{"a", 2})
		}, []string{"given 0 event(s), when testkit_test.add {SKU:a Qty:1}", "(-want +got)", "-", "Qty: 2", "+", "Qty: 1"}},
		{"error instead of events", func(tb testing.TB) {
			testkit.Given(tb, cart).When(remove{"a"}).Then(removed{"a"})
		}, []string{"got error remove a: not in cart", "want events testkit_test.removed{SKU:a}"}},
		{"events instead of error", func(tb testing.TB) {
			testkit.Given(tb, cart).When(add{"a", 1}).ThenError(errNotInCart)
		}, []string{"got events testkit_test.added{SKU:a Qty:1}", "want error not in cart"}},
		{"other error", func(tb testing.TB) {
			testkit.Given(tb, cart).When(remove{"a"}).ThenError(errors.New("not in cart"))
		}, []string{"got error  remove a: not in cart", "(errors.Is)"}},
		{"wrong state", func(tb testing.TB) {
			testkit.Given(tb, cart, added{"a", 1}).When(add{"a", 1}).ThenState(map[string]int{"a": 1})
		}, []string{"state after (-want +got)", `"a": 1`, `"a": 2`}},
		{"given a non-event", func(tb testing.TB) {
			testkit.Given(tb, cart, add{"a", 1})
		}, []string{"event 0 is a testkit_test.add, not a testkit_test.event"}},
		{"then without when", func(tb testing.TB) {
			testkit.Given(tb, cart).Then()
		}, []string{"Then without When"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := &failRecorder{}
			tt.run(r)
			if len(r.errs) != 1 {
				t.Fatalf("got %d failures %q, want 1", len(r.errs), r.errs)
			}
			for _, w := range tt.want {
				if !strings.Contains(r.errs[0], w) {
					t.Errorf("failure message lacks %q:\n%s", w, r.errs[0])
				}
			}
		})
	}
	// A passing scenario reports nothing.
	r := &failRecorder{}
	testkit.Given(r, cart, added{"a", 1}).When(remove{"a"}).Then(removed{"a"})
	if len(r.errs) != 0 {
		t.Errorf("a passing scenario failed: %q", r.errs)
	}
}

var errBadQty = errors.New("quantity must be positive")

func validateCart(c any) error {
	if a, ok := c.(add); ok && a.Qty <= 0 {
		return fmt.Errorf("add %d: %w", a.Qty, errBadQty)
	}
	return nil
}

func cartRegistry(t testing.TB) *codec.Registry {
	reg := codec.New(nil)
	if err := errors.Join(codec.Register[added](reg, "Added", nil), codec.Register[removed](reg, "Removed", nil)); err != nil {
		t.Fatal(err)
	}
	return reg
}

// secretAdded loses its note in the codec.
type secretAdded struct {
	SKU  string
	note string
}

func (secretAdded) isEvent() {}

// tally is a state whose count the codec loses.
type tally struct {
	Items map[string]int
	count int
}

var tallyDecider = decider.Decider[tally, any, event]{
	Initial: func() tally { return tally{Items: map[string]int{}} },
	Decide: func(_ tally, c any) ([]event, error) {
		return []event{added(c.(add))}, nil
	},
	Evolve: func(s tally, e event) tally {
		if a, ok := e.(added); ok {
			s.Items[a.SKU] += a.Qty
			s.count++
		}
		return s
	},
}

func TestForDecider(t *testing.T) {
	carts := testkit.ForDecider(cart, cartRegistry(t), &decider.Options[any]{Validate: validateCart})
	carts.Given(t, added{"a", 1}).When(add{"b", 2}).Then(added{"b", 2})
	carts.Given(t).When(add{"b", 0}).ThenError(errBadQty)
	carts.Given(t).When(add{"b", 0}).ThenError(decider.ErrInvalidCommand)
	carts.Given(t, added{"a", 1}).When(remove{"a"}).ThenState(map[string]int{})

	tests := []struct {
		name string
		run  func(tb testing.TB)
		want []string
	}{
		{"validation refuses what the test expects to pass", func(tb testing.TB) {
			carts.Given(tb).When(add{"b", 0}).Then(added{"b", 0})
		}, []string{"got error decider: invalid command: add 0: quantity must be positive", "want events testkit_test.added{SKU:b Qty:0}"}},
		{"a given event the registry does not know", func(tb testing.TB) {
			carts.Given(tb, secretAdded{SKU: "a"}).When(add{"b", 1}).Then(added{"b", 1})
		}, []string{"given 0: event testkit_test.secretAdded{SKU:a note:} does not survive the codec", "not registered"}},
		{"a given event that loses a field", func(tb testing.TB) {
			testkit.Given(tb, cart, secretAdded{SKU: "a", note: "x"}).When(add{"b", 1}).Then(added{"b", 1})
		}, []string{"given 0: event testkit_test.secretAdded{SKU:a note:x} does not survive the codec", "-event +decoded"}},
		{"a decided event that loses a field", func(tb testing.TB) {
			d := cart
			d.Decide = func(map[string]int, any) ([]event, error) { return []event{secretAdded{"a", "x"}}, nil }
			testkit.Given(tb, d).When(add{"a", 1}).Then(secretAdded{"a", "x"})
		}, []string{"decided 0: event testkit_test.secretAdded{SKU:a note:x} does not survive the codec"}},
		{"a state that loses a field", func(tb testing.TB) {
			testkit.Given(tb, tallyDecider, added{"a", 1}).When(add{"a", 1}).Then(added{"a", 1})
		}, []string{"the state the command is decided on", "state testkit_test.tally does not survive its snapshot encoding", "field .count is 1 in the state but 0 once decoded"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := &failRecorder{}
			tt.run(r)
			if len(r.errs) == 0 {
				t.Fatalf("no failure, want one with %q", tt.want)
			}
			for _, w := range tt.want {
				if !strings.Contains(r.errs[0], w) {
					t.Errorf("failure message lacks %q:\n%s", w, r.errs[0])
				}
			}
		})
	}
}
