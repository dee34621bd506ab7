package server

import (
	"cmp"
	"context"
	"errors"
	"net/http"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/annalsdb/annals"
)

// The status routes, for the web console and for operators: what the server does now.
const (
	statsRoute       = "GET /v1/stats"
	projectionsRoute = "GET /v1/projections"
)

// RateWindow is the number of seconds of the per-second series of [Stats.Rates].
const RateWindow = 60

// MaxListedSubscriptions bounds the subscriptions that [Server.Stats] lists with their lag
// (the oldest first): each costs two small reads of the store. Stats.SubscriptionCount counts
// them all.
const MaxListedSubscriptions = 100

// Counts are the server's counters since it started.
type Counts struct {
	// Appends is the number of successful Append calls, EventsAppended the events they wrote.
	Appends        uint64 `json:"appends"`
	EventsAppended uint64 `json:"eventsAppended"`
	// Reads is the number of reads (ReadStream, ReadAll and the JSON read routes), EventsRead
	// the events they returned.
	Reads      uint64 `json:"reads"`
	EventsRead uint64 `json:"eventsRead"`
	// EventsDelivered is the number of events sent by subscriptions (Subscribe and SSE).
	EventsDelivered uint64 `json:"eventsDelivered"`
}

// Rates are per-second series over the last [RateWindow] complete seconds, oldest first:
// element i counts what happened in the second that starts at Start + i seconds.
type Rates struct {
	Start           time.Time `json:"start"`
	Appends         []uint64  `json:"appends"`
	EventsAppended  []uint64  `json:"eventsAppended"`
	Reads           []uint64  `json:"reads"`
	EventsRead      []uint64  `json:"eventsRead"`
	EventsDelivered []uint64  `json:"eventsDelivered"`
}

// SubscriptionStatus describes one running subscription.
type SubscriptionStatus struct {
	// ID numbers the subscriptions of this server in the order they started.
	ID uint64 `json:"id"`
	// Protocol is "sse", or Connect's name of the RPC protocol: "grpc", "grpcweb", "connect".
	Protocol string `json:"protocol"`
	// Peer is the client's address as the server sees it.
	Peer string `json:"peer"`
	// Stream is the stream followed, or "$all".
	Stream string  `json:"stream"`
	Filter *Filter `json:"filter,omitempty"`
	// Started is when the subscription started, From where (revision or position).
	Started time.Time `json:"started"`
	From    uint64    `json:"from"`
	// Next is the revision (stream) or position ($all) it delivers next.
	Next uint64 `json:"next"`
	// Delivered counts the events it sent; LastPosition is the position of the last one (0
	// before any).
	Delivered    uint64 `json:"delivered"`
	LastPosition uint64 `json:"lastPosition"`
	// LagEvents is how far the subscription is behind the head of what it follows when an
	// event it has still to deliver is stored, else 0: for $all, the positions from Next to the
	// head of the log (matching the filter or not); for a stream, the revisions from Next to
	// the stream's last. LagSeconds is how long the first of those events has been stored.
	LagEvents  uint64  `json:"lagEvents"`
	LagSeconds float64 `json:"lagSeconds"`
	// Attached reports whether a subscription of $all delivers from the hub's ring of recent
	// events now, rather than reading from storage; Fallbacks counts the times it fell behind
	// the ring and went back to storage. Both stay zero for a subscription of a stream.
	Attached  bool   `json:"attached"`
	Fallbacks uint64 `json:"fallbacks"`
}

// HubStatus describes the hub, which follows $all once for all the subscriptions of $all.
type HubStatus struct {
	// Attached is the number of subscriptions that deliver from its ring now; Fallbacks counts
	// the times a subscription fell behind the ring and went back to storage.
	Attached  int64  `json:"attached"`
	Fallbacks uint64 `json:"fallbacks"`
}

// Filter is the JSON of an [annals.Filter].
type Filter struct {
	StreamPrefixes []string `json:"streamPrefixes,omitempty"`
	Categories     []string `json:"categories,omitempty"`
	EventTypes     []string `json:"eventTypes,omitempty"`
}

func newFilter(f *annals.Filter) *Filter {
	if f == nil {
		return nil
	}
	return &Filter{StreamPrefixes: f.StreamPrefixes, Categories: f.Categories, EventTypes: f.EventTypes}
}

