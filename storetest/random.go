package storetest

import (
	"fmt"
	"math/rand/v2"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/annalsdb/annals"
	"github.com/annalsdb/annals/memstore"
	"github.com/google/go-cmp/cmp"
)

// DefaultRandomOps is how many operations [RunRandomized] runs unless the environment variable
// ANNALS_RANDOM_OPS says otherwise.
const DefaultRandomOps = 1500

// RunRandomized runs a random sequence of operations (appends with every kind of expectation,
// conflicts, idempotent retries and partial retries, reads and subscriptions with random
// options, metadata changes, deletes, tombstones, bad input) on a fresh memstore, the
// reference, and on a store from open, and fails at the first result that differs. open is as
// for [Run].
//
// Results are compared whole: errors by the sentinel they match (and the actual revision of a
// conflict), events field by field except Time, which differs between stores and is checked
// only to be UTC and never decrease along the log. System events get their IDs from the store,
// so their IDs are not compared either. Reads "as of" a time use, in each store, the time that
// store gave one event, and are skipped when the next event has the same time (the result would
// then depend on clocks).
//
// The seed comes from the environment variable ANNALS_SEED, or from the clock; it is logged at
// the start and in every failure, and
//
//	ANNALS_SEED=123 go test -run TestRandomized ./mystore
//
// replays a run. ANNALS_RANDOM_OPS sets the number of operations (default [DefaultRandomOps]).
func RunRandomized(t *testing.T, open func(t *testing.T) annals.Store) {
	RunRandomizedWith(t, open, nil)
}

// RandomOptions adds to what [RunRandomizedWith] does. The zero value (and nil) adds nothing.
type RandomOptions struct {
	// Reopen, when set, closes s, the store under test, and returns a store open on the same
	// data, as after a restart; it may also rebuild derived state (filestore rebuilds its index
	// from the log when the index directory is gone). The run calls it now and then between
	// operations, and goes on with the store it returns.
	Reopen func(t *testing.T, s annals.Store) annals.Store
}

// RunRandomizedWith is [RunRandomized] with the additions of opts (nil means none).
func RunRandomizedWith(t *testing.T, open func(t *testing.T) annals.Store, opts *RandomOptions) {
	var ro RandomOptions
	if opts != nil {
		ro = *opts
	}
	seed := time.Now().UnixNano()
	if v := os.Getenv("ANNALS_SEED"); v != "" {
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil {
			t.Fatalf("ANNALS_SEED=%q: want an integer", v)
		}
		seed = n
	}
	ops := DefaultRandomOps
	if v := os.Getenv("ANNALS_RANDOM_OPS"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 0 {
			t.Fatalf("ANNALS_RANDOM_OPS=%q: want a count", v)
		}
		ops = n
	}
	t.Logf("ANNALS_SEED=%d (set it to replay this run), %d operations", seed, ops)

	oracle := memstore.New(nil)
	t.Cleanup(func() { oracle.Close() })
	r := &randomRun{
		t:       t,
		seed:    seed,
		rng:     rand.New(rand.NewPCG(uint64(seed), 0x616e6e616c73)),
		oracle:  oracle,
		store:   open(t),
		streams: []string{"acct-1", "acct-2", "cart-1", "cart-2", "cart", "order-1", "order-2", "x"},
		known:   map[string]annals.ExpectedRevision{},
		reopen:  ro.Reopen,
	}
	for i := range ops {
		r.op = i
		r.step()
		if i%100 == 99 {
			r.compareState()
		}
	}
	r.compareState()
}

