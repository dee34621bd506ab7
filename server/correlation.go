package server

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"time"

	"github.com/annalsdb/annals"
	"github.com/annalsdb/annals/codec"
)

// correlationRoute answers the conversation an event belongs to (see [Server.serveCorrelation]).
const correlationRoute = "GET /v1/correlation"

// Bounds of the correlation route: how many events of $all one request scans (the scan
// parameter: default and most), and how many events of the conversation it returns.
const (
	DefaultCorrelationScan = 10_000
	MaxCorrelationScan     = 100_000
	MaxCorrelationEvents   = 1_000
)

// Correlation is the JSON answer of GET /v1/correlation: the events of one conversation (one
// correlation id) found in a window of $all, as a tree of causation links.
type Correlation struct {
	CorrelationID string `json:"correlationId"`
	// Roots are the events whose cause is not among the events returned: the events of the
	// command that started the conversation, and any whose cause lies outside the window or
	// is not readable by the caller. Each node's Children are the events it caused.
	Roots []*CorrelationNode `json:"roots"`
	// Events counts the events in the tree.
	Events int `json:"events"`
	// From and To are the positions of the first and last events scanned; Scanned how many.
	From    uint64 `json:"from"`
	To      uint64 `json:"to"`
	Scanned int    `json:"scanned"`
	// Bounded: the scan stopped at its bound (scan events), so events of the conversation
	// may lie before From or after To.
	Bounded bool `json:"bounded"`
	// Truncated: more than [MaxCorrelationEvents] events matched; the others are left out.
	Truncated bool `json:"truncated"`
}

// CorrelationNode is one event of a [Correlation].
type CorrelationNode struct {
	ID            string             `json:"id"`
	Stream        string             `json:"stream"`
	Type          string             `json:"type"`
	Revision      uint64             `json:"revision"`
	Position      uint64             `json:"position"`
	Time          time.Time          `json:"time"`
	CorrelationID string             `json:"correlationId,omitempty"`
	CausationID   string             `json:"causationId,omitempty"`
	Children      []*CorrelationNode `json:"children,omitempty"`
}

// serveCorrelation answers GET /v1/correlation?event=ID or ?correlation=CID, with at=POSITION
// (optional: where in the log to look) and scan=N (how many events of $all to scan, default
// [DefaultCorrelationScan], at most [MaxCorrelationScan]).
//
// The window: with at (or an event, found at its position) it is the scan/2 events of $all up
// to that position and the scan/2 after it; with neither, the last scan events of the log. An
// event given without at is looked for among the last scan events. An event of the
// conversation is one whose $correlationId is the correlation id, or whose id is and that has
// no $correlationId (the event that started it). Only events of streams the caller may read
// are returned (each stream is authorized as a read of that stream is); an event given whose
// stream the caller may not read is refused as that read is.
func (s *Server) serveCorrelation(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	q := r.URL.Query()
	fail := func(err error) { s.writeHTTPError(w, r, correlationRoute, err) }
	if err := checkQuery(q, "event", "correlation", "at", "scan"); err != nil {
		fail(err)
		return
	}
	bad := func(format string, args ...any) error {
		return fmt.Errorf("%w: "+format, append([]any{annals.ErrInvalidArgument}, args...)...)
	}
	scan := DefaultCorrelationScan
	if v := q.Get("scan"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > MaxCorrelationScan {
			fail(bad("scan %q: want 1 to %d", v, MaxCorrelationScan))
			return
		}
		scan = n
	}
	centre := annals.End
	if v := q.Get("at"); v != "" {
		n, err := strconv.ParseUint(v, 10, 64)
		if err != nil || n == annals.End {
			fail(bad("at %q: want a position", v))
			return
		}
		centre = n
	}
	eventID, cid := q.Get("event"), q.Get("correlation")
	if (eventID == "") == (cid == "") {
		fail(bad("want one of event and correlation"))
		return
	}
	auth := &streamAuth{s: s, ok: map[string]bool{}}
	if eventID != "" {
		id, err := annals.ParseUUID(eventID)
		if err != nil {
			fail(bad("event %q: %v", eventID, err))
			return
		}
		ev, found, err := s.findEvent(ctx, id, centre, scan)
		if err != nil {
			fail(err)
			return
		}
		if !found {
			where := fmt.Sprintf("the last %d events of the log", scan)
			if centre != annals.End {
				where = fmt.Sprintf("the log at position %d", centre)
			}
			fail(fmt.Errorf("%w: event %s is not in %s", annals.ErrStreamNotFound, id, where))
			return
		}
		if err := s.authorize(ctx, Access{Op: OpRead, Procedure: correlationRoute, Stream: ev.Stream}); err != nil {
			fail(err)
			return
		}
		md, _ := codec.ParseMetadata(ev.Metadata)
		if cid = md.CorrelationID; cid == "" {
			cid = ev.ID.String()
		}
		centre = ev.Position
	}
	out, err := s.correlation(ctx, cid, centre, scan, auth)
	if err != nil {
		fail(err)
		return
	}
	writeJSON(w, out)
}