// Stats is what GET /v1/stats answers.
type Stats struct {
	Time    time.Time `json:"time"`
	Version string    `json:"version"`
	Backend string    `json:"backend"`
	// StartTime is when the server started; HeadPosition the position of the last event in
	// the log (0 when it is empty).
	StartTime    time.Time `json:"startTime"`
	HeadPosition uint64    `json:"headPosition"`
	Totals       Counts    `json:"totals"`
	Rates        Rates     `json:"rates"`
	// SubscriptionCount is the number of running subscriptions; Subscriptions lists the
	// oldest [MaxListedSubscriptions] of them.
	SubscriptionCount int                  `json:"subscriptionCount"`
	Subscriptions     []SubscriptionStatus `json:"subscriptions"`
	Hub               HubStatus            `json:"hub"`
	// RequestBytesInFlight is the request-body bytes that the requests being served hold, of
	// RequestBytesBudget ([Options.MaxRequestBytesInFlight]).
	RequestBytesInFlight int64 `json:"requestBytesInFlight"`
	RequestBytesBudget   int64 `json:"requestBytesBudget"`
}

// ProjectionStatus describes a projection of the application, as GET /v1/projections reports
// it. The server knows no projections by itself: [Options.Projections] provides them. It
// mirrors the Status of a projection.Runner without depending on that package:
//
//	Projections: func(ctx context.Context) ([]server.ProjectionStatus, error) {
//		st, err := runner.Status(ctx)
//		if err != nil {
//			return nil, err
//		}
//		p := server.ProjectionStatus{Name: st.Name, State: st.State.String(), Generation: st.Generation,
//			Position: st.Position, Head: st.Head, LagEvents: st.LagEvents, LagSeconds: st.LagSeconds,
//			Rebuilding: st.Rebuilding}
//		if st.LastError != nil {
//			p.Error = st.LastError.Error()
//		}
//		if e := st.FailedEvent; e != nil {
//			p.FailedEvent = &server.EventRef{ID: e.ID.String(), Stream: e.Stream, Type: e.Type, Revision: e.Revision, Position: e.Position}
//		}
//		return []server.ProjectionStatus{p}, nil
//	},
type ProjectionStatus struct {
	Name string `json:"name"`
	// State is one of "stopped", "catching-up", "live", "failed", "rebuilding".
	State      string `json:"state"`
	Generation uint64 `json:"generation"`
	// Position is the checkpoint (the position of the last event the read model reflects),
	// Head the position of the last event in the log.
	Position uint64 `json:"position"`
	Head     uint64 `json:"head"`
	// LagEvents is Head - Position when an event the projection still has to apply is
	// stored, else 0; LagSeconds how long the oldest such event has been stored.
	LagEvents  uint64  `json:"lagEvents"`
	LagSeconds float64 `json:"lagSeconds"`
	Rebuilding bool    `json:"rebuilding"`
	// Error is the error that stopped the projection, "" when none.
	Error string `json:"error,omitempty"`
	// FailedEvent is the event a failed projection's handler failed on.
	FailedEvent *EventRef `json:"failedEvent,omitempty"`
	// Lease is the lease held now on "projection/<Name>" (or else "process/<Name>"): which
	// replica runs the projection. The server fills it in; nil when nobody holds one.
	Lease *LeaseStatus `json:"lease,omitempty"`
}

// EventRef names a recorded event.
type EventRef struct {
	ID       string `json:"id"`
	Stream   string `json:"stream"`
	Type     string `json:"type"`
	Revision uint64 `json:"revision"`
	Position uint64 `json:"position"`
}

// Projections is what GET /v1/projections answers.
type Projections struct {
	// Configured reports whether the server has [Options.Projections].
	Configured  bool               `json:"configured"`
	Projections []ProjectionStatus `json:"projections"`
	// Leases are the leases held now whose names start with "process/" or "projection/" (see
	// [ProjectionLeasePrefix]), by name, at most [MaxListedLeases]: which replica runs which
	// projection and process manager, whether the server knows the projections or not.
	Leases []LeaseStatus `json:"leases"`
}

// counter names one of the server's counters.
type counter int

const (
	cAppends counter = iota
	cEventsAppended
	cReads
	cEventsRead
	cEventsDelivered
	numCounters
)

// ringSize is the number of one-second buckets kept: more than RateWindow, so that the
// bucket being filled never is one being reported.
const ringSize = 64

// bucket counts what happened in one second of the clock.
type bucket struct {
	sec atomic.Int64 // Unix second the counts are of
	n   [numCounters]atomic.Uint64
}

// stats holds the server's counters, their per-second history and the running
// subscriptions. The zero value is ready; its methods are safe for concurrent use.
type stats struct {
	totals [numCounters]atomic.Uint64
	ring   [ringSize]bucket
	// resetMu serialises the reuse of a bucket for a new second.
	resetMu sync.Mutex

	mu struct {
		sync.Mutex
		lastID uint64
		subs   map[uint64]*runningSub
	}
}

