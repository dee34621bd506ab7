package testkit_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/annalsdb/annals"
	"github.com/annalsdb/annals/codec"
	"github.com/annalsdb/annals/projection"
	"github.com/annalsdb/annals/testkit"
)

type totals map[string]int

var totalsProjection = projection.Projection[totals]{
	Name:   "totals",
	Filter: &annals.Filter{Categories: []string{"cart"}},
	Handle: func(_ context.Context, m totals, ev annals.RecordedEvent) error {
		var d struct{ Price int }
		if err := json.Unmarshal(ev.Data, &d); err != nil {
			return err
		}
		m[ev.Stream] += d.Price
		return nil
	},
}

func newTotals() totals { return totals{} }

type itemAdded struct{ Price int }

// lossy loses its note in the codec.
type lossy struct {
	Price int
	note  string
}

func totalsRegistry(t testing.TB) *codec.Registry {
	reg := codec.New(nil)
	if err := errors.Join(codec.Register[itemAdded](reg, "ItemAdded", nil), codec.Register[lossy](reg, "Lossy", nil)); err != nil {
		t.Fatal(err)
	}
	return reg
}

func TestProjectionFixtureGiven(t *testing.T) {
	testkit.ForProjection(totalsProjection, newTotals, totalsRegistry(t)).
		Given("cart-1", itemAdded{3}, &itemAdded{4}).
		GivenRaw("user-1", annals.Event{Type: "Seen"}).
		Given("cart-2", itemAdded{10}).
		Then(t, totals{"cart-1": 7, "cart-2": 10})
}

func TestProjectionFixtureGivenRaw(t *testing.T) {
	testkit.ForProjection(totalsProjection, newTotals, nil).
		GivenRaw("cart-1", annals.Event{Type: "ItemAdded", Data: []byte(`{"Price":3}`)}, annals.Event{Type: "ItemAdded", Data: []byte(`{"Price":4}`)}).
		Then(t, totals{"cart-1": 7})
}

func TestProjectionFixtureGivenRefusals(t *testing.T) {
	reg := totalsRegistry(t)
	for _, tt := range []struct {
		name string
		f    *testkit.ProjectionFixture[totals]
		want []string
	}{
		{"unregistered", testkit.ForProjection(totalsProjection, newTotals, reg).Given("cart-1", itemAdded{1}, struct{ X int }{1}),
			[]string{`given event 1 of "cart-1"`, "struct { X int }", "not registered"}},
		{"already encoded", testkit.ForProjection(totalsProjection, newTotals, reg).Given("cart-1", annals.Event{Type: "ItemAdded"}),
			[]string{`given event 0 of "cart-1"`, "use GivenRaw"}},
		{"no registry", testkit.ForProjection(totalsProjection, newTotals, nil).Given("cart-1", itemAdded{1}),
			[]string{"need the registry of ForProjection"}},
		{"lossy", testkit.ForProjection(totalsProjection, newTotals, reg).Given("cart-1", lossy{1, "x"}),
			[]string{"testkit_test.lossy{Price:1 note:x} does not survive the codec", "-event +decoded"}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			msg := failure(t, func(tb testing.TB) { tt.f.Model(tb) })
			for _, w := range tt.want {
				if !strings.Contains(msg, w) {
					t.Errorf("message lacks %q:\n%s", w, msg)
				}
			}
		})
	}
}

func TestProjectionFixtureGivenRecorded(t *testing.T) {
	testkit.ForProjection(totalsProjection, newTotals, nil).
		GivenRecorded(
			annals.RecordedEvent{Stream: "cart-9", Type: "ItemAdded", Data: []byte(`{"Price":5}`), Position: 1},
			annals.RecordedEvent{Stream: "other-1", Type: "ItemAdded", Data: []byte(`{"Price":50}`), Position: 2},
		).
		Then(t, totals{"cart-9": 5})
}

// recorder is a testing.TB that records failures instead of failing the test.
type recorder struct {
	testing.TB
	msg string
}

func (r *recorder) Helper() {}
func (r *recorder) Fatalf(format string, args ...any) {
	r.msg = fmt.Sprintf(format, args...)
	panic(errFatal)
}
func (r *recorder) Fatal(args ...any) {
	r.msg = fmt.Sprint(args...)
	panic(errFatal)
}

var errFatal = errors.New("fatal")

func failure(t *testing.T, fn func(tb testing.TB)) string {
	t.Helper()
	r := &recorder{TB: t}
	func() {
		defer func() {
			if v := recover(); v != nil && v != errFatal {
				panic(v)
			}
		}()
		fn(r)
	}()
	return r.msg
}

func TestProjectionFixtureReportsDiffAndErrors(t *testing.T) {
	msg := failure(t, func(tb testing.TB) {
		testkit.ForProjection(totalsProjection, newTotals, totalsRegistry(tb)).
			Given("cart-1", itemAdded{3}).
			Then(tb, totals{"cart-1": 4})
	})
	if !strings.Contains(msg, "-want +got") || !strings.Contains(msg, "cart-1") {
		t.Fatalf("diff message: %q", msg)
	}
	msg = failure(t, func(tb testing.TB) {
		testkit.ForProjection(totalsProjection, newTotals, nil).
			GivenRaw("cart-1", annals.Event{Type: "ItemAdded", Data: []byte(`not json`)}).
			Then(tb, totals{})
	})
	if !strings.Contains(msg, "handler failed") {
		t.Fatalf("handler failure message: %q", msg)
	}
	msg = failure(t, func(tb testing.TB) {
		testkit.ForProjection(totalsProjection, newTotals, nil).
			GivenRaw("cart-1", annals.Event{Type: "ItemAdded"}).
			GivenRecorded(annals.RecordedEvent{Stream: "cart-1", Type: "ItemAdded", Position: 1}).
			Model(tb)
	})
	if !strings.Contains(msg, "not both") {
		t.Fatalf("mixed givens message: %q", msg)
	}
}
