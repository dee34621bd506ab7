package process

import (
	"errors"
	"fmt"

	"github.com/annalsdb/annals"
)

// manager is a [Manager] with its event type hidden behind closures, so that a [Runner] is
// generic in the state only. Its functions take and give the inputs as the runner keeps them:
// an [input] whose event has been decoded once.
type manager[S any] struct {
	Name    string
	Filter  *annals.Filter
	Initial func() S
	// event decodes ev and finds its instance: ok is false when the manager ignores ev.
	event func(ev annals.RecordedEvent) (id string, in input, ok bool, err error)
	// decoded returns in with its event decoded, for an input read from a journal.
	decoded func(in input) (input, error)
	react   func(id string, state S, in input) []Action
	evolve  func(state S, in input) S
}

// Journal returns the stream of the manager's instance id.
func (m *manager[S]) Journal(id string) string { return journal(m.Name, id) }

// input is an input as a runner handles it and its journal stores it: exactly one of Event,
// Deadline and Refusal is set. decoded is what [Manager].Decode made of Event; it is never
// journaled (a journal keeps the event as stored, and a load decodes it again).
type input struct {
	Event    *annals.RecordedEvent `json:"event,omitempty"`
	Deadline *Deadline             `json:"deadline,omitempty"`
	Refusal  *Refusal              `json:"refusal,omitempty"`
	decoded  any
}

// erase returns m as a runner uses it. m must be valid.
func (m Manager[S, E]) erase() manager[S] {
	typed := func(in input) Input[E] {
		e, _ := in.decoded.(E) // the zero E for a deadline or a refusal
		return Input[E]{Event: e, Recorded: in.Event, Deadline: in.Deadline, Refusal: in.Refusal}
	}
	return manager[S]{
		Name: m.Name, Filter: m.Filter, Initial: m.Initial,
		event: func(ev annals.RecordedEvent) (string, input, bool, error) {
			e, ok, err := m.Decode(ev)
			if err != nil {
				return "", input{}, false, fmt.Errorf("%w: process %q: event %s@%d (type %q, id %s, position %d): %w",
					ErrDecode, m.Name, ev.Stream, ev.Revision, ev.Type, ev.ID, ev.Position, err)
			}
			if !ok {
				return "", input{}, false, nil
			}
			id, ok := m.Instance(e, ev)
			return id, input{Event: &ev, decoded: e}, ok, nil
		},
		decoded: func(in input) (input, error) {
			ev := in.Event
			if ev == nil {
				return in, nil
			}
			e, ok, err := m.Decode(*ev)
			if err == nil && !ok {
				err = errors.New("the manager's Decode ignores it (was the manager changed since it journaled the event?)")
			}
			if err != nil {
				return in, fmt.Errorf("%w: process %q: journaled event %s@%d (type %q, id %s): %w",
					ErrDecode, m.Name, ev.Stream, ev.Revision, ev.Type, ev.ID, err)
			}
			in.decoded = e
			return in, nil
		},
		react:  func(id string, state S, in input) []Action { return m.React(id, state, typed(in)) },
		evolve: func(state S, in input) S { return m.Evolve(state, typed(in)) },
	}
}
