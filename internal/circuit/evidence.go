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
	if calls <= 0 || failures <= 0 {
		return false
	}
	if p0 <= 0 {
		return true
	}
	a := float64(failures) / float64(calls)
	if a <= p0 || p0 >= 1 {
		return false
	}
	kl := a * math.Log(a/p0)
	if a < 1 {
		kl += (1 - a) * math.Log((1-a)/(1-p0))
	}
	return float64(calls)*kl >= surprise
}

// ImprobableRuns reports whether runs, the runs of k consecutive failed
// calls counted by the environments among calls calls, are improbable at
// FalseTripLevel for calls that fail independently with probability p0 or
// less. Each call ends a run with probability at most p0^k, so the runs
// counted (each environment starts counting afresh after a run) are at
// most a Poisson number of mean calls·p0^k; the Chernoff bound of its
// upper tail, P(R ≥ r) ≤ exp(−λ)(eλ/r)^r, is used.
func ImprobableRuns(calls, runs int64, p0 float64, k int) bool {
	if runs <= 0 || calls <= 0 {
		return false
	}
	lambda := float64(calls) * math.Pow(p0, float64(k))
	r := float64(runs)
	if lambda <= 0 {
		return true
	}
	if r <= lambda {
		return false
	}
	return r*math.Log(r/lambda)-r+lambda >= surprise
}
