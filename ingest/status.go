package ingest

import (
	"maps"
	"time"

	"github.com/annalsdb/annals/supervisor"
)

// rateWindow is how far back Status.Rate looks.
const rateWindow = 5 * time.Second

// rate measures events per second over the last rateWindow from samples of a running count.
type rate struct {
	samples []sample // oldest first; the first may be older than the window
}

type sample struct {
	at    time.Time
	count uint64
}

// add records the count at now and forgets samples no longer needed.
func (r *rate) add(now time.Time, count uint64) {
	r.samples = append(r.samples, sample{now, count})
	// Keep one sample at or before the window's start, to measure from it.
	i := 0
	for i+1 < len(r.samples) && now.Sub(r.samples[i+1].at) >= rateWindow {
		i++
	}
	r.samples = r.samples[i:]
}

// per returns the events per second over the window ending at now.
func (r *rate) per(now time.Time) float64 {
	if len(r.samples) < 2 {
		return 0
	}
	first, last := r.samples[0], r.samples[len(r.samples)-1]
	if now.Sub(last.at) >= rateWindow {
		return 0
	}
	span := now.Sub(first.at)
	if span <= 0 {
		return 0
	}
	return float64(last.count-first.count) / span.Seconds()
}

// count adds to the counters after a batch.
func (in *Ingest) count(appended, duplicates uint64) {
	in.mu.Lock()
	defer in.mu.Unlock()
	in.mu.appended += appended
	in.mu.duplicates += duplicates
	in.mu.rate.add(time.Now(), in.mu.appended)
}

// setOffsets records the last appended offsets of sources.
func (in *Ingest) setOffsets(offsets map[string]uint64) {
	in.mu.Lock()
	defer in.mu.Unlock()
	maps.Copy(in.mu.offsets, offsets)
}

// Status returns the ingest's status now.
func (in *Ingest) Status() Status {
	sup := in.sup.Status()
	st := Status{Name: in.opts.Name, Supervisor: sup, State: sup.State.String()}
	switch sup.State {
	case supervisor.Running:
		st.Holder = sup.Holder
	case supervisor.StandingBy:
		st.Holder = sup.Other.Holder
	}
	in.mu.Lock()
	defer in.mu.Unlock()
	st.Appended, st.Duplicates, st.Errors = in.mu.appended, in.mu.duplicates, in.mu.errors
	st.Rate = in.mu.rate.per(time.Now())
	if in.mu.lastErr != nil {
		st.LastError, st.LastTime = in.mu.lastErr.Error(), in.mu.lastTime
	}
	if len(in.mu.offsets) > 0 {
		st.Offsets = maps.Clone(in.mu.offsets)
	}
	return st
}
