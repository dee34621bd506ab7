package bench

import (
	"math"
	"math/rand/v2"
	"slices"
	"time"
)

// maxSamples bounds the latencies one workload keeps (32 MiB of durations). Beyond it each
// goroutine keeps a uniform random sample of its own, so memory stays bounded however fast the
// store is and however long the workload runs.
const maxSamples = 4 << 20

// samples collects the latencies of one goroutine: all of them up to its capacity, then a
// uniform random sample (reservoir sampling, Algorithm R). It is not safe for concurrent use.
type samples struct {
	d    []time.Duration
	cap  int
	seen int64
	rng  *rand.Rand
}

// newSamples returns a collector that keeps at most capacity latencies (at least 1).
func newSamples(capacity int, seed uint64) *samples {
	capacity = max(capacity, 1)
	return &samples{d: make([]time.Duration, 0, min(capacity, 1024)), cap: capacity, rng: rand.New(rand.NewPCG(seed, 0x9e3779b97f4a7c15))}
}

func (s *samples) add(d time.Duration) {
	s.seen++
	if len(s.d) < s.cap {
		s.d = append(s.d, d)
		return
	}
	if i := s.rng.Int64N(s.seen); i < int64(s.cap) {
		s.d[i] = d
	}
}

// sortedSamples merges the collectors' latencies into one sorted slice.
func sortedSamples(all ...*samples) []time.Duration {
	n := 0
	for _, s := range all {
		n += len(s.d)
	}
	out := make([]time.Duration, 0, n)
	for _, s := range all {
		out = append(out, s.d...)
	}
	slices.Sort(out)
	return out
}

// percentile returns the p-th percentile (0 < p ≤ 100) of sorted by the nearest-rank method:
// the smallest sample such that at least p% of the samples are at most it. It returns 0 for no
// samples.
func percentile(sorted []time.Duration, p float64) time.Duration {
	n := len(sorted)
	if n == 0 {
		return 0
	}
	rank := int(math.Ceil(p * float64(n) / 100))
	rank = min(max(rank, 1), n)
	return sorted[rank-1]
}
