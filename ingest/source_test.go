package ingest

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"sync"

	"github.com/annalsdb/annals"
	"github.com/annalsdb/annals/bridge"
)

// testBus is an in-memory bus: partitions of messages (offset = index) and the offsets a
// consumer group committed, shared by the testSources over it.
type testBus struct {
	mu        sync.Mutex
	parts     map[string][]bridge.Incoming
	names     []string
	committed map[string]uint64 // source → the next offset to read after the commit
	changed   chan struct{}     // closed and replaced when messages are added
}

func newTestBus() *testBus {
	return &testBus{parts: map[string][]bridge.Incoming{}, committed: map[string]uint64{}, changed: make(chan struct{})}
}

// add appends a message to partition source and returns its offset.
func (b *testBus) add(source string, msg bridge.Message) uint64 {
	b.mu.Lock()
	defer b.mu.Unlock()
	if _, ok := b.parts[source]; !ok {
		b.names = append(b.names, source)
	}
	off := uint64(len(b.parts[source]))
	b.parts[source] = append(b.parts[source], bridge.Incoming{Message: msg, Source: source, Offset: off})
	close(b.changed)
	b.changed = make(chan struct{})
	return off
}

// resetCommits makes the group read every partition from its start again.
func (b *testBus) resetCommits() {
	b.mu.Lock()
	defer b.mu.Unlock()
	clear(b.committed)
}

// testSource is an ingest Source over a testBus. With kafka it starts each partition at the
// group's committed offset (as a Kafka consumer group), else after the record's Done (as an
// ordered JetStream consumer). It redelivers from older offsets and fails at random, at the
// rates set, and checks that Commit is called only for messages a progress record covers.
type testSource struct {
	bus   *testBus
	kafka bool
	// store and ingest name, to check commits against the progress records.
	store annals.Store
	name  string

	rngMu sync.Mutex
	rng   *rand.Rand
	// Probabilities per call: rewind a partition by a few messages (on Fetch), fail Fetch,
	// fail Commit.
	redeliver, failFetch, failCommit float64

	mu struct {
		sync.Mutex
		started bool
		pos     map[string]uint64
		errs    []error // broken contracts
		starts  int
	}
}

var errInjected = errors.New("injected failure")

func (s *testSource) chance(p float64) bool {
	s.rngMu.Lock()
	defer s.rngMu.Unlock()
	return p > 0 && s.rng.Float64() < p
}

func (s *testSource) intN(n int) int {
	s.rngMu.Lock()
	defer s.rngMu.Unlock()
	return s.rng.IntN(n)
}

func (s *testSource) broken(err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.mu.errs = append(s.mu.errs, err)
}

func (s *testSource) Start(ctx context.Context, resume func(ctx context.Context, source string) (uint64, bool, error)) error {
	s.bus.mu.Lock()
	names := slices.Clone(s.bus.names)
	committed := map[string]uint64{}
	for n, c := range s.bus.committed {
		committed[n] = c
	}
	s.bus.mu.Unlock()
	pos := map[string]uint64{}
	for _, n := range names {
		done, ok, err := resume(ctx, n)
		if err != nil {
			return err
		}
		if c := committed[n]; ok && c > done+1 || !ok && c > 0 {
			s.broken(fmt.Errorf("start: %s committed up to offset %d, past the record's done %d (%v)", n, c, done, ok))
		}
		switch {
		case s.kafka:
			pos[n] = committed[n]
		case ok:
			pos[n] = done + 1
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.mu.started {
		return errors.New("testSource: started twice")
	}
	s.mu.started, s.mu.pos = true, pos
	s.mu.starts++
	return nil
}

func (s *testSource) Fetch(ctx context.Context, max int) ([]bridge.Incoming, error) {
	if s.chance(s.failFetch) {
		return nil, fmt.Errorf("fetch: %w", errInjected)
	}
	for {
		s.bus.mu.Lock()
		changed := s.bus.changed
		s.mu.Lock()
		if !s.mu.started {
			s.mu.Unlock()
			s.bus.mu.Unlock()
			return nil, errors.New("testSource: fetch before start")
		}
		var out []bridge.Incoming
		for _, n := range s.bus.names {
			p := s.bus.parts[n]
			pos := s.mu.pos[n]
			if pos > 0 && s.chance(s.redeliver) {
				pos -= uint64(min(int(pos), 1+s.intN(5)))
			}
			take := min(len(p)-int(min(pos, uint64(len(p)))), max-len(out))
			if take > 1 {
				take = 1 + s.intN(take)
			}
			for range take {
				out = append(out, p[pos])
				pos++
			}
			s.mu.pos[n] = pos
		}
		s.mu.Unlock()
		s.bus.mu.Unlock()
		if len(out) > 0 {
			return out, nil
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-changed:
		}
	}
}

func (s *testSource) Commit(ctx context.Context, msgs []bridge.Incoming) error {
	if s.chance(s.failCommit) {
		return fmt.Errorf("commit: %w", errInjected)
	}
	last := map[string]uint64{}
	for _, m := range msgs {
		last[m.Source] = max(last[m.Source], m.Offset)
	}
	for n, off := range last {
		stream := ProgressStreamPrefix + s.name + "-" + n
		var rec record
		found := false
		for ev, err := range s.store.ReadStream(ctx, stream, &annals.ReadOptions{Backwards: true, From: annals.End, Limit: 1}) {
			if err != nil {
				return fmt.Errorf("commit: read %s: %w", stream, err)
			}
			if err := jsonUnmarshal(ev.Data, &rec); err != nil {
				return err
			}
			found = true
		}
		if !found || !rec.HasDone || rec.Done < off {
			s.broken(fmt.Errorf("commit of %s offset %d, but the record says done %d (%v, found %v)", n, off, rec.Done, rec.HasDone, found))
		}
	}
	s.bus.mu.Lock()
	defer s.bus.mu.Unlock()
	for n, off := range last {
		s.bus.committed[n] = max(s.bus.committed[n], off+1)
	}
	return nil
}

func (s *testSource) Stop() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.mu.started {
		return errors.New("testSource: stop before start")
	}
	s.mu.started = false
	return nil
}

func (s *testSource) errs() []error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.mu.errs)
}
