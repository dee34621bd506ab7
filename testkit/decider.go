package testkit

import (
	"errors"
	"fmt"
	"reflect"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/annalsdb/annals/decider"
)

// Scenario is a decider test: the events given, the command sent. Make one with [Given].
// It is not safe for concurrent use.
type Scenario[S, C, E any] struct {
	t      testing.TB
	d      decider.Decider[S, C, E]
	given  []E
	cmd    C
	sent   bool
	opts   []cmp.Option
	events []E
	err    error
}

// Given starts a scenario for d whose stream holds events (in order). Each must be an E; they
// are typed any so that values of the concrete event types can be listed when E is an
// interface (Go does not infer E through them). A value that is not an E fails the test.
func Given[S, C, E any](t testing.TB, d decider.Decider[S, C, E], events ...any) *Scenario[S, C, E] {
	t.Helper()
	if d.Initial == nil || d.Decide == nil || d.Evolve == nil {
		t.Fatalf("testkit.Given: the decider needs Initial, Decide and Evolve")
	}
	given := make([]E, 0, len(events))
	for i, v := range events {
		e, ok := v.(E)
		if !ok {
			t.Fatalf("testkit.Given: event %d is a %T, not a %s", i, v, reflect.TypeFor[E]())
		}
		given = append(given, e)
	}
	return &Scenario[S, C, E]{t: t, d: d, given: given}
}

// Compare adds go-cmp options for comparing events and states (by default unexported fields
// are compared too, and an empty slice equals nil).
func (s *Scenario[S, C, E]) Compare(opts ...cmp.Option) *Scenario[S, C, E] {
	s.opts = append(s.opts, opts...)
	return s
}

// When folds the given events from Initial and decides cmd on the state they give. Decide's
// error is marked as a refusal, as [decider.Handler] marks it (see [decider.ErrRefused]).
func (s *Scenario[S, C, E]) When(cmd C) *Scenario[S, C, E] {
	s.cmd, s.sent = cmd, true
	var err error
	s.events, err = s.d.Decide(s.state(), cmd)
	s.err = decider.Refuse(err)
	return s
}

func (s *Scenario[S, C, E]) state() S {
	st := s.d.Initial()
	for _, e := range s.given {
		st = s.d.Evolve(st, e)
	}
	return st
}

func (s *Scenario[S, C, E]) cmpOptions() []cmp.Option {
	return append([]cmp.Option{cmp.Exporter(func(reflect.Type) bool { return true }), emptyIsNil}, s.opts...)
}

// emptyIsNil makes a nil and an empty slice equal.
var emptyIsNil = cmp.FilterValues(func(x, y any) bool {
	vx, vy := reflect.ValueOf(x), reflect.ValueOf(y)
	return vx.Kind() == reflect.Slice && vy.Kind() == reflect.Slice && vx.Len() == 0 && vy.Len() == 0
}, cmp.Comparer(func(_, _ any) bool { return true }))

func (s *Scenario[S, C, E]) describe() string {
	return fmt.Sprintf("given %d event(s), when %T %+v", len(s.given), s.cmd, s.cmd)
}

// Then fails the test unless the command decided exactly events (in order; none when events is
// empty), printing a diff.
func (s *Scenario[S, C, E]) Then(events ...E) {
	s.t.Helper()
	if !s.sent {
		s.t.Fatalf("testkit: Then without When")
		return
	}
	if s.err != nil {
		s.t.Errorf("%s:\ngot error %v\nwant events %s", s.describe(), s.err, formatEvents(events))
		return
	}
	if diff := cmp.Diff(events, s.events, s.cmpOptions()...); diff != "" {
		s.t.Errorf("%s: events decided (-want +got):\n%s", s.describe(), diff)
	}
}

// ThenError fails the test unless the command was refused with an error that matches want
// (errors.Is).
func (s *Scenario[S, C, E]) ThenError(want error) {
	s.t.Helper()
	if !s.sent {
		s.t.Fatalf("testkit: ThenError without When")
		return
	}
	switch {
	case s.err == nil:
		s.t.Errorf("%s:\ngot events %s\nwant error %v", s.describe(), formatEvents(s.events), want)
	case !errors.Is(s.err, want):
		s.t.Errorf("%s:\ngot error  %v\nwant error %v (errors.Is)", s.describe(), s.err, want)
	}
}

// ThenState fails the test unless the state after the given events and the events decided
// (when the command was not refused) equals want, printing a diff.
func (s *Scenario[S, C, E]) ThenState(want S) {
	s.t.Helper()
	if !s.sent {
		s.t.Fatalf("testkit: ThenState without When")
		return
	}
	if s.err != nil {
		s.t.Errorf("%s:\ngot error %v\nwant state %+v", s.describe(), s.err, want)
		return
	}
	st := s.state()
	for _, e := range s.events {
		st = s.d.Evolve(st, e)
	}
	if diff := cmp.Diff(want, st, s.cmpOptions()...); diff != "" {
		s.t.Errorf("%s: state after (-want +got):\n%s", s.describe(), diff)
	}
}

func formatEvents[E any](events []E) string {
	if len(events) == 0 {
		return "(none)"
	}
	out := ""
	for i, e := range events {
		if i > 0 {
			out += ", "
		}
		out += fmt.Sprintf("%T%+v", e, e)
	}
	return out
}
