package decider

import (
	"errors"
	"fmt"
	"math"
	"os"
	"reflect"
	"strings"
	"testing"

	"github.com/annalsdb/annals/codec"
)

// ErrSnapshotMismatch: a state does not survive its snapshot encoding (it does not encode, does
// not decode back, or decodes as a different state), so a handler loading it from a snapshot
// would decide on another state than one folding the stream. The error is a
// [*SnapshotMismatchError]. See [Options].CheckSnapshots.
var ErrSnapshotMismatch = errors.New("decider: state does not survive its snapshot encoding")

// CheckSnapshotsEnv is the environment variable that turns [Options].CheckSnapshots on ("1")
// or off ("0") for every handler of the process, whatever the options say.
const CheckSnapshotsEnv = "ANNALS_CHECK_SNAPSHOTS"

// SnapshotMismatchError is the detail of [ErrSnapshotMismatch].
type SnapshotMismatchError struct {
	// Stream and Revision are those of the snapshot (empty and 0 for [CheckSnapshot]).
	Stream   string
	Revision uint64
	// StateType is the Go type of the state, e.g. "cart.State".
	StateType string
	// Path is where the state and its decoded copy first differ, as a Go expression on the
	// state: ".Items[\"apple\"].count"; empty for the state itself or when Err is set.
	Path string
	// State and Decoded are the values at Path, formatted with %#v.
	State, Decoded string
	// Err is the codec's error when the state did not encode or decode back.
	Err error
}

func (e *SnapshotMismatchError) Error() string {
	var b strings.Builder
	b.WriteString("decider: ")
	if e.Stream != "" {
		fmt.Fprintf(&b, "snapshot of %q at revision %d: ", e.Stream, e.Revision)
	}
	fmt.Fprintf(&b, "state %s does not survive its snapshot encoding: ", e.StateType)
	if e.Err != nil {
		fmt.Fprintf(&b, "%v", e.Err)
		return b.String()
	}
	where := "the state"
	if e.Path != "" {
		where = "field " + e.Path
	}
	fmt.Fprintf(&b, "%s is %s in the state but %s once decoded (the codec leaves out unexported fields and fields tagged json:\"-\": export the field)", where, e.State, e.Decoded)
	return b.String()
}

// Is makes errors.Is(err, ErrSnapshotMismatch) true.
func (e *SnapshotMismatchError) Is(target error) bool { return target == ErrSnapshotMismatch }

// Unwrap returns the codec's error, if any.
func (e *SnapshotMismatchError) Unwrap() error { return e.Err }

// CheckSnapshot encodes state with c as a snapshot is encoded, decodes it back into initial()
// as a snapshot is loaded, and compares the two. It returns nil when they are equal, and
// otherwise a [*SnapshotMismatchError] (matching [ErrSnapshotMismatch]) that names the first
// field that differs. Equality is reflect.DeepEqual's, except that a nil and an empty slice or
// map are equal, and values with an Equal method (time.Time) are compared with it.
// testkit runs it on every state of its decider tests; [Options].CheckSnapshots runs it on
// every snapshot a handler saves.
func CheckSnapshot[S any](c codec.Codec, initial func() S, state S) error {
	mismatch := func(err error) error {
		return &SnapshotMismatchError{StateType: reflect.TypeFor[S]().String(), Err: err}
	}
	b, err := c.Marshal(state)
	if err != nil {
		return mismatch(fmt.Errorf("encode: %w", err))
	}
	decoded := initial()
	if err := c.Unmarshal(b, &decoded); err != nil {
		return mismatch(fmt.Errorf("decode: %w", err))
	}
	d := differ{seen: map[visit]bool{}}
	if d.diff("", reflect.ValueOf(&state).Elem(), reflect.ValueOf(&decoded).Elem()) {
		return nil
	}
	return &SnapshotMismatchError{StateType: reflect.TypeFor[S]().String(), Path: d.path, State: d.x, Decoded: d.y}
}

// checkSnapshots reports whether a handler with opts checks its snapshots: the environment
// variable [CheckSnapshotsEnv] decides when set, then opts, then whether the program is a test.
func checkSnapshots(opt bool) bool {
	switch os.Getenv(CheckSnapshotsEnv) {
	case "1":
		return true
	case "0":
		return false
	}
	return opt || testing.Testing()
}

// visit is a pair of pointers already being compared (for cyclic states).
type visit struct {
	x, y uintptr
	t    reflect.Type
}

// differ finds the first difference of two values; path, x and y describe it.
type differ struct {
	seen map[visit]bool
	path string
	x, y string
}

func (d *differ) differ(path string, x, y reflect.Value) bool {
	d.path, d.x, d.y = path, format(x), format(y)
	return false
}

