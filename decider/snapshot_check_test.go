package decider_test

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/annalsdb/annals/codec"
	"github.com/annalsdb/annals/decider"
	"github.com/annalsdb/annals/memstore"
)

// counted is a state that does not survive the JSON codec: its count is unexported.
type counted struct {
	Items map[string]int `json:"items"`
	count int
}

var countedDecider = decider.Decider[counted, cartCmd, cartEvent]{
	Initial: func() counted { return counted{Items: map[string]int{}} },
	Decide: func(_ counted, c cartCmd) ([]cartEvent, error) {
		a := c.(AddItem)
		return []cartEvent{ItemAdded(a)}, nil
	},
	Evolve: func(s counted, e cartEvent) counted {
		if a, ok := e.(ItemAdded); ok {
			s.Items[a.SKU] += a.Qty
			s.count++
		}
		return s
	},
}

func TestCheckSnapshotsCatchesUnexportedField(t *testing.T) {
	s := memstore.New(nil)
	t.Cleanup(func() { s.Close() })
	h, err := decider.NewHandler(s, newRegistry(t), countedDecider, &decider.Options[cartCmd]{
		Snapshots: &decider.SnapshotPolicy{Every: 2, Version: "v1"}, CheckSnapshots: true,
		OnError: func(err error) { t.Errorf("unexpected report: %v", err) },
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx := ctxT(t)
	if _, err := h.Handle(ctx, "cart-1", AddItem{"a", 1}, nil); err != nil {
		t.Fatalf("first command (no snapshot yet): %v", err)
	}
	res, err := h.Handle(ctx, "cart-1", AddItem{"b", 1}, nil)
	if !errors.Is(err, decider.ErrSnapshotMismatch) {
		t.Fatalf("second command (a snapshot): err = %v, want ErrSnapshotMismatch", err)
	}
	if !res.Written || res.Revision != 1 {
		t.Errorf("the result of the written command: %+v", res)
	}
	m, ok := errors.AsType[*decider.SnapshotMismatchError](err)
	if !ok || m.Stream != "cart-1" || m.Revision != 1 || m.Path != ".count" || m.State != "2" || m.Decoded != "0" ||
		m.StateType != "decider_test.counted" {
		t.Errorf("detail: %+v", m)
	}
	for _, want := range []string{`snapshot of "cart-1" at revision 1`, "decider_test.counted", "field .count is 2 in the state but 0 once decoded"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("message %q lacks %q", err, want)
		}
	}
	// Nothing was saved: a fresh handler folds the stream.
	if _, found, err := decider.NewStreamSnapshots(s, nil).Load(ctx, "cart-1", decider.SnapshotQuery{}); err != nil || found {
		t.Errorf("a snapshot was saved (found %v, err %v)", found, err)
	}
}

// TestCheckSnapshotsOnInTests: in a test binary the check is on without the option.
func TestCheckSnapshotsOnInTests(t *testing.T) {
	t.Setenv(decider.CheckSnapshotsEnv, "")
	s := memstore.New(nil)
	t.Cleanup(func() { s.Close() })
	h, err := decider.NewHandler(s, newRegistry(t), countedDecider, &decider.Options[cartCmd]{
		Snapshots: &decider.SnapshotPolicy{Every: 1, Version: "v1"},
	})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := h.Handle(ctxT(t), "cart-1", AddItem{"a", 1}, nil); !errors.Is(err, decider.ErrSnapshotMismatch) {
		t.Fatalf("err = %v, want ErrSnapshotMismatch", err)
	}
	// The environment variable turns it off.
	t.Setenv(decider.CheckSnapshotsEnv, "0")
	h, err = decider.NewHandler(s, newRegistry(t), countedDecider, &decider.Options[cartCmd]{
		Snapshots: &decider.SnapshotPolicy{Every: 1, Version: "v1"}, CheckSnapshots: true,
	})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := h.Handle(ctxT(t), "cart-2", AddItem{"a", 1}, nil); err != nil {
		t.Fatalf("with %s=0: %v", decider.CheckSnapshotsEnv, err)
	}
}

type timed struct {
	At    time.Time         `json:"at"`
	Tags  []string          `json:"tags,omitempty"`
	Lines map[string][]int  `json:"lines"`
	Next  *timed            `json:"next,omitempty"`
	Any   any               `json:"any"`
	Set   map[string]string `json:"set"`
}

func TestCheckSnapshot(t *testing.T) {
	initial := func() timed { return timed{} }
	ok := timed{
		At:    time.Now(), // a monotonic reading and a location that JSON loses: Equal holds
		Tags:  []string{}, // omitted, decodes as nil
		Lines: map[string][]int{"a": {1, 2}},
		Next:  &timed{Set: map[string]string{}},
		Any:   "x",
	}
	if err := decider.CheckSnapshot(codec.JSON, initial, ok); err != nil {
		t.Errorf("a state that survives: %v", err)
	}
	bad := ok
	bad.Any = 1 // decodes as float64
	err := decider.CheckSnapshot(codec.JSON, initial, bad)
	if m, isM := errors.AsType[*decider.SnapshotMismatchError](err); !isM || m.Path != ".Any" {
		t.Errorf("an int in an interface: %v", err)
	}
	bad = ok
	bad.Next = &timed{Lines: map[string][]int{"z": {1}}, Set: map[string]string{"k": "v"}, Tags: []string{"t"}}
	bad.Next.Next = bad.Next // a cycle does not encode
	if err := decider.CheckSnapshot(codec.JSON, initial, bad); !errors.Is(err, decider.ErrSnapshotMismatch) || !strings.Contains(err.Error(), "encode") {
		t.Errorf("a cycle: %v", err)
	}
	if err := decider.CheckSnapshot(codec.JSON, func() counted { return counted{} }, counted{Items: map[string]int{"a": 1}, count: 3}); err == nil ||
		!strings.Contains(err.Error(), "field .count is 3 in the state but 0 once decoded") {
		t.Errorf("an unexported field: %v", err)
	}
}
