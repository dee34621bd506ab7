package testkit

import (
	"errors"
	"fmt"
	"reflect"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/annalsdb/annals/codec"
	"github.com/annalsdb/annals/decider"
)

// DeciderFixture tests a decider as a [decider.Handler] runs it: commands are validated with
// the handler's Validate, and every event and state goes through the codec. Make one with
// [ForDecider] and start scenarios with [DeciderFixture.Given]. A fixture is a plain value,
// safe for concurrent use; its scenarios are not.
type DeciderFixture[S, C, E any] struct {
	d        decider.Decider[S, C, E]
	reg      *codec.Registry
	validate func(C) error
}

// ForDecider returns the fixture of d with what a handler made by
// decider.NewHandler(store, reg, d, opts) applies around it:
//
//   - opts.Validate checks every command first; a command it refuses is not decided, and the
//     scenario's error wraps [decider.ErrInvalidCommand] and Validate's error, as Handle's does
//     (so Then fails, and ThenError can expect the validation error);
//   - every event given and decided goes through reg: encoded, decoded back as an E, and
//     compared with the original; a failure names the event and shows the diff;
//   - every state (after the given events, and after the decided ones) goes through the
//     snapshot check ([decider.CheckSnapshot] with reg's codec); a failure names the state's
//     type and the first field that differs.
//
// reg nil means the JSON codec, with events decoded back into their own Go type (no check that
// they are registered); opts may be nil.
func ForDecider[S, C, E any](d decider.Decider[S, C, E], reg *codec.Registry, opts *decider.Options[C]) *DeciderFixture[S, C, E] {
	f := &DeciderFixture[S, C, E]{d: d, reg: reg}
	if opts != nil {
		f.validate = opts.Validate
	}
	return f
}

// Scenario is a decider test: the events given, the command sent. Make one with
// [DeciderFixture.Given] or [Given]. It is not safe for concurrent use.
type Scenario[S, C, E any] struct {
	t      testing.TB
	f      *DeciderFixture[S, C, E]
	given  []E
	cmd    C
	sent   bool
	opts   []cmp.Option
	events []E
	after  S // the state after the given and decided events, when sent without an error
	err    error
}

// Given starts a scenario for d, without validation and with the JSON codec: it is
// ForDecider(d, nil, nil).Given(t, events...). Use [ForDecider] to test with the handler's
// Validate and registry.
func Given[S, C, E any](t testing.TB, d decider.Decider[S, C, E], events ...any) *Scenario[S, C, E] {
	t.Helper()
	return ForDecider(d, nil, nil).Given(t, events...)
}

// Given starts a scenario whose stream holds events (in order). Each must be an E; they are
// typed any so that values of the concrete event types can be listed when E is an interface
// (Go does not infer E through them). A value that is not an E fails the test; one that does
// not survive the codec fails it in [Scenario.When].
func (f *DeciderFixture[S, C, E]) Given(t testing.TB, events ...any) *Scenario[S, C, E] {
	t.Helper()
	d := f.d
	if d.Initial == nil || d.Decide == nil || d.Evolve == nil {
		t.Fatalf("testkit.Given: the decider needs Initial, Decide and Evolve")
	}
	s := &Scenario[S, C, E]{t: t, f: f, given: make([]E, 0, len(events))}
	for i, v := range events {
		e, ok := v.(E)
		if !ok {
			t.Fatalf("testkit.Given: event %d is a %T, not a %s", i, v, reflect.TypeFor[E]())
		}
		s.given = append(s.given, e)
	}
	return s
}

// Compare adds go-cmp options for comparing events and states (by default unexported fields
// are compared too, and an empty slice equals nil).
func (s *Scenario[S, C, E]) Compare(opts ...cmp.Option) *Scenario[S, C, E] {
	s.opts = append(s.opts, opts...)
	return s
}

// When validates cmd, folds the given events from Initial and decides cmd on the state they
// give, checking that the given events, this state, the events decided and the state after
// them survive the codec (a failure fails the test). Validate's and Decide's errors are
// marked as refusals, as [decider.Handler] marks them (see [decider.ErrRefused]).
func (s *Scenario[S, C, E]) When(cmd C) *Scenario[S, C, E] {
	s.t.Helper()
	s.cmd, s.sent = cmd, true
	for i, e := range s.given {
		if err := roundTrip(s.f.reg, e, reflect.TypeFor[E](), s.cmpOptions()); err != nil {
			s.t.Errorf("%s: given %d: %v", s.describe(), i, err)
		}
	}
	if s.f.validate != nil {
		if err := s.f.validate(cmd); err != nil {
			s.err = decider.Invalid(err)
			return s
		}
	}
	st := s.state()
	s.checkState("the state the command is decided on", st)
	var err error
	s.events, err = s.f.d.Decide(st, cmd)
	if err != nil {
		s.err = decider.Refuse(err)
		return s
	}
	for i, e := range s.events {
		if err := roundTrip(s.f.reg, e, reflect.TypeFor[E](), s.cmpOptions()); err != nil {
			s.t.Errorf("%s: decided %d: %v", s.describe(), i, err)
		}
	}
	for _, e := range s.events {
		st = s.f.d.Evolve(st, e)
	}
	s.after = st
	s.checkState("the state after the events decided", st)
	return s
}

// checkState fails the test when st does not survive the snapshot check.
func (s *Scenario[S, C, E]) checkState(what string, st S) {
	s.t.Helper()
	c := codec.JSON
	if s.f.reg != nil {
		c = s.f.reg.Codec()
	}
	if err := decider.CheckSnapshot(c, s.f.d.Initial, st); err != nil {
		s.t.Errorf("%s: %s: %v", s.describe(), what, err)
	}
}

func (s *Scenario[S, C, E]) state() S {
	st := s.f.d.Initial()
	for _, e := range s.given {
		st = s.f.d.Evolve(st, e)
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
// empty), printing a diff. A command that validation refused fails it too.
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

// ThenError fails the test unless the command was refused, by validation or by Decide, with
// an error that matches want (errors.Is): [decider.ErrInvalidCommand] or Validate's error for
// a command validation refused.
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
	if diff := cmp.Diff(want, s.after, s.cmpOptions()...); diff != "" {
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
