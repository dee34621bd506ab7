package storetest

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"slices"
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

// describe formats read or subscription options for failure messages, filter included.
func describe(opts any) string {
	switch o := opts.(type) {
	case *annals.ReadOptions:
		if o == nil {
			return "nil"
		}
		var b strings.Builder
		fmt.Fprintf(&b, "{From:%d", o.From)
		if o.From == annals.End {
			b.Reset()
			b.WriteString("{From:End")
		}
		if o.Backwards {
			b.WriteString(" Backwards")
		}
		if o.Limit != 0 {
			fmt.Fprintf(&b, " Limit:%d", o.Limit)
		}
		if o.Until != 0 {
			fmt.Fprintf(&b, " Until:%d", o.Until)
		}
		if !o.AsOf.IsZero() {
			fmt.Fprintf(&b, " AsOf:%v", o.AsOf)
		}
		if o.Filter != nil {
			fmt.Fprintf(&b, " Filter:%+v", *o.Filter)
		}
		return b.String() + "}"
	case *annals.SubscribeOptions:
		if o == nil {
			return "nil"
		}
		if o.Filter == nil {
			return fmt.Sprintf("{From:%d}", o.From)
		}
		return fmt.Sprintf("{From:%d Filter:%+v}", o.From, *o.Filter)
	case annals.StreamMetadata:
		if o.MaxAge < 0 || (len(o.Custom) > 0 && !json.Valid(o.Custom)) {
			return fmt.Sprintf("{MaxAge:%v Custom:%q}", o.MaxAge, o.Custom)
		}
		b, _ := json.Marshal(o)
		return string(b)
	}
	return fmt.Sprintf("%+v", opts)
}

// sameOutcome is the fast path of comparing normalized outcomes.
func sameOutcome(a, b outcome) bool {
	return a.Err == b.Err && a.Result == b.Result && a.Pos == b.Pos && a.Exp == b.Exp &&
		slices.Equal(a.Infos, b.Infos) && sameEvents(a.Events, b.Events) &&
		cmp.Equal(a.Meta, b.Meta, jsonEqual)
}

// normalize clears what may differ between two correct stores: Time, the IDs stores give
// system events, and nil versus empty. It writes the data of system events in one JSON
// spelling.
func normalize(evs []annals.RecordedEvent) []annals.RecordedEvent {
	if len(evs) == 0 {
		return nil
	}
	out := slices.Clone(evs)
	for i := range out {
		e := &out[i]
		e.Time = time.Time{}
		if len(e.Data) == 0 {
			e.Data = nil
		}
		if len(e.Metadata) == 0 {
			e.Metadata = nil
		}
		if strings.HasPrefix(e.Stream, "$") {
			e.ID = annals.UUID{}
			var v any
			if json.Unmarshal(e.Data, &v) == nil {
				e.Data, _ = json.Marshal(v)
			}
		}
	}
	return out
}

// classify names the sentinel err matches, and the actual revision of a conflict.
func classify(err error) string {
	if err == nil {
		return ""
	}
	if wev, ok := errors.AsType[*annals.WrongExpectedVersionError](err); ok {
		return "wrong expected version, actual " + wev.Actual.String()
	}
	for _, s := range []struct {
		err  error
		name string
	}{
		{annals.ErrWrongExpectedVersion, "wrong expected version without detail"},
		{annals.ErrTooLarge, "too large"},
		{annals.ErrInvalidArgument, "invalid argument"},
		{annals.ErrStreamNotFound, "stream not found"},
		{annals.ErrStreamDeleted, "stream deleted"},
		{annals.ErrClosed, "closed"},
		{annals.ErrCorrupt, "corrupt"},
		{context.Canceled, "canceled"},
		{context.DeadlineExceeded, "deadline exceeded"},
	} {
		if errors.Is(err, s.err) {
			return s.name
		}
	}
	return "unexpected error: " + err.Error()
}

// collectOutcome reads seq to its end, or up to max events when max > 0.
func collectOutcome(seq eventSeq, max int) outcome {
	var o outcome
	for e, err := range seq {
		if err != nil {
			o.Err = classify(err)
			break
		}
		if o.Events = append(o.Events, e); len(o.Events) == max {
			break
		}
	}
	return o
}

func (r *randomRun) chance(percent int) bool { return r.rng.IntN(100) < percent }

func pick[T any](r *randomRun, xs ...T) T { return xs[r.rng.IntN(len(xs))] }

