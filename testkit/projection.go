package testkit

import (
	"context"
	"fmt"
	"reflect"
	"testing"
	"time"

	"github.com/annalsdb/annals"
	"github.com/annalsdb/annals/codec"
	"github.com/annalsdb/annals/memstore"
	"github.com/annalsdb/annals/projection"
	"github.com/google/go-cmp/cmp"
)

// ProjectionFixture tests a projection over an in-memory read model: given events, expect a
// read model. Build one with [ForProjection]; it is not safe for concurrent use.
//
// Events given with [ProjectionFixture.Given] (typed, encoded with the fixture's registry) or
// [ProjectionFixture.GivenRaw] (as they are) are appended to a fresh memstore and applied by a
// real [projection.Runner] (so the filter, positions and batching are those of production);
// events given with [ProjectionFixture.GivenRecorded] are handed to the handler as they are,
// in order, through the filter. A fixture uses appends or recorded events, not both.
type ProjectionFixture[M any] struct {
	p        projection.Projection[M]
	init     func() M
	reg      *codec.Registry
	appends  []givenAppend
	recorded []annals.RecordedEvent
	err      error // the first given event that did not encode
}

type givenAppend struct {
	stream string
	events []annals.Event
}

// ForProjection returns a fixture for p; init makes the empty read model, and reg is the
// registry the projection decodes events with (nil when only GivenRaw and GivenRecorded are
// used).
func ForProjection[M any](p projection.Projection[M], init func() M, reg *codec.Registry) *ProjectionFixture[M] {
	if p.Name == "" {
		p.Name = "fixture"
	}
	return &ProjectionFixture[M]{p: p, init: init, reg: reg}
}

// Given appends events, values of registered event types, to stream (in one append) before
// the projection runs. Each is encoded with the fixture's registry (as a decider.Handler
// encodes what it appends) and must survive the codec: encoded, decoded back and compared
// with the original. A value that is not registered, does not encode or comes back different
// fails the test when the projection runs (Model, Then), with a message that names it.
// Several calls append in order.
func (f *ProjectionFixture[M]) Given(stream string, events ...any) *ProjectionFixture[M] {
	encoded := make([]annals.Event, 0, len(events))
	for i, v := range events {
		ev, err := f.encode(v)
		if err != nil {
			if f.err == nil {
				f.err = fmt.Errorf("testkit: projection %q: given event %d of %q: %w", f.p.Name, i, stream, err)
			}
			continue
		}
		encoded = append(encoded, ev)
	}
	f.appends = append(f.appends, givenAppend{stream, encoded})
	return f
}

func (f *ProjectionFixture[M]) encode(v any) (annals.Event, error) {
	switch v.(type) {
	case annals.Event, *annals.Event, annals.RecordedEvent, *annals.RecordedEvent:
		return annals.Event{}, fmt.Errorf("a %T: use GivenRaw or GivenRecorded for events already encoded", v)
	}
	if f.reg == nil {
		return annals.Event{}, fmt.Errorf("a %T: typed events need the registry of ForProjection", v)
	}
	if err := roundTrip(f.reg, v, nil, []cmp.Option{cmp.Exporter(func(reflect.Type) bool { return true }), emptyIsNil}); err != nil {
		return annals.Event{}, err
	}
	return f.reg.Encode(v, codec.Metadata{})
}

// GivenRaw appends events to stream (in one append) as they are, before the projection runs;
// events with an empty Data get "{}". Several calls (of Given and GivenRaw) append in order.
func (f *ProjectionFixture[M]) GivenRaw(stream string, events ...annals.Event) *ProjectionFixture[M] {
	f.appends = append(f.appends, givenAppend{stream, events})
	return f
}

// GivenRecorded hands events to the handler as they are, in order (those the filter passes).
func (f *ProjectionFixture[M]) GivenRecorded(events ...annals.RecordedEvent) *ProjectionFixture[M] {
	f.recorded = append(f.recorded, events...)
	return f
}

// Model runs the projection over the given events and returns the read model. It fails the
// test (t.Fatal) when a given event did not encode, an append or a handler fails, or when
// appends (Given, GivenRaw) and GivenRecorded were both used.
func (f *ProjectionFixture[M]) Model(t testing.TB) M {
	t.Helper()
	m, err := f.run()
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// Then runs the projection over the given events and fails the test with a go-cmp diff when
// the read model differs from want. opts are passed to cmp.Diff (for example
// cmp.AllowUnexported or cmpopts.EquateEmpty).
func (f *ProjectionFixture[M]) Then(t testing.TB, want M, opts ...cmp.Option) {
	t.Helper()
	got := f.Model(t)
	if diff := cmp.Diff(want, got, opts...); diff != "" {
		t.Fatalf("projection %q: read model differs (-want +got):\n%s", f.p.Name, diff)
	}
}

func (f *ProjectionFixture[M]) run() (M, error) {
	var zero M
	if f.err != nil {
		return zero, f.err
	}
	if len(f.appends) > 0 && len(f.recorded) > 0 {
		return zero, fmt.Errorf("testkit: projection %q: use Given and GivenRaw, or GivenRecorded, not both", f.p.Name)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	mem := projection.NewMemory(f.init)
	if len(f.recorded) > 0 {
		err := mem.Update(ctx, f.p.Name, 0, 0, f.recorded[len(f.recorded)-1].Position, func(m M) error {
			for _, ev := range f.recorded {
				if !f.p.Filter.Match(ev.Stream, ev.Type) {
					continue
				}
				if err := f.p.Handle(ctx, m, ev); err != nil {
					return &projection.HandlerError{Projection: f.p.Name, Event: ev, Err: err}
				}
			}
			return nil
		})
		if err != nil {
			return zero, fmt.Errorf("testkit: %w", err)
		}
		return readModel(mem, f.p.Name), nil
	}
	store := memstore.New(nil)
	defer store.Close()
	var last uint64
	for _, a := range f.appends {
		events := make([]annals.Event, len(a.events))
		for i, ev := range a.events {
			if ev.Data == nil {
				ev.Data = []byte("{}")
			}
			events[i] = ev
		}
		res, err := store.Append(ctx, a.stream, annals.Any, events...)
		if err != nil {
			return zero, fmt.Errorf("testkit: given events of %q: %w", a.stream, err)
		}
		last = res.Position
	}
	r, err := projection.NewRunner(store, mem, f.p, nil)
	if err != nil {
		return zero, fmt.Errorf("testkit: %w", err)
	}
	runCtx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- r.Run(runCtx) }()
	waitErr := r.WaitFor(ctx, last)
	stop()
	<-done
	if waitErr != nil {
		return zero, fmt.Errorf("testkit: %w", waitErr)
	}
	return readModel(mem, f.p.Name), nil
}

func readModel[M any](mem *projection.Memory[M], name string) M {
	var out M
	mem.Read(name, func(m M, _ uint64) { out = m })
	return out
}
