package circuit

import (
	"fmt"
	"math"
	"testing"
)

// logBinomTail is ln P(X ≥ f) for X ~ Binomial(n, p), summed exactly.
func logBinomTail(n, f int64, p float64) float64 {
	lg := func(x float64) float64 { v, _ := math.Lgamma(x); return v }
	best := math.Inf(-1)
	var terms []float64
	for k := f; k <= n; k++ {
		t := lg(float64(n)+1) - lg(float64(k)+1) - lg(float64(n-k)+1) + float64(k)*math.Log(p) + float64(n-k)*math.Log1p(-p)
		terms = append(terms, t)
		best = math.Max(best, t)
	}
	sum := 0.0
	for _, t := range terms {
		sum += math.Exp(t - best)
	}
	return best + math.Log(sum)
}

// logPoissonTail is ln P(X ≥ r) for X ~ Poisson(λ).
func logPoissonTail(lambda float64, r int64) float64 {
	lg := func(x float64) float64 { v, _ := math.Lgamma(x); return v }
	best := math.Inf(-1)
	var terms []float64
	for k := r; k < r+2000; k++ {
		t := -lambda + float64(k)*math.Log(lambda) - lg(float64(k)+1)
		terms = append(terms, t)
		best = math.Max(best, t)
	}
	sum := 0.0
	for _, t := range terms {
		sum += math.Exp(t - best)
	}
	return best + math.Log(sum)
}

// Whenever a rule calls counts improbable, their exact tail probability
// under the null rate is at most FalseTripLevel; and the rule is not much
// stricter than the exact test.
func TestEvidenceBoundsTheExactTail(t *testing.T) {
	level := math.Log(FalseTripLevel)
	const p0 = 0.4
	for _, n := range []int64{10, 26, 50, 100, 600, 2000} {
		first := int64(-1)
		for f := int64(0); f <= n; f++ {
			if ImprobableRate(n, f, p0) {
				if first < 0 {
					first = f
				}
				if tail := logBinomTail(n, f, p0); tail > level {
					t.Errorf("n=%d f=%d: called improbable, exact tail e^%.1f > %g", n, f, tail, FalseTripLevel)
				}
			}
		}
		if first >= 0 {
			exact := first
			for exact > 0 && logBinomTail(n, exact-1, p0) <= level {
				exact--
			}
			t.Logf("n=%d: trips from %d failures (%.0f %%); the exact test from %d", n, first, 100*float64(first)/float64(n), exact)
		}
	}
	for _, calls := range []int64{100, 1000, 60000, 6000000} {
		lambda := float64(calls) * math.Pow(p0, 10)
		for r := int64(1); r < 2000; r++ {
			if ImprobableRuns(calls, r, p0, 10) {
				if tail := logPoissonTail(lambda, r); tail > level {
					t.Errorf("calls=%d runs=%d: called improbable, exact tail e^%.1f", calls, r, tail)
				}
				t.Logf("calls=%d (mean %.3g runs at 40 %%): trips from %d runs", calls, lambda, r)
				break
			}
		}
	}
}

func TestImprobableRate(t *testing.T) {
	tests := []struct {
		name            string
		calls, failures int64
		p0              float64
		want            bool
	}{
		{"no calls", 0, 0, 0.4, false},
		{"at the null rate", 1000, 400, 0.4, false},
		{"under it", 1000, 100, 0.4, false},
		{"all of 25 failed", 25, 25, 0.4, false},
		{"all of 26 failed", 26, 26, 0.4, true},
		{"half of 1000", 1000, 500, 0.4, false},
		{"half of 2000", 2000, 1000, 0.4, true},
		{"null rate zero", 10, 1, 0, true},
	}
	for _, tt := range tests {
		if got := ImprobableRate(tt.calls, tt.failures, tt.p0); got != tt.want {
			t.Errorf("%s: ImprobableRate(%d, %d, %g) = %v", tt.name, tt.calls, tt.failures, tt.p0, got)
		}
	}
}

// The evidence functions bound the exact tails (exp(−evidence) is at
// least the exact tail probability) and agree with the Improbable rules.
func TestEvidenceIsTheBoundInNats(t *testing.T) {
	const p0 = 0.4
	tests := []struct {
		name                  string
		calls, failures, runs int64
	}{
		{"nothing failed", 1000, 0, 0},
		{"at the null rate", 1000, 400, 1},
		{"just over it", 6000000, 2402000, 400},
		{"half of 2000, 8 runs", 2000, 1000, 8},
		{"all of 26, 2 runs", 26, 26, 2},
		{"all of 25", 25, 25, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rate := RateEvidence(tt.calls, tt.failures, p0)
			if rate < 0 || (rate >= EvidenceNeeded()) != ImprobableRate(tt.calls, tt.failures, p0) {
				t.Errorf("rate evidence %.2f nats, ImprobableRate %v", rate, ImprobableRate(tt.calls, tt.failures, p0))
			}
			if tt.failures > 0 && rate > 0 && -rate < logBinomTail(tt.calls, tt.failures, p0)-1e-9 {
				t.Errorf("bound e^-%.2f under the exact tail e^%.2f", rate, logBinomTail(tt.calls, tt.failures, p0))
			}
			runs := RunsEvidence(tt.calls, tt.runs, p0, 10)
			if runs < 0 || (runs >= EvidenceNeeded()) != ImprobableRuns(tt.calls, tt.runs, p0, 10) {
				t.Errorf("runs evidence %.2f nats, ImprobableRuns %v", runs, ImprobableRuns(tt.calls, tt.runs, p0, 10))
			}
			if lambda := float64(tt.calls) * math.Pow(p0, 10); tt.runs > 0 && runs > 0 && -runs < logPoissonTail(lambda, tt.runs)-1e-9 {
				t.Errorf("runs bound e^-%.2f under the exact tail e^%.2f", runs, logPoissonTail(lambda, tt.runs))
			}
		})
	}
	if got := math.Exp(-EvidenceNeeded()); math.Abs(got-FalseTripLevel) > 1e-20 {
		t.Errorf("exp(-EvidenceNeeded) = %g, want FalseTripLevel", got)
	}
}

// The smallest tail probability the window's counts reached, as a
// benchmark reports it.
func ExampleRateEvidence() {
	nats := RateEvidence(1000, 500, 0.4) // half of 1,000 calls failed, against 40 %
	fmt.Printf("%.1f nats: tail ≤ %.0e, trips from %.1f\n", nats, math.Exp(-nats), EvidenceNeeded())
	// Output: 20.4 nats: tail ≤ 1e-09, trips from 23.0
}
