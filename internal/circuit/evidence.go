package circuit

import "math"

// FalseTripLevel bounds the probability that one evaluation of a window
// opens a circuit whose calls fail independently at NullShare × the
// threshold or less: each rule below trips only on counts that such a
// circuit produces with probability at most FalseTripLevel.
const FalseTripLevel = 1e-10

// NullShare is the share of a rate threshold under which the fleet must
// not trip: the evidence must be improbable at NullShare × the threshold.
const NullShare = 0.8

// surprise is -ln(FalseTripLevel): the evidence needed, in nats.
var surprise = -math.Log(FalseTripLevel)

// ImprobableRate reports whether failures out of calls are improbable,
// at FalseTripLevel, for calls that fail independently with probability p0
// or less. It uses the Chernoff bound of the binomial upper tail,
// P(X ≥ f) ≤ exp(−n·KL(f/n ‖ p0)), which overstates the tail, so it errs
// towards not tripping.
func ImprobableRate(calls, failures int64, p0 float64) bool {
	return RateEvidence(calls, failures, p0) >= surprise
}

// RateEvidence is the evidence ImprobableRate weighs, in nats: minus the
// natural logarithm of the Chernoff bound of the probability of failures
// or more out of calls for calls failing independently with probability
// p0, n·KL(f/n ‖ p0); 0 when the share failed is at most p0, +Inf when
// p0 is 0 and something failed. exp(−RateEvidence) is the bound itself;
// ImprobableRate holds from −ln(FalseTripLevel), about 23 nats.
func RateEvidence(calls, failures int64, p0 float64) float64 {
	if calls <= 0 || failures <= 0 {
		return 0
	}
	if p0 <= 0 {
		return math.Inf(1)
	}
	a := float64(failures) / float64(calls)
	if a <= p0 || p0 >= 1 {
		return 0
	}
	kl := a * math.Log(a/p0)
	if a < 1 {
		kl += (1 - a) * math.Log((1-a)/(1-p0))
	}
	return float64(calls) * kl
}

// ImprobableRuns reports whether runs, the runs of k consecutive failed
// calls counted by the environments among calls calls, are improbable at
// FalseTripLevel for calls that fail independently with probability p0 or
// less. Each call ends a run with probability at most p0^k, so the runs
// counted (each environment starts counting afresh after a run) are at
// most a Poisson number of mean calls·p0^k; the Chernoff bound of its
// upper tail, P(R ≥ r) ≤ exp(−λ)(eλ/r)^r, is used.
func ImprobableRuns(calls, runs int64, p0 float64, k int) bool {
	return RunsEvidence(calls, runs, p0, k) >= surprise
}

// RunsEvidence is the evidence ImprobableRuns weighs, in nats: minus the
// natural logarithm of the Chernoff bound of the Poisson upper tail at
// runs, r·ln(r/λ) − r + λ with λ = calls·p0^k; 0 when runs are at most
// λ, +Inf when λ is 0 and a run was counted.
func RunsEvidence(calls, runs int64, p0 float64, k int) float64 {
	if runs <= 0 || calls <= 0 {
		return 0
	}
	lambda := float64(calls) * math.Pow(p0, float64(k))
	r := float64(runs)
	if lambda <= 0 {
		return math.Inf(1)
	}
	if r <= lambda {
		return 0
	}
	return r*math.Log(r/lambda) - r + lambda
}

// EvidenceNeeded is the evidence, in nats, from which ImprobableRate and
// ImprobableRuns hold: −ln(FalseTripLevel).
func EvidenceNeeded() float64 { return surprise }