func format(v reflect.Value) string {
	if !v.IsValid() {
		return "<nil>"
	}
	if v.CanInterface() {
		return fmt.Sprintf("%#v", v.Interface())
	}
	switch v.Kind() {
	case reflect.Bool:
		return fmt.Sprint(v.Bool())
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		return fmt.Sprint(v.Int())
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64, reflect.Uintptr:
		return fmt.Sprint(v.Uint())
	case reflect.Float32, reflect.Float64:
		return fmt.Sprint(v.Float())
	case reflect.String:
		return fmt.Sprintf("%q", v.String())
	}
	if v.Kind() == reflect.Pointer || v.Kind() == reflect.Map || v.Kind() == reflect.Slice {
		if v.IsNil() {
			return "nil"
		}
		if v.Kind() != reflect.Pointer {
			return fmt.Sprintf("%s of length %d", v.Type(), v.Len())
		}
	}
	return v.Type().String() + " value"
}

// equalMethod returns the result of x.Equal(y) when x's type has a method Equal(T) bool.
func equalMethod(x, y reflect.Value) (equal, ok bool) {
	if !x.CanInterface() || !y.CanInterface() {
		return false, false
	}
	m, found := x.Type().MethodByName("Equal")
	if !found || m.Type.NumIn() != 2 || m.Type.NumOut() != 1 || m.Type.Out(0).Kind() != reflect.Bool || m.Type.In(1) != x.Type() {
		return false, false
	}
	return x.Method(m.Index).Call([]reflect.Value{y})[0].Bool(), true
}

// diff reports whether x and y (of one type) are equal, recording the first difference.
func (d *differ) diff(path string, x, y reflect.Value) bool {
	if !x.IsValid() || !y.IsValid() {
		if x.IsValid() == y.IsValid() {
			return true
		}
		return d.differ(path, x, y)
	}
	if x.Type() != y.Type() {
		return d.differ(path, x, y)
	}
	if eq, ok := equalMethod(x, y); ok {
		if eq {
			return true
		}
		return d.differ(path, x, y)
	}
	switch x.Kind() {
	case reflect.Pointer, reflect.Map, reflect.Slice:
		if x.Kind() != reflect.Pointer && x.Len() == 0 && y.Len() == 0 {
			return true // nil and empty are equal
		}
		if x.IsNil() || y.IsNil() {
			if x.IsNil() && y.IsNil() {
				return true
			}
			return d.differ(path, x, y)
		}
		v := visit{x.Pointer(), y.Pointer(), x.Type()}
		if d.seen[v] {
			return true
		}
		d.seen[v] = true
	}
	switch x.Kind() {
	case reflect.Pointer:
		return d.diff(path, x.Elem(), y.Elem())
	case reflect.Interface:
		if x.IsNil() || y.IsNil() {
			if x.IsNil() && y.IsNil() {
				return true
			}
			return d.differ(path, x, y)
		}
		return d.diff(path, x.Elem(), y.Elem())
	case reflect.Struct:
		for i := range x.NumField() {
			if !d.diff(path+"."+x.Type().Field(i).Name, x.Field(i), y.Field(i)) {
				return false
			}
		}
		return true
	case reflect.Array, reflect.Slice:
		if x.Len() != y.Len() {
			return d.differ(path, x, y)
		}
		for i := range x.Len() {
			if !d.diff(fmt.Sprintf("%s[%d]", path, i), x.Index(i), y.Index(i)) {
				return false
			}
		}
		return true
	case reflect.Map:
		if x.Len() != y.Len() {
			return d.differ(path, x, y)
		}
		it := x.MapRange()
		for it.Next() {
			k := it.Key()
			kp := fmt.Sprintf("%s[%s]", path, format(k))
			yv := y.MapIndex(k)
			if !yv.IsValid() {
				return d.differ(kp, it.Value(), yv)
			}
			if !d.diff(kp, it.Value(), yv) {
				return false
			}
		}
		return true
	case reflect.Bool:
		return x.Bool() == y.Bool() || d.differ(path, x, y)
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		return x.Int() == y.Int() || d.differ(path, x, y)
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64, reflect.Uintptr:
		return x.Uint() == y.Uint() || d.differ(path, x, y)
	case reflect.Float32, reflect.Float64:
		a, b := x.Float(), y.Float()
		return a == b || math.IsNaN(a) && math.IsNaN(b) || d.differ(path, x, y)
	case reflect.Complex64, reflect.Complex128:
		return x.Complex() == y.Complex() || d.differ(path, x, y)
	case reflect.String:
		return x.String() == y.String() || d.differ(path, x, y)
	default: // Chan, Func, UnsafePointer: equal when identical
		if x.Pointer() == y.Pointer() {
			return true
		}
		return d.differ(path, x, y)
	}
}