// add counts n of c now.
func (st *stats) add(c counter, n int) {
	st.totals[c].Add(uint64(n))
	sec := time.Now().Unix()
	b := &st.ring[sec%ringSize]
	if b.sec.Load() != sec {
		st.resetMu.Lock()
		if b.sec.Load() != sec {
			for i := range b.n {
				b.n[i].Store(0)
			}
			b.sec.Store(sec)
		}
		st.resetMu.Unlock()
	}
	b.n[c].Add(uint64(n))
}

// counts returns the totals and the series of the RateWindow seconds before now's.
func (st *stats) counts(now time.Time) (Counts, Rates) {
	var t [numCounters]uint64
	for i := range t {
		t[i] = st.totals[i].Load()
	}
	first := now.Unix() - RateWindow
	r := Rates{Start: time.Unix(first, 0).UTC()}
	series := [numCounters][]uint64{}
	for c := range series {
		series[c] = make([]uint64, RateWindow)
	}
	for i := range int64(RateWindow) {
		sec := first + i
		b := &st.ring[sec%ringSize]
		if b.sec.Load() != sec {
			continue
		}
		for c := range series {
			series[c][i] = b.n[c].Load()
		}
	}
	r.Appends, r.EventsAppended, r.Reads, r.EventsRead, r.EventsDelivered = series[cAppends], series[cEventsAppended], series[cReads], series[cEventsRead], series[cEventsDelivered]
	return Counts{Appends: t[cAppends], EventsAppended: t[cEventsAppended], Reads: t[cReads], EventsRead: t[cEventsRead], EventsDelivered: t[cEventsDelivered]}, r
}

// runningSub is a subscription that runs now. follow updates next, lastPos and delivered as
// it sends events, the hub attached and fallbacks; the rest is fixed when it starts.
type runningSub struct {
	id      uint64
	t       target
	started time.Time
	from    uint64

	next      atomic.Uint64
	lastPos   atomic.Uint64
	delivered atomic.Uint64
	attached  atomic.Bool
	fallbacks atomic.Uint64
}

// sent records that batch was delivered.
func (rs *runningSub) sent(batch []annals.RecordedEvent) {
	last := &batch[len(batch)-1]
	if rs.t.all {
		rs.next.Store(last.Position + 1)
	} else {
		rs.next.Store(last.Revision + 1)
	}
	rs.lastPos.Store(last.Position)
	rs.delivered.Add(uint64(len(batch)))
}

// track registers a subscription of t that starts at from; untrack removes it.
func (st *stats) track(t target, from uint64) *runningSub {
	rs := &runningSub{t: t, started: time.Now().UTC(), from: from}
	rs.next.Store(from)
	st.mu.Lock()
	defer st.mu.Unlock()
	if st.mu.subs == nil {
		st.mu.subs = make(map[uint64]*runningSub)
	}
	st.mu.lastID++
	rs.id = st.mu.lastID
	st.mu.subs[rs.id] = rs
	return rs
}

func (st *stats) untrack(rs *runningSub) {
	st.mu.Lock()
	defer st.mu.Unlock()
	delete(st.mu.subs, rs.id)
}

// running returns the number of running subscriptions and the oldest limit of them.
func (st *stats) running(limit int) (int, []*runningSub) {
	st.mu.Lock()
	subs := make([]*runningSub, 0, len(st.mu.subs))
	for _, rs := range st.mu.subs {
		subs = append(subs, rs)
	}
	st.mu.Unlock()
	slices.SortFunc(subs, func(a, b *runningSub) int { return cmp.Compare(a.id, b.id) })
	return len(subs), subs[:min(len(subs), limit)]
}

