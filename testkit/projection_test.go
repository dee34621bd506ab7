package testkit_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/annalsdb/annals"
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

func TestProjectionFixtureGiven(t *testing.T) {
	testkit.ForProjection(totalsProjection, newTotals).
		Given("cart-1", annals.Event{Type: "ItemAdded", Data: []byte(`{"Price":3}`)}, annals.Event{Type: "ItemAdded", Data: []byte(`{"Price":4}`)}).
		Given("user-1", annals.Event{Type: "Seen"}).
		Given("cart-2", annals.Event{Type: "ItemAdded", Data: []byte(`{"Price":10}`)}).
		Then(t, totals{"cart-1": 7, "cart-2": 10})
}

func TestProjectionFixtureGivenRecorded(t *testing.T) {
	testkit.ForProjection(totalsProjection, newTotals).
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
		testkit.ForProjection(totalsProjection, newTotals).
			Given("cart-1", annals.Event{Type: "ItemAdded", Data: []byte(`{"Price":3}`)}).
			Then(tb, totals{"cart-1": 4})
	})
	if !strings.Contains(msg, "-want +got") || !strings.Contains(msg, "cart-1") {
		t.Fatalf("diff message: %q", msg)
	}
	msg = failure(t, func(tb testing.TB) {
		testkit.ForProjection(totalsProjection, newTotals).
			Given("cart-1", annals.Event{Type: "ItemAdded", Data: []byte(`not json`)}).
			Then(tb, totals{})
	})
	if !strings.Contains(msg, "handler failed") {
		t.Fatalf("handler failure message: %q", msg)
	}
	msg = failure(t, func(tb testing.TB) {
		testkit.ForProjection(totalsProjection, newTotals).
			Given("cart-1", annals.Event{Type: "ItemAdded"}).
			GivenRecorded(annals.RecordedEvent{Stream: "cart-1", Type: "ItemAdded", Position: 1}).
			Model(tb)
	})
	if !strings.Contains(msg, "not both") {
		t.Fatalf("mixed givens message: %q", msg)
	}
}
