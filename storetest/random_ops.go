package storetest

// The operations of the randomized test, each run on the oracle and on the store under test.

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/annalsdb/annals"
)

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

func (r *randomRun) setMetadata() {
	stream := r.stream()
	r.setMetadataOn(stream, r.metadataExpected(stream), r.metadata())
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