// Stats returns the server's counters, their per-second rates over the last [RateWindow]
// seconds, and the running subscriptions with their lag. It reads the head of the log, and
// for each listed subscription the first event it has still to deliver (and, for a stream,
// the stream's last); it returns the store's error, or ctx's.
func (s *Server) Stats(ctx context.Context) (Stats, error) {
	info, err := s.Info(ctx)
	if err != nil {
		return Stats{}, err
	}
	now := time.Now()
	out := Stats{Time: now.UTC(), Version: info.Version, Backend: info.Backend, StartTime: info.StartTime, HeadPosition: info.HeadPosition}
	out.Totals, out.Rates = s.stats.counts(now)
	out.RequestBytesInFlight, out.RequestBytesBudget = s.budget.inFlight.Load(), s.budget.size
	n, subs := s.stats.running(MaxListedSubscriptions)
	out.SubscriptionCount = n
	out.Hub = HubStatus{Attached: s.hub.attached.Load(), Fallbacks: s.hub.fallbacks.Load()}
	out.Subscriptions = make([]SubscriptionStatus, 0, len(subs))
	for _, rs := range subs {
		ss := SubscriptionStatus{
			ID: rs.id, Protocol: rs.t.protocol, Peer: rs.t.peer, Stream: rs.t.stream, Filter: newFilter(rs.t.filter),
			Started: rs.started, From: rs.from, Next: rs.next.Load(), Delivered: rs.delivered.Load(), LastPosition: rs.lastPos.Load(),
			Attached: rs.attached.Load(), Fallbacks: rs.fallbacks.Load(),
		}
		if rs.t.all {
			ss.Stream = annals.AllStream
		}
		if ss.LagEvents, ss.LagSeconds, err = s.lag(ctx, rs.t, ss.Next, info.HeadPosition, now); err != nil {
			return Stats{}, err
		}
		out.Subscriptions = append(out.Subscriptions, ss)
	}
	return out, nil
}

// lag returns how far a subscription of t that delivers next is behind: 0 unless an event it
// has still to deliver is stored.
func (s *Server) lag(ctx context.Context, t target, next, head uint64, now time.Time) (uint64, float64, error) {
	if t.all {
		checkpoint := max(next, 1) - 1 // positions start at 1
		if checkpoint >= head {
			return 0, 0, nil
		}
		for e, err := range s.store.ReadAll(ctx, &annals.ReadOptions{From: next, Limit: 1, Filter: t.filter}) {
			if err != nil {
				return 0, 0, err
			}
			return head - checkpoint, max(0, now.Sub(e.Time).Seconds()), nil
		}
		return 0, 0, nil
	}
	gone := func(err error) bool {
		return errors.Is(err, annals.ErrStreamNotFound) || errors.Is(err, annals.ErrStreamDeleted)
	}
	var pending *annals.RecordedEvent
	for e, err := range s.store.ReadStream(ctx, t.stream, &annals.ReadOptions{From: next, Limit: 1}) {
		if gone(err) {
			return 0, 0, nil
		}
		if err != nil {
			return 0, 0, err
		}
		pending = &e
	}
	if pending == nil {
		return 0, 0, nil
	}
	last := pending.Revision
	for e, err := range s.store.ReadStream(ctx, t.stream, &annals.ReadOptions{Backwards: true, From: annals.End, Limit: 1}) {
		if gone(err) {
			return 0, 0, nil
		}
		if err != nil {
			return 0, 0, err
		}
		last = e.Revision
	}
	return last - next + 1, max(0, now.Sub(pending.Time).Seconds()), nil
}

func (s *Server) serveStats(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	if err := s.authorize(ctx, Access{Op: OpAdmin, Procedure: statsRoute}); err != nil {
		s.writeHTTPError(w, r, statsRoute, err)
		return
	}
	st, err := s.Stats(ctx)
	if err != nil {
		s.writeHTTPError(w, r, statsRoute, err)
		return
	}
	writeJSON(w, st)
}

func (s *Server) serveProjections(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	if err := s.authorize(ctx, Access{Op: OpRead, Procedure: projectionsRoute}); err != nil {
		s.writeHTTPError(w, r, projectionsRoute, err)
		return
	}
	out := Projections{Projections: []ProjectionStatus{}, Leases: []LeaseStatus{}}
	if s.opts.Projections != nil {
		ps, err := s.opts.Projections(ctx)
		if err != nil {
			s.writeHTTPError(w, r, projectionsRoute, err)
			return
		}
		out.Configured = true
		out.Projections = append(out.Projections, ps...)
	}
	ls, err := s.runnerLeases(ctx)
	if err != nil {
		s.writeHTTPError(w, r, projectionsRoute, err)
		return
	}
	byName := make(map[string]LeaseStatus, len(ls))
	for _, l := range ls {
		st := leaseStatus(l)
		out.Leases = append(out.Leases, st)
		byName[l.Name] = st
	}
	for i := range out.Projections {
		p := &out.Projections[i]
		for _, prefix := range []string{ProjectionLeasePrefix, ProcessLeasePrefix} {
			if st, ok := byName[prefix+p.Name]; ok && p.Lease == nil {
				p.Lease = &st
			}
		}
	}
	writeJSON(w, out)
}