func (r *randomRun) uuid() annals.UUID {
	var u annals.UUID
	binary.LittleEndian.PutUint64(u[:8], r.rng.Uint64())
	binary.LittleEndian.PutUint64(u[8:], r.rng.Uint64()|1)
	u[6] = u[6]&0x0f | 0x40
	u[8] = u[8]&0x3f | 0x80
	return u
}

func (r *randomRun) stream() string {
	if r.chance(3) {
		r.created++
		s := fmt.Sprintf("%s-n%d", pick(r, "acct", "cart", "new"), r.created)
		r.streams = append(r.streams, s)
		return s
	}
	return pick(r, r.streams...)
}

func (r *randomRun) expected(stream string) annals.ExpectedRevision {
	known, ok := r.known[stream]
	if !ok {
		known = annals.NoStream
	}
	switch r.rng.IntN(12) {
	case 0, 1:
		return annals.Any
	case 2:
		return annals.NoStream
	case 3:
		return annals.StreamExists
	case 4:
		if rev, ok := known.Revision(); ok {
			return annals.Exact(rev + 1)
		}
		return annals.Exact(0)
	case 5:
		return annals.Exact(uint64(r.rng.IntN(8)))
	case 6:
		if rev, ok := known.Revision(); ok && rev > 0 {
			return annals.Exact(rev - 1)
		}
	}
	return known
}

func (r *randomRun) events() []annals.Event {
	evs := make([]annals.Event, 1+r.rng.IntN(pick(r, 2, 3, 5)))
	for i := range evs {
		e := annals.Event{ID: r.uuid(), Type: pick(r, "A", "B", "C")}
		switch r.rng.IntN(10) {
		case 0:
			e.ContentType = "text/plain"
			e.Data = []byte("plain text")
		case 1:
			e.ContentType = annals.ContentTypeJSON
		default:
			e.Data = fmt.Appendf(nil, `{"v":%d}`, r.rng.IntN(1000))
		}
		if r.chance(30) {
			e.Metadata = fmt.Appendf(nil, `{"corr":%d}`, r.rng.IntN(1000))
		}
		evs[i] = e
	}
	return evs
}

func (r *randomRun) filter() *annals.Filter {
	if r.chance(50) {
		return nil
	}
	f := &annals.Filter{}
	some := func(xs ...string) []string {
		var out []string
		for range 1 + r.rng.IntN(2) {
			out = append(out, pick(r, xs...))
		}
		return out
	}
	if r.chance(40) {
		f.StreamPrefixes = some("acct", "cart-", "cart", "o", "$meta-", "x", "new", "acct-n")
	}
	if r.chance(40) {
		f.Categories = some("acct", "cart", "order", "x", "$meta", "new")
	}
	if r.chance(50) {
		f.EventTypes = some("A", "B", "C", annals.MetadataEventType, annals.DeletedEventType, annals.TombstoneEventType)
	}
	return f
}