// findEvent returns the event id: the one at position at when at is not End and it is there,
// else the one among the last scan events of the log.
func (s *Server) findEvent(ctx context.Context, id annals.UUID, at uint64, scan int) (annals.RecordedEvent, bool, error) {
	if at != annals.End {
		for ev, err := range s.store.ReadAll(ctx, &annals.ReadOptions{From: at, Limit: 1}) {
			if err != nil {
				return annals.RecordedEvent{}, false, err
			}
			if ev.ID == id && ev.Position == at {
				return ev, true, nil
			}
		}
	}
	for ev, err := range s.store.ReadAll(ctx, &annals.ReadOptions{Backwards: true, From: annals.End, Limit: scan}) {
		if err != nil {
			return annals.RecordedEvent{}, false, err
		}
		if ev.ID == id {
			return ev, true, nil
		}
	}
	return annals.RecordedEvent{}, false, nil
}

// streamAuth remembers which streams the caller may read, for one request.
type streamAuth struct {
	s  *Server
	ok map[string]bool
}

// readable reports whether the caller may read stream; a refusal is false, any other failure
// (no credentials, a store that fails) an error.
func (a *streamAuth) readable(ctx context.Context, stream string) (bool, error) {
	if ok, seen := a.ok[stream]; seen {
		return ok, nil
	}
	err := a.s.authorize(ctx, Access{Op: OpRead, Procedure: correlationRoute, Stream: stream})
	if err != nil && !errors.Is(err, ErrPermissionDenied) {
		return false, err
	}
	a.ok[stream] = err == nil
	return err == nil, nil
}

// correlation scans the window around centre (see serveCorrelation) for the events of cid.
func (s *Server) correlation(ctx context.Context, cid string, centre uint64, scan int, auth *streamAuth) (*Correlation, error) {
	out := &Correlation{CorrelationID: cid, Roots: []*CorrelationNode{}}
	var nodes []*CorrelationNode
	visit := func(ev *annals.RecordedEvent) error {
		out.Scanned++
		if out.From == 0 || ev.Position < out.From {
			out.From = ev.Position
		}
		out.To = max(out.To, ev.Position)
		md, err := codec.ParseMetadata(ev.Metadata)
		if err != nil {
			return nil // not the toolkit's metadata: in no conversation
		}
		if md.CorrelationID != cid && !(md.CorrelationID == "" && ev.ID.String() == cid) {
			return nil
		}
		if ok, err := auth.readable(ctx, ev.Stream); err != nil || !ok {
			return err
		}
		if len(nodes) == MaxCorrelationEvents {
			out.Truncated = true
			return nil
		}
		nodes = append(nodes, &CorrelationNode{
			ID: ev.ID.String(), Stream: ev.Stream, Type: ev.Type, Revision: ev.Revision, Position: ev.Position,
			Time: ev.Time, CorrelationID: md.CorrelationID, CausationID: md.CausationID,
		})
		return nil
	}
	back, fwd := scan, 0
	if centre != annals.End {
		back, fwd = scan-scan/2, scan/2
	}
	n := 0
	for ev, err := range s.store.ReadAll(ctx, &annals.ReadOptions{Backwards: true, From: centre, Limit: back}) {
		if err != nil {
			return nil, err
		}
		n++
		if err := visit(&ev); err != nil {
			return nil, err
		}
	}
	out.Bounded = n == back
	if fwd > 0 {
		n = 0
		for ev, err := range s.store.ReadAll(ctx, &annals.ReadOptions{From: centre + 1, Limit: fwd}) {
			if err != nil {
				return nil, err
			}
			n++
			if err := visit(&ev); err != nil {
				return nil, err
			}
		}
		out.Bounded = out.Bounded || n == fwd
	}
	out.Events = len(nodes)
	out.Roots = causationTree(nodes)
	return out, nil
}

// causationTree links each node to the node of its cause, when that one is there and earlier
// in the log (so the links form no cycle), and returns the others, the roots, in log order.
func causationTree(nodes []*CorrelationNode) []*CorrelationNode {
	slices.SortFunc(nodes, func(a, b *CorrelationNode) int { return cmp.Compare(a.Position, b.Position) })
	byID := make(map[string]*CorrelationNode, len(nodes))
	for _, n := range nodes {
		byID[n.ID] = n
	}
	roots := []*CorrelationNode{}
	for _, n := range nodes {
		if p, ok := byID[n.CausationID]; ok && p.Position < n.Position {
			p.Children = append(p.Children, n)
			continue
		}
		roots = append(roots, n)
	}
	return roots
}
