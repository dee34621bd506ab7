package relay

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"

	"github.com/annalsdb/annals"
	"github.com/annalsdb/annals/bridge"
)

// errRefusedByTest is the test publisher's permanent error.
var errRefusedByTest = errors.New("test broker: message refused")

// published is one message the test publisher was given.
type published struct {
	id       annals.UUID
	stream   string
	position uint64
	size     int
}

// testPub is a Publisher that records what it is given and answers asynchronously, from a
// goroutine it owns (stopped by close). Faults are injected through its fields: stall holds
// the answers until release; fault decides, on the publishing goroutine, an error for Publish
// to return or for done to receive.
//
// Like a broker that keeps each key's messages in order (Kafka's idempotent producer), it
// fails every answer after a failed one, until the relay publishes again from the failed
// message or before it (a restart): a later message never overtakes a failed one.
type testPub struct {
	t      testing.TB
	answer chan func()
	stop   chan struct{}
	wg     sync.WaitGroup
	// fault, when set, returns the error Publish returns (sync) or done receives (async).
	fault func(m published) (sync, async error)
	// onAck, when set, is called with each message acknowledged, before its done.
	onAck func(m published)
	mu    struct {
		sync.Mutex
		stalled  bool
		held     []func()
		log      []published // every Publish, in call order
		acked    []published // every done(nil), in answer order
		out      int         // published and not answered
		outBytes int
		maxOut   int
		maxBytes int
		states   []inFlight // after each Publish
		// down is the position of the earliest failed answer since the last restart, 0
		// when none.
		down uint64
	}
}

func newTestPub(t testing.TB) *testPub {
	p := &testPub{t: t, answer: make(chan func(), 1<<14), stop: make(chan struct{})}
	p.wg.Go(func() {
		for {
			select {
			case f := <-p.answer:
				f()
			case <-p.stop:
				return
			}
		}
	})
	t.Cleanup(p.close)
	return p
}

func (p *testPub) close() {
	select {
	case <-p.stop:
	default:
		close(p.stop)
	}
	p.wg.Wait()
}

func (p *testPub) String() string { return "test broker" }

func (p *testPub) Permanent(err error) bool { return errors.Is(err, errRefusedByTest) }

func (p *testPub) Publish(ctx context.Context, msg *bridge.Message, done func(error)) error {
	m := published{id: msg.ID, size: msg.Size()}
	if v, ok := msg.Get(bridge.HeaderStream); ok {
		m.stream = string(v)
	}
	if v, ok := msg.Get(bridge.HeaderPosition); ok {
		if _, err := fmt.Sscan(string(v), &m.position); err != nil {
			p.t.Errorf("message %s: header %s %q: %v", msg.ID, bridge.HeaderPosition, v, err)
		}
	}
	var syncErr, asyncErr error
	if p.fault != nil {
		syncErr, asyncErr = p.fault(m)
	}
	p.mu.Lock()
	if p.mu.down != 0 && m.position <= p.mu.down {
		p.mu.down = 0
	}
	p.mu.log = append(p.mu.log, m)
	if syncErr != nil {
		p.mu.Unlock()
		return syncErr
	}
	p.mu.out++
	p.mu.outBytes += m.size
	p.mu.maxOut = max(p.mu.maxOut, p.mu.out)
	p.mu.maxBytes = max(p.mu.maxBytes, p.mu.outBytes)
	p.mu.states = append(p.mu.states, inFlight{p.mu.out, p.mu.outBytes})
	answer := func() {
		asyncErr := asyncErr
		p.mu.Lock()
		p.mu.out--
		p.mu.outBytes -= m.size
		if asyncErr == nil && p.mu.down != 0 && m.position > p.mu.down {
			asyncErr = fmt.Errorf("after the failure of %d: %w", p.mu.down, errBrokerDown)
		}
		if asyncErr != nil && (p.mu.down == 0 || m.position < p.mu.down) {
			p.mu.down = m.position
		}
		if asyncErr == nil {
			p.mu.acked = append(p.mu.acked, m)
		}
		p.mu.Unlock()
		if asyncErr == nil && p.onAck != nil {
			p.onAck(m)
		}
		done(asyncErr)
	}
	if p.mu.stalled {
		p.mu.held = append(p.mu.held, answer)
		p.mu.Unlock()
		return nil
	}
	p.mu.Unlock()
	select {
	case p.answer <- answer:
		return nil
	case <-ctx.Done():
		p.mu.Lock()
		p.mu.out--
		p.mu.outBytes -= m.size
		p.mu.Unlock()
		return ctx.Err()
	}
}

// stall holds the answers to what is published from now on until release.
func (p *testPub) stall() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.mu.stalled = true
}

// release answers what was held, and stops holding.
func (p *testPub) release() {
	p.mu.Lock()
	held := p.mu.held
	p.mu.held, p.mu.stalled = nil, false
	p.mu.Unlock()
	for _, f := range held {
		f()
	}
}

func (p *testPub) logged() []published {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]published(nil), p.mu.log...)
}

func (p *testPub) ackedMsgs() []published {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]published(nil), p.mu.acked...)
}

// ackedIDs returns the set of ids acknowledged at least once.
func (p *testPub) ackedIDs() map[annals.UUID]int {
	p.mu.Lock()
	defer p.mu.Unlock()
	ids := make(map[annals.UUID]int, len(p.mu.acked))
	for _, m := range p.mu.acked {
		ids[m.id]++
	}
	return ids
}

func (p *testPub) heldCount() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.mu.held)
}

// inFlight is what a publisher had published and not answered at one moment.
type inFlight struct{ out, bytes int }

func (p *testPub) states() []inFlight {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]inFlight(nil), p.mu.states...)
}

func (p *testPub) peaks() (out, bytes int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.mu.maxOut, p.mu.maxBytes
}