func (r *randomRun) metadata() annals.StreamMetadata {
	var m annals.StreamMetadata
	if r.chance(50) {
		m.MaxCount = uint64(1 + r.rng.IntN(4))
	}
	if r.chance(40) {
		m.TruncateBefore = uint64(r.rng.IntN(8))
		if r.chance(30) {
			m.TruncateBefore = uint64(30 + r.rng.IntN(100)) // beyond the end of the stream
		}
	}
	if r.chance(20) {
		// Either hides nothing during a run, or everything written before the read (see
		// settle): the results stay deterministic.
		m.MaxAge = pick(r, 24*time.Hour, tinyAge)
	}
	if r.chance(30) {
		m.Custom = fmt.Appendf(nil, `{"owner":"team-%d","tags":["a","b"]}`, r.rng.IntN(5))
	}
	if r.chance(4) {
		// Near the event size limit, on either side of it: the event that records the metadata
		// holds the type, the content type and the JSON around the custom value too.
		n := annals.DefaultMaxEventSize - 200 + r.rng.IntN(400)
		m.Custom = json.RawMessage(`"` + strings.Repeat("m", n) + `"`)
	}
	if r.chance(15) {
		m.ACL = &annals.ACL{Read: []string{"r"}, Write: []string{pick(r, "w", "admin")}}
	}
	return m
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

func (r *randomRun) appendCall(c appendCall) {
	desc := fmt.Sprintf("Append(%q, %v, %d events %v)", c.stream, c.expected, len(c.events), eventIDs(c.events))
	o := r.do(desc, func(s annals.Store) outcome {
		res, err := s.Append(r.t.Context(), c.stream, c.expected, slices.Clone(c.events)...)
		return outcome{Err: classify(err), Result: res}
	})
	r.wrote()
	switch {
	case o.Err == "":
		r.known[c.stream] = annals.Exact(o.Result.Revision)
		r.lastPos = max(r.lastPos, o.Result.Position)
	case strings.HasPrefix(o.Err, "wrong expected version, actual "):
		e, err := annals.ParseExpectedRevision(strings.TrimPrefix(o.Err, "wrong expected version, actual "))
		if err == nil {
			r.known[c.stream] = e
		}
	}
	r.history = append(r.history, c)
	if len(r.history) > 40 {
		r.history = r.history[1:]
	}
}

func eventIDs(evs []annals.Event) []string {
	var out []string
	for _, e := range evs {
		out = append(out, e.ID.String()[:8])
	}
	return out
}

func (r *randomRun) appendRandom() {
	stream := r.stream()
	r.appendCall(appendCall{stream: stream, expected: r.expected(stream), events: r.events()})
}

// retry repeats a recent append, whole or changed so that only some IDs match.
func (r *randomRun) retry() {
	if len(r.history) == 0 {
		r.appendRandom()
		return
	}
	c := pick(r, r.history...)
	c.events = slices.Clone(c.events)
	if len(c.events) == 0 {
		r.appendCall(c)
		return
	}
	switch r.rng.IntN(8) {
	case 0: // a prefix
		c.events = c.events[:1+r.rng.IntN(len(c.events))]
	case 1: // a suffix
		c.events = c.events[r.rng.IntN(len(c.events)):]
	case 2: // one ID changed
		c.events[r.rng.IntN(len(c.events))].ID = r.uuid()
	case 3: // one event more
		c.events = append(c.events, r.events()[0])
	case 4: // another expectation
		c.expected = r.expected(c.stream)
	}
	r.appendCall(c)
}

func (r *randomRun) badInput() {
	good := r.events()
	var c appendCall
	switch r.rng.IntN(12) {
	case 9:
		// Text that no stream id or event type can be, in a filter or a listing.
		bad := pick(r, "\xff", "cart-\xc3", "a\x00", "a\nb")
		f := pick(r, &annals.Filter{StreamPrefixes: []string{bad}}, &annals.Filter{Categories: []string{bad}}, &annals.Filter{EventTypes: []string{bad}})
		switch r.rng.IntN(3) {
		case 0:
			r.do(fmt.Sprintf("ReadAll(bad filter %+v)", *f), func(s annals.Store) outcome {
				return collectOutcome(s.ReadAll(r.t.Context(), &annals.ReadOptions{Filter: f}), 0)
			})
		case 1:
			r.do(fmt.Sprintf("SubscribeAll(bad filter %+v)", *f), func(s annals.Store) outcome {
				ctx, cancel := context.WithTimeout(r.t.Context(), waitTimeout)
				defer cancel()
				return collectOutcome(s.SubscribeAll(ctx, &annals.SubscribeOptions{Filter: f}), 1)
			})
		default:
			opts := pick(r, &annals.ListOptions{Prefix: bad}, &annals.ListOptions{After: bad})
			r.do(fmt.Sprintf("ListStreams(bad %+v)", *opts), func(s annals.Store) outcome {
				infos, err := collect(r.t, s.ListStreams(r.t.Context(), opts))
				return outcome{Err: classify(err), Infos: infos}
			})
		}
		return
	case 10, 11:
		// A cancelled context: the context's error, never the store's state; bad input first.
		ctx, cancel := context.WithCancel(r.t.Context())
		cancel()
		stream, limit := pick(r, r.stream(), ""), pick(r, 0, -1)
		r.do(fmt.Sprintf("cancelled ReadStream(%q), ReadAll(limit %d), GetMetadata, Delete", stream, limit), func(s annals.Store) outcome {
			var errs []string
			_, err := collect(r.t, s.ReadStream(ctx, stream, nil))
			errs = append(errs, classify(err))
			_, err = collect(r.t, s.ReadAll(ctx, &annals.ReadOptions{Limit: limit}))
			errs = append(errs, classify(err))
			_, _, err = s.GetMetadata(ctx, stream)
			errs = append(errs, classify(err))
			_, err = s.Delete(ctx, stream, annals.Any)
			errs = append(errs, classify(err))
			return outcome{Err: strings.Join(errs, "; ")}
		})
		return
	case 0:
		c = appendCall{stream: pick(r, "", annals.AllStream, "$x", annals.MetaStream("cart-1"), "a\x00", "\xff", strings.Repeat("z", 257)), expected: annals.Any, events: good}
	case 1:
		c = appendCall{stream: r.stream(), expected: annals.Any}
	case 2:
		good[len(good)-1].Type = ""
		c = appendCall{stream: r.stream(), expected: annals.Any, events: good}
	case 3:
		c = appendCall{stream: r.stream(), expected: annals.Any, events: append(good, good[0])}
	case 4:
		c = appendCall{stream: r.stream(), expected: pick(r, annals.ExpectedRevision(-4), annals.ExpectedRevision(-9), annals.Exact(1<<63)), events: good}
	case 5:
		if r.chance(30) {
			good[0].Data = make([]byte, annals.DefaultMaxEventSize)
		} else {
			good[0].Type = "bad\ttype"
		}
		c = appendCall{stream: r.stream(), expected: annals.Any, events: good}
	case 6:
		stream := r.stream()
		meta := pick(r, annals.StreamMetadata{MaxAge: -time.Second}, annals.StreamMetadata{Custom: json.RawMessage("{")})
		r.do(fmt.Sprintf("SetMetadata(%q, bad %s)", stream, describe(meta)), func(s annals.Store) outcome {
			res, err := s.SetMetadata(r.t.Context(), stream, annals.Any, meta)
			return outcome{Err: classify(err), Result: res}
		})
		return
	case 7:
		opts := &annals.ReadOptions{Limit: -1}
		if r.chance(50) {
			opts = &annals.ReadOptions{Filter: &annals.Filter{Categories: []string{""}}}
		}
		r.do(fmt.Sprintf("ReadAll(bad %s)", describe(opts)), func(s annals.Store) outcome {
			return collectOutcome(s.ReadAll(r.t.Context(), opts), 0)
		})
		return
	default:
		stream := pick(r, "", annals.AllStream, "a\nb")
		r.do(fmt.Sprintf("ReadStream(bad %q)", stream), func(s annals.Store) outcome {
			return collectOutcome(s.ReadStream(r.t.Context(), stream, nil), 0)
		})
		return
	}
	r.appendCall(c)
}

// readOptions returns random read options over a range of about n revisions or positions.
func (r *randomRun) readOptions(n uint64) *annals.ReadOptions {
	if r.chance(20) {
		return nil
	}
	o := &annals.ReadOptions{Backwards: r.chance(35)}
	o.From = uint64(r.rng.IntN(int(n) + 3))
	if o.Backwards && r.chance(50) {
		o.From = annals.End
	}
	if r.chance(50) {
		o.Limit = 1 + r.rng.IntN(5)
		if r.chance(5) {
			o.Limit = pick(r, math.MaxInt32+1, math.MaxInt)
		}
	}
	if r.chance(25) {
		o.Until = uint64(1 + r.rng.IntN(int(n)+3))
	}
	o.Filter = r.filter()
	return o
}

// asOf sets opts.AsOf, in each store, to the time that store gave the event at position pos,
// and reports false (skip) when the next event has the same time.
func asOf(ctx context.Context, s annals.Store, pos uint64, opts *annals.ReadOptions) bool {
	var evs []annals.RecordedEvent
	for e, err := range s.ReadAll(ctx, &annals.ReadOptions{From: pos, Limit: 2}) {
		if err != nil {
			return false
		}
		evs = append(evs, e)
	}
	if len(evs) == 0 || (len(evs) == 2 && evs[1].Time.Equal(evs[0].Time)) {
		return false
	}
	opts.AsOf = evs[0].Time
	return true
}

func (r *randomRun) readStream() {
	r.settle()
	stream := r.stream()
	if r.chance(10) {
		stream = annals.MetaStream(stream)
	}
	n := uint64(8)
	if rev, ok := r.known[stream].Revision(); ok {
		n = rev + 1
	}
	base := r.readOptions(n)
	asOfPos := uint64(0)
	if base != nil && r.lastPos > 0 && r.chance(15) {
		asOfPos = 1 + uint64(r.rng.IntN(int(r.lastPos)))
	}
	r.do(fmt.Sprintf("ReadStream(%q, %s, as of position %d)", stream, describe(base), asOfPos), func(s annals.Store) outcome {
		opts := base
		if asOfPos > 0 {
			o := *base
			opts = &o
			if !asOf(r.t.Context(), s, asOfPos, opts) {
				return outcome{Skip: true}
			}
		}
		return collectOutcome(s.ReadStream(r.t.Context(), stream, opts), 0)
	})
}

func (r *randomRun) readAll() {
	base := r.readOptions(r.lastPos)
	asOfPos := uint64(0)
	if base != nil && r.lastPos > 0 && r.chance(15) {
		asOfPos = 1 + uint64(r.rng.IntN(int(r.lastPos)))
	}
	r.do(fmt.Sprintf("ReadAll(%s, as of position %d)", describe(base), asOfPos), func(s annals.Store) outcome {
		opts := base
		if asOfPos > 0 {
			o := *base
			opts = &o
			if !asOf(r.t.Context(), s, asOfPos, opts) {
				return outcome{Skip: true}
			}
		}
		return collectOutcome(s.ReadAll(r.t.Context(), opts), 0)
	})
}

// subscribe takes, from a subscription, as many events as the oracle has stored for it (so
// that it does not wait for live events), and compares them.
func (r *randomRun) subscribe() {
	r.settle()
	ctx := r.t.Context()
	filter := r.filter()
	if r.chance(50) {
		from := uint64(r.rng.IntN(int(r.lastPos) + 2))
		n := 0
		for _, err := range r.oracle.ReadAll(ctx, &annals.ReadOptions{From: from, Filter: filter}) {
			if err != nil {
				r.fail("memstore ReadAll: %v", err)
			}
			n++
		}
		if n == 0 {
			return
		}
		opts := &annals.SubscribeOptions{From: from, Filter: filter}
		r.do(fmt.Sprintf("SubscribeAll(%s), %d events", describe(opts), n), func(s annals.Store) outcome {
			ctx, cancel := context.WithTimeout(ctx, waitTimeout)
			defer cancel()
			return collectOutcome(s.SubscribeAll(ctx, opts), n)
		})
		return
	}
	stream := r.stream()
	from := uint64(r.rng.IntN(10))
	if rev, ok := r.known[stream].Revision(); ok {
		from = uint64(r.rng.IntN(int(rev) + 2))
	}
	n := 0
	for _, err := range r.oracle.ReadStream(ctx, stream, &annals.ReadOptions{From: from, Filter: filter}) {
		switch {
		case errors.Is(err, annals.ErrStreamDeleted):
			n = 1 // the subscription's error
		case err != nil:
			return // not found: the subscription would wait for the stream
		default:
			n++
		}
	}
	if n == 0 {
		return
	}
	opts := &annals.SubscribeOptions{From: from, Filter: filter}
	r.do(fmt.Sprintf("SubscribeStream(%q, %s), %d events", stream, describe(opts), n), func(s annals.Store) outcome {
		ctx, cancel := context.WithTimeout(ctx, waitTimeout)
		defer cancel()
		return collectOutcome(s.SubscribeStream(ctx, stream, opts), n)
	})
}

func (r *randomRun) setMetadata() {
	stream := r.stream()
	r.setMetadataOn(stream, r.metadataExpected(stream), r.metadata())
}

// metadataExpected returns a random expectation for a SetMetadata of stream.
func (r *randomRun) metadataExpected(stream string) annals.ExpectedRevision {
	var e annals.ExpectedRevision
	switch r.rng.IntN(5) {
	case 0, 1:
		_, e, _ = r.oracle.GetMetadata(r.t.Context(), stream)
	case 2:
		e = annals.Any
	case 3:
		e = pick(r, annals.NoStream, annals.StreamExists)
	default:
		e = annals.Exact(uint64(r.rng.IntN(4)))
	}
	return e
}

// setMetadataOn sets meta on stream with expectation e, on both stores.
func (r *randomRun) setMetadataOn(stream string, e annals.ExpectedRevision, meta annals.StreamMetadata) {
	o := r.do(fmt.Sprintf("SetMetadata(%q, %v, %s)", stream, e, describe(meta)), func(s annals.Store) outcome {
		res, err := s.SetMetadata(r.t.Context(), stream, e, meta)
		return outcome{Err: classify(err), Result: res}
	})
	r.wrote()
	if o.Err == "" {
		r.lastPos = max(r.lastPos, o.Result.Position)
		r.tinyAge = r.tinyAge || meta.MaxAge == tinyAge
	}
}

func (r *randomRun) getMetadata() {
	stream := r.stream()
	r.do(fmt.Sprintf("GetMetadata(%q)", stream), func(s annals.Store) outcome {
		meta, e, err := s.GetMetadata(r.t.Context(), stream)
		if err != nil {
			return outcome{Err: classify(err)}
		}
		return outcome{Meta: meta, Exp: e}
	})
}

func (r *randomRun) delete() {
	stream := r.stream()
	e := r.expected(stream)
	o := r.do(fmt.Sprintf("Delete(%q, %v)", stream, e), func(s annals.Store) outcome {
		res, err := s.Delete(r.t.Context(), stream, e)
		if err != nil {
			return outcome{Err: classify(err)}
		}
		return outcome{Pos: res.Position}
	})
	r.wrote()
	if o.Err == "" {
		r.known[stream] = annals.NoStream
		r.lastPos = max(r.lastPos, o.Pos)
	}
}

func (r *randomRun) tombstone() {
	stream := r.stream()
	e := r.expected(stream)
	o := r.do(fmt.Sprintf("Tombstone(%q, %v)", stream, e), func(s annals.Store) outcome {
		res, err := s.Tombstone(r.t.Context(), stream, e)
		if err != nil {
			return outcome{Err: classify(err)}
		}
		return outcome{Pos: res.Position}
	})
	r.wrote()
	if o.Err == "" {
		r.lastPos = max(r.lastPos, o.Pos)
	}
}

func (r *randomRun) listStreams() {
	opts := &annals.ListOptions{
		Prefix: pick(r, "", "", "a", "acct-", "cart", "n", "x", "zzz"),
		After:  pick(r, "", "", "b", "cart-1", pick(r, r.streams...)),
		Limit:  r.rng.IntN(5),
	}
	r.do(fmt.Sprintf("ListStreams(%+v)", opts), func(s annals.Store) outcome {
		infos, err := collect(r.t, s.ListStreams(r.t.Context(), opts))
		return outcome{Err: classify(err), Infos: infos}
	})
}

// compareState compares everything both stores hold: the log, the streams, each stream's
// events and metadata. It also checks the store's times.
func (r *randomRun) compareState() {
	r.settle()
	ctx := r.t.Context()
	r.do("ReadAll(nil) and check times", func(s annals.Store) outcome {
		o := collectOutcome(s.ReadAll(ctx, nil), 0)
		for i, e := range o.Events {
			if e.Time.Location() != time.UTC || (i > 0 && e.Time.Before(o.Events[i-1].Time)) {
				r.fail("event at position %d has Time %v after %v: want UTC times that never decrease", e.Position, e.Time, o.Events[max(i-1, 0)].Time)
			}
		}
		return o
	})
	r.do("ListStreams(nil)", func(s annals.Store) outcome {
		infos, err := collect(r.t, s.ListStreams(ctx, nil))
		return outcome{Err: classify(err), Infos: infos}
	})
	for _, stream := range r.streams {
		r.do(fmt.Sprintf("ReadStream(%q, nil)", stream), func(s annals.Store) outcome {
			return collectOutcome(s.ReadStream(ctx, stream, nil), 0)
		})
		r.do(fmt.Sprintf("GetMetadata(%q)", stream), func(s annals.Store) outcome {
			meta, e, err := s.GetMetadata(ctx, stream)
			if err != nil {
				return outcome{Err: classify(err)}
			}
			return outcome{Meta: meta, Exp: e}
		})
	}
}

// subscribeLive starts a subscription to a stream on both stores, then appends to the stream,
// one event at a time, until both delivered the last event appended, and checks what each
// delivered. When a subscription starts cannot be observed, so its first event may be any from
// where memstore starts before the appends (the stream's soft deletion and metadata choose it:
// truncateBefore beyond the end, maxCount, maxAge) up to the last one appended; from there on
// it must deliver every event of the stream, as the oracle recorded them.
func (r *randomRun) subscribeLive() {
	r.settle()
	ctx := r.t.Context()
	stream := r.stream()
	if r.chance(60) {
		// What the subscription's start depends on.
		meta := pick(r, annals.StreamMetadata{TruncateBefore: uint64(30 + r.rng.IntN(100))},
			annals.StreamMetadata{MaxCount: uint64(1 + r.rng.IntN(3))}, annals.StreamMetadata{MaxAge: tinyAge},
			r.metadata())
		r.setMetadataOn(stream, annals.Any, meta)
		r.settle()
	}
	from := pick(r, 0, annals.End, uint64(r.rng.IntN(12)))
	opts := &annals.SubscribeOptions{From: from}
	desc := fmt.Sprintf("SubscribeStream(%q, %s) then appends", stream, describe(opts))
	if _, _, err := r.oracle.GetMetadata(ctx, stream); errors.Is(err, annals.ErrStreamDeleted) {
		r.do(desc+" to a tombstoned stream", func(s annals.Store) outcome {
			ctx, cancel := context.WithTimeout(ctx, waitTimeout)
			defer cancel()
			return collectOutcome(s.SubscribeStream(ctx, stream, opts), 1)
		})
		return
	}
	earliest := r.oracleStart(stream, from)
	stores := []annals.Store{r.oracle, r.store}
	subs := make([]*collector, len(stores))
	for i, s := range stores {
		subs[i] = subscribe(r.t, func(ctx contextT) eventSeq { return s.SubscribeStream(ctx, stream, opts) })
	}
	defer func() {
		for _, c := range subs {
			c.stop()
		}
	}()
	// Appends until the stream reaches earliest (a subscription from beyond the end waits for
	// it), then until each subscription delivered something, which shows that it started, with
	// growing patience; then each must deliver up to the last event appended.
	const maxAppends = 10
	var last uint64
	patience := 20 * time.Millisecond
	for i := 0; ; {
		r.appendCall(appendCall{stream: stream, expected: annals.Any, events: r.events()[:1]})
		rev, ok := r.known[stream].Revision()
		if !ok {
			r.fail("%s: append with Any failed", desc)
		}
		last = rev
		if last < earliest {
			continue
		}
		i++
		started := true
		for _, c := range subs {
			started = c.waitFor(patience, func(evs []annals.RecordedEvent, _ error, ended bool) bool {
				return ended || len(evs) > 0
			}) && started
		}
		if started || i == maxAppends {
			break
		}
		patience = min(2*patience, time.Second)
	}
	for _, c := range subs {
		c.waitFor(waitTimeout, func(evs []annals.RecordedEvent, _ error, ended bool) bool {
			return ended || (len(evs) > 0 && evs[len(evs)-1].Revision >= last)
		})
	}
	var want []annals.RecordedEvent
	for e, err := range r.oracle.ReadAll(ctx, &annals.ReadOptions{Filter: &annals.Filter{StreamPrefixes: []string{stream}}}) {
		if err != nil {
			r.fail("memstore ReadAll: %v", err)
		}
		if e.Stream == stream {
			want = append(want, e)
		}
	}
	for i, c := range subs {
		name := []string{"memstore", "store"}[i]
		evs, err, _ := c.state()
		if err != nil {
			r.fail("%s: %s's subscription ended with %v", desc, name, err)
		}
		if len(evs) == 0 || evs[len(evs)-1].Revision != last {
			r.fail("%s: after appending up to revision %d, %s's subscription delivered revisions %v (it should start at %d at the earliest, and deliver every event from there)", desc, last, name, revisions(evs), earliest)
		}
		first := evs[0].Revision
		if first < earliest {
			r.fail("%s: %s's subscription started at revision %d, which the stream's visibility hides (memstore starts at %d)", desc, name, first, earliest)
		}
		if got, wantEvs := normalize(evs), normalize(want[first:last+1]); !sameEvents(wantEvs, got) {
			r.fail("%s: %s's subscription delivered, from revision %d:\n%s", desc, name, first, diffEvents(wantEvs, got))
		}
	}
}

// oracleStart returns where memstore starts a subscription to stream from revision from now.
func (r *randomRun) oracleStart(stream string, from uint64) uint64 {
	ctx := r.t.Context()
	var next uint64
	for e, err := range r.oracle.ReadAll(ctx, &annals.ReadOptions{Filter: &annals.Filter{StreamPrefixes: []string{stream}}}) {
		if err != nil {
			r.fail("memstore ReadAll: %v", err)
		}
		if e.Stream == stream {
			next = e.Revision + 1
		}
	}
	if from == annals.End {
		return next
	}
	for e, err := range r.oracle.ReadStream(ctx, stream, &annals.ReadOptions{From: from, Limit: 1}) {
		if err == nil {
			return e.Revision
		}
	}
	return max(from, next)
}
