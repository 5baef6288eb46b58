package perf

import (
	"math"
	"slices"
	"time"
)

// Percentile returns the q-quantile (0..1) of ds by the nearest-rank
// method: the smallest sample with at least q of the samples at or below
// it. Zero for no samples.
func Percentile(ds []time.Duration, q float64) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	rank := int(math.Ceil(q*float64(len(s)))) - 1
	return s[min(max(rank, 0), len(s)-1)]
}

// Ms is d in milliseconds, for b.ReportMetric.
func Ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
