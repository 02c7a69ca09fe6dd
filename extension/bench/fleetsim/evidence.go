package fleetsim

import (
	"context"
	"math"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"

	"github.com/circuitbreaked/lambda-circuit-breaker/internal/circuit"
	"github.com/circuitbreaked/lambda-circuit-breaker/internal/store"
)

// Evidence sums up the fleet-wide evaluations of one simulation: every
// window of buckets an environment read to decide on a trip
// (circuit.DecideRate), weighed as DecideRate weighs it.
type Evidence struct {
	// Evaluations is the number of windows read.
	Evaluations int64
	// MaxRuns and MaxRate are the most evidence, in nats, any window
	// held for the runs rule (circuit.RunsEvidence) and for the rate rule
	// (circuit.RateEvidence, whether or not the window reached the
	// threshold and minimumCalls, which the rule also needs). A rule trips
	// from circuit.EvidenceNeeded() (about 23 nats); exp(−nats) is the
	// smallest tail probability reached.
	MaxRuns, MaxRate float64
	// MaxFailureRate is the highest failure rate of a window that held at
	// least minimumCalls calls (the rate rule's other condition: the
	// threshold).
	MaxFailureRate float64
}

// MinTail returns the smallest tail probability any evaluation reached,
// over both rules.
func (e Evidence) MinTail() float64 { return math.Exp(-max(e.MaxRuns, e.MaxRate)) }

// evidenceWatch passes the environments' table calls on and weighs every
// window read: a strongly consistent BatchGetItem of bucket keys, which is
// how the breaker reads a window before DecideRate. Buckets that started
// before the circuit's last transition (since, Unix nanoseconds, as last
// polled) are left out, as DecideRate leaves them out.
type evidenceWatch struct {
	store.API
	rates circuit.RateSettings
	since *atomic.Int64

	mu sync.Mutex
	ev Evidence
}

func (w *evidenceWatch) evidence() Evidence {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.ev
}

// BatchGetItem reads, and weighs the window when it is one.
func (w *evidenceWatch) BatchGetItem(ctx context.Context, in *dynamodb.BatchGetItemInput, opts ...func(*dynamodb.Options)) (*dynamodb.BatchGetItemOutput, error) {
	out, err := w.API.BatchGetItem(ctx, in, opts...)
	if err != nil || !windowRead(in) {
		return out, err
	}
	since := time.Unix(0, w.since.Load())
	var c circuit.Counts
	for _, items := range out.Responses {
		for _, item := range items {
			if start := time.Unix(intAttr(item, "bucketStart"), 0); w.since.Load() != 0 && start.Before(since) {
				continue
			}
			c = c.Add(circuit.Counts{Calls: intAttr(item, "calls"), Failures: intAttr(item, "failures"), Runs: intAttr(item, "runs")})
		}
	}
	if c.Calls == 0 {
		return out, nil
	}
	p0 := circuit.NullShare * w.rates.FailureRateThreshold / 100
	runs := circuit.RunsEvidence(c.Calls, c.Runs, p0, w.rates.FastTripFailures)
	rate := circuit.RateEvidence(c.Calls, c.Failures, p0)
	w.mu.Lock()
	defer w.mu.Unlock()
	w.ev.Evaluations++
	w.ev.MaxRuns, w.ev.MaxRate = max(w.ev.MaxRuns, runs), max(w.ev.MaxRate, rate)
	if c.Calls >= int64(w.rates.MinimumCalls) {
		w.ev.MaxFailureRate = max(w.ev.MaxFailureRate, float64(c.Failures)/float64(c.Calls))
	}
	return out, nil
}

// windowRead says whether in is a strongly consistent read of bucket items
// only.
func windowRead(in *dynamodb.BatchGetItemInput) bool {
	for _, ka := range in.RequestItems {
		if !aws.ToBool(ka.ConsistentRead) || len(ka.Keys) == 0 {
			return false
		}
		for _, k := range ka.Keys {
			s, ok := k[store.KeyAttribute].(*types.AttributeValueMemberS)
			if !ok || !strings.Contains(s.Value, store.BucketInfix) {
				return false
			}
		}
	}
	return len(in.RequestItems) > 0
}

// intAttr returns the number attribute name of item, 0 when absent.
func intAttr(item map[string]types.AttributeValue, name string) int64 {
	if n, ok := item[name].(*types.AttributeValueMemberN); ok {
		v, _ := strconv.ParseInt(n.Value, 10, 64)
		return v
	}
	return 0
}