// randomRun is the state of one randomized run.
type randomRun struct {
	t             *testing.T
	seed          int64
	rng           *rand.Rand
	oracle, store annals.Store
	op            int
	recent        []string // descriptions of the last operations, for failure messages

	streams []string                           // the streams operations pick from
	created int                                // streams added to streams so far
	known   map[string]annals.ExpectedRevision // the last actual state seen of each stream
	history []appendCall                       // recent appends, to retry
	lastPos uint64                             // the last position of the log, as the oracle says

	reopen func(t *testing.T, s annals.Store) annals.Store // see RandomOptions.Reopen
	// tinyAge is set once some stream's metadata has a maxAge of [tinyAge]: from then on, reads
	// wait until lastWrite is older than that, so that maxAge hides the same events in every
	// store whatever their clocks' resolution.
	tinyAge   bool
	lastWrite time.Time
}

// tinyAge is a maxAge that hides every event of a stream once a little time has passed (see
// randomRun.settle); 24h hides none during a run. Both keep the results deterministic.
const tinyAge = time.Microsecond

// settle waits, when some metadata has a tiny maxAge, until every event written so far is old
// enough for it to hide in every store: a clock instant is the condition waited for.
func (r *randomRun) settle() {
	if !r.tinyAge {
		return
	}
	time.Sleep(time.Until(r.lastWrite.Add(2 * time.Millisecond)))
}

// wrote records that a write returned: events written before now may be hidden by tinyAge.
func (r *randomRun) wrote() { r.lastWrite = time.Now() }

type appendCall struct {
	stream   string
	expected annals.ExpectedRevision
	events   []annals.Event
}

// outcome is the comparable result of one operation on one store.
type outcome struct {
	Err    string
	Result annals.AppendResult
	Pos    uint64
	Events []annals.RecordedEvent
	Infos  []annals.StreamInfo
	Meta   annals.StreamMetadata
	Exp    annals.ExpectedRevision
	// Skip says that the result depends on timing and must not be compared.
	Skip bool
}

func (r *randomRun) fail(format string, args ...any) {
	r.t.Helper()
	r.t.Fatalf("ANNALS_SEED=%d, operation %d: %s\nlast operations:\n  %s", r.seed, r.op, fmt.Sprintf(format, args...), strings.Join(r.recent, "\n  "))
}

// do runs f on both stores and fails the test unless the outcomes are equal. It returns the
// oracle's outcome.
func (r *randomRun) do(desc string, f func(s annals.Store) outcome) outcome {
	r.t.Helper()
	r.recent = append(r.recent, fmt.Sprintf("%d: %s", r.op, desc))
	if len(r.recent) > 25 {
		r.recent = r.recent[1:]
	}
	want := f(r.oracle)
	got := f(r.store)
	if strings.HasPrefix(want.Err, "unexpected") {
		r.fail("memstore: %s", want.Err)
	}
	if want.Skip || got.Skip {
		return want
	}
	want.Events, got.Events = normalize(want.Events), normalize(got.Events)
	if len(want.Infos) == 0 {
		want.Infos = nil
	}
	if len(got.Infos) == 0 {
		got.Infos = nil
	}
	if sameOutcome(want, got) {
		return want
	}
	if diff := cmp.Diff(want, got, jsonEqual); diff != "" {
		r.fail("%s: results differ (-memstore +store):\n%s", desc, diff)
	}
	return want
}

// step runs one random operation.
func (r *randomRun) step() {
	switch n := r.rng.IntN(100); {
	case n < 35:
		r.appendRandom()
	case n < 45:
		r.retry()
	case n < 50:
		r.badInput()
	case n < 62:
		r.readStream()
	case n < 70:
		r.readAll()
	case n < 75:
		r.subscribe()
	case n < 81:
		r.setMetadata()
	case n < 85:
		r.getMetadata()
	case n < 90:
		r.delete()
	case n < 92:
		r.tombstone()
	case n < 96:
		r.subscribeLive()
	case n < 97 && r.reopen != nil:
		r.reopenStore()
	default:
		r.listStreams()
	}
}

// reopenStore closes the store under test and goes on with the one Reopen returns, then
// checks that it holds what it held.
func (r *randomRun) reopenStore() {
	r.recent = append(r.recent, fmt.Sprintf("%d: reopen the store", r.op))
	r.store = r.reopen(r.t, r.store)
	r.compareState()
}
